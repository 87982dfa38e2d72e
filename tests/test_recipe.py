"""Any model, any weights: torchvision / timm / a user's factory / the zoo, weights loaded strictly, the
classifier and input fitted to the data, attention inserted (as the exact identity by default with weights),
and a checkpoint that rebuilds the model from its recipe alone."""

import os
import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from torch import nn

import plugattn
from plugattn.checkpoint import CheckpointError
from plugattn.recipe import ModelRecipe, build_model, classifier_of
from tests.conftest import trained_like

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_net() -> nn.Module:
    """A user's own builder, reached as tests.test_recipe:tiny_net."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def not_a_module():
    return "a string"


def _pretrained_file(model: nn.Module, path) -> str:
    torch.save(trained_like(model, seed=1).state_dict(), path)
    return str(path)


@pytest.mark.parametrize(("spec", "plain"), [("torchvision:resnet18", lambda: torchvision.models.resnet18()),
                                             ("timm:resnet18", lambda: timm.create_model("resnet18")),
                                             ("resnet20", lambda: plugattn.create_model("resnet20"))])
@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_pretrained_network_with_attention_inserted_keeps_its_function(spec, plain, attention, tmp_path):
    weights = _pretrained_file(plain(), tmp_path / "weights.pth")
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(0)
    reference, _ = build_model(ModelRecipe(model=spec, weights=weights), num_classes=6)
    torch.manual_seed(0)  # the same seed gives the same new classifier, with attention or without: a fair control
    model, notes = build_model(ModelRecipe(model=spec, weights=weights, attention=attention, stages=[2, 3]),
                               num_classes=6)
    torch.testing.assert_close(classifier_of(model)[1].weight, classifier_of(reference)[1].weight, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-6, rtol=0)
    assert classifier_of(model)[1].out_features == 6
    assert any("starting as the exact identity" in note for note in notes)
    assert any("replaced for 6 classes" in note for note in notes) and any("tensors loaded" in note for note in notes)
    stages = {name.split(".")[0] for name, _ in plugattn.inspection.gated_blocks(model)}
    assert stages == {"layer2", "layer3"}
    paper, paper_notes = build_model(ModelRecipe(model=spec, weights=weights, attention=attention, init="paper"),
                                     num_classes=6)
    assert any("init='paper'" in note for note in paper_notes)


def test_grey_input_and_a_users_factory(tmp_path):
    rgb = torchvision.models.resnet18()
    weights = _pretrained_file(rgb, tmp_path / "r18.pth")
    grey, notes = build_model(ModelRecipe(model="torchvision:resnet18", weights=weights, attention="se"),
                              num_classes=3, in_channels=1)
    assert grey.conv1.in_channels == 1 and any("conv1 adapted to 1 channel" in n for n in notes)
    torch.testing.assert_close(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))  # grey = R = G = B
    user, notes = build_model(ModelRecipe(model="tests.test_recipe:tiny_net", attention="cbam", where="3"),
                              num_classes=2)
    assert isinstance(user[3].attention, plugattn.CBAM) and user[-1].out_features == 2


@pytest.mark.parametrize(("recipe", "error", "message"), [
    (ModelRecipe(model="vgg:resnet"), ValueError, r"cannot import module 'vgg'"),
    (ModelRecipe(model="torchvision:resnet19"), ValueError, r"torchvision has no classification model 'resnet19'; "
                                                            r"close matches: \['resnet18'"),
    (ModelRecipe(model="timm:resnet19x"), ValueError, r"timm has no model 'resnet19x'"),
    (ModelRecipe(model="resnet5"), ValueError, r"not a zoo name.*torchvision:NAME"),
    (ModelRecipe(model="tests.test_recipe:not_a_module"), TypeError, r"factory must return an nn.Module, got str"),
    (ModelRecipe(model="torchvision:resnet18", attention="se", where="layer9.*"), ValueError,
     r"where='layer9\.\*' matched no insertion point"),
    (ModelRecipe(model="torchvision:resnet18", attention="se", where=["layer1.0.bn3"]), ValueError,
     r"where names 'layer1\.0\.bn3'.*close matches"),
])
def test_bad_recipes_are_named(recipe, error, message):
    with pytest.raises(error, match=message):
        build_model(recipe, num_classes=3)


def test_weights_of_another_network_are_refused_naming_keys(tmp_path):
    weights = _pretrained_file(torchvision.models.resnet34(), tmp_path / "r34.pth")
    with pytest.raises(CheckpointError, match=r"(?s)fits no known layout.*layer1\.2"):
        build_model(ModelRecipe(model="torchvision:resnet18", weights=weights), num_classes=3)
    with pytest.raises(CheckpointError, match="does not exist"):
        build_model(ModelRecipe(model="torchvision:resnet18", weights=str(tmp_path / "missing.pth")), num_classes=3)


def _cli(*args):
    environment = os.environ | {"OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "plugattn", *args], capture_output=True, text=True, env=environment,
                          cwd=REPO, timeout=600)


def test_cli_fine_tunes_a_torchvision_network_then_resumes_evaluates_draws_and_exports(image_folder, tmp_path):
    """The whole workflow: pretrained torchvision ResNet-18, CBAM in stages 3-4, a streamed image folder with
    ImageNet-style augmentation at 64 px; then resume, eval, viz and export from the checkpoint alone."""
    weights = _pretrained_file(torchvision.models.resnet18(), tmp_path / "resnet18.pth")
    out = tmp_path / "run"
    common = ["train", "--model", "torchvision:resnet18", "--weights", weights, "--attention", "cbam", "--where",
              "residual", "--stages", "3,4", "--dataset", f"imagefolder:{image_folder}", "--augment", "imagenet",
              "--image-size", "64", "--batch-size", "16",
              "--lr", "0.01", "--no-progress", "--out", str(out)]
    first = _cli(*common, "--epochs", "1")
    assert first.returncode == 0, first.stderr[-3000:]
    os.remove(weights)  # everything below rebuilds the model from the checkpoint's recipe
    resumed = _cli(*common, "--epochs", "2", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["config"]["model"] == "torchvision:resnet18"
    evaluation = _cli("eval", str(out / "last.safetensors"))
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    pictures = _cli("viz", str(out / "last.safetensors"), "--out", str(tmp_path / "viz"), "--images", "2",
                    "--samples", "24")
    assert pictures.returncode == 0, pictures.stderr[-3000:]
    assert (tmp_path / "viz" / "spatial.png").exists() and (tmp_path / "viz" / "gradcam.png").exists()
    exported = _cli("export", str(out / "last.safetensors"), "--onnx", str(tmp_path / "m.onnx"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "ONNX Runtime vs PyTorch" in exported.stdout
    import onnx  # the preprocessing the weights were trained with travels with the exported model

    props = {prop.key: prop.value for prop in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    recorded = __import__("json").loads(props["plugattn.preprocessing"])
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert recorded["mean"] == list(preset.mean) and (recorded["crop_size"], recorded["resize_size"]) == (64, 73)


def test_first_run_logs_how_the_model_was_built(image_folder, tmp_path):
    weights = _pretrained_file(plugattn.create_model("resnet20"), tmp_path / "resnet20.pth")
    result = _cli("train", "--model", "resnet20", "--weights", weights, "--attention", "se", "--reduction", "4",
                  "--dataset", f"imagefolder:{image_folder}", "--epochs", "1", "--batch-size", "16",
                  "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "model: weights:" in result.stdout and "classifier: fc replaced for 3 classes" in result.stdout
    assert "starting as the exact identity (init='identity-boost')" in result.stdout


def test_eval_and_viz_take_a_model_with_its_weights(image_folder, tmp_path):
    """`eval`/`viz` --model SPEC --weights FILE --dataset DATA: the same numbers as the run's own checkpoint (read
    through another path: load_pretrained and the recipe), unchanged when attention is inserted as the identity."""
    import json

    from typer.testing import CliRunner

    from plugattn.cli import app
    from plugattn.training import TrainConfig, train

    data = f"imagefolder:{image_folder}"
    train(TrainConfig(model="resnet20", dataset=data, epochs=1, batch_size=16, out_dir=str(tmp_path / "run"),
                      progress=False))
    weights = str(tmp_path / "run" / "last.safetensors")
    runner = CliRunner()

    def evaluate(*args: str) -> dict:
        target = tmp_path / f"eval{len(list(tmp_path.glob('eval*')))}.json"
        result = runner.invoke(app, ["eval", *args, "--json", str(target)], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return json.loads(target.read_text())

    from_run = evaluate(weights)
    from_weights = evaluate("--model", "resnet20", "--weights", weights, "--dataset", data)
    with_cbam = evaluate("--model", "resnet20", "--weights", weights, "--attention", "cbam", "--reduction", "4",
                         "--dataset", data)
    assert from_weights["confusion"] == from_run["confusion"] and from_weights["loss"] == pytest.approx(from_run["loss"])
    assert with_cbam["confusion"] == from_run["confusion"]  # inserted as the identity: same predictions
    pictures = runner.invoke(app, ["viz", "--model", "resnet20", "--weights", weights, "--attention", "cbam",
                                   "--reduction", "4", "--dataset", data, "--out", str(tmp_path / "viz"), "--images", "2",
                                   "--samples", "24"])
    assert pictures.exit_code == 0, pictures.output
    assert (tmp_path / "viz" / "spatial.png").stat().st_size > 0

    imagenet = _pretrained_file(torchvision.models.resnet18(), tmp_path / "r18.pth")
    for args, fragment in [(["eval", "--model", "resnet20", "--dataset", data], "--weights is needed"),
                           (["eval", "--model", "resnet20", "--weights", weights], "--model needs --dataset"),
                           (["eval", weights, "--model", "resnet20", "--weights", weights, "--dataset", data], "not both"),
                           (["eval"], "give a CHECKPOINT"),
                           (["viz", "--model", "torchvision:resnet18", "--weights", imagenet, "--dataset", data],
                            "has 1000 outputs but")]:
        result = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert result.exit_code == 2 and fragment in " ".join(result.output.split()), (args, result.output)


def test_a_network_whose_weights_hold_its_attention_starts_as_published(tmp_path):
    """cbam_resnet20 with (its own) CBAM weights: the blocks are part of the network, not inserted, so the default
    init is the papers' and the output is the published network's; inserting into resnet20 defaults to
    identity-boost."""
    torch.manual_seed(0)
    published = plugattn.create_model("cbam_resnet20", reduction=4).eval()
    weights = _pretrained_file(published, tmp_path / "cbam20.pth")
    published.load_state_dict(torch.load(weights))
    model, notes = build_model(ModelRecipe(model="cbam_resnet20", reduction=4, weights=weights), num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.eval()(x), published(x)) and any("init='paper'" in note for note in notes)
    assert ModelRecipe(model="resnet20", attention="cbam", weights=weights).resolved_init() == "identity-boost"
    assert ModelRecipe(model="cbam_resnet20", weights=weights, init="identity").resolved_init() == "identity"
