"""Inputs prepared as the weights were trained: statistics, evaluation resize/crop and interpolation read from
torchvision's weights enum, timm's pretrained_cfg, a plugattn checkpoint's record or ImageNet's preset; the data
set's own under --normalize dataset or when nothing is known; recorded in checkpoints and reused by eval."""

import json

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

from plugattn.checkpoint import load_checkpoint, save_checkpoint
from plugattn.cli import app
from plugattn.preprocessing import Preprocessing, weights_preprocessing
from plugattn.recipe import ModelRecipe
from plugattn.training import TrainConfig, evaluate_checkpoint, load_published, load_trained, train
from tests.conftest import make_image_folder


def _weights(model: torch.nn.Module, path) -> str:
    torch.save(model.state_dict(), path)
    return str(path)


def _run(folder, out, **overrides) -> TrainConfig:
    values = dict(model="torchvision:resnet18", attention="se", reduction=4, dataset=f"imagefolder:{folder}",
                  epochs=1, batch_size=16, lr=0.01, out_dir=str(out), progress=False)
    return TrainConfig(**(values | overrides))


def _folder_statistics(folder) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the training PNGs, decoded with PIL alone."""
    pixels = np.stack([np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
                       for path in sorted((folder / "train").rglob("*.png"))])
    return pixels.mean((0, 1, 2)), pixels.std((0, 1, 2), ddof=1)


def test_published_entries_are_read_not_assumed(tmp_path):
    weights = str(tmp_path / "any.pth")
    (tmp_path / "any.pth").write_bytes(b"not read for a foreign file")
    b3 = weights_preprocessing("torchvision:efficientnet_b3", weights)
    preset = torchvision.models.EfficientNet_B3_Weights.DEFAULT.transforms()
    assert (b3.crop_size, b3.resize_size, b3.interpolation) == (300, 320, "bicubic")
    assert b3.mean == tuple(preset.mean) and b3.std == tuple(preset.std)
    v1, v2 = (weights_preprocessing(f"torchvision:{name}", weights) for name in ("resnet18", "resnet50"))
    assert (v1.resize_size, v2.resize_size) == (256, 232)  # ResNet-50's DEFAULT is its V2 recipe
    zepto = weights_preprocessing("timm:convnext_zepto_rms.ra4_e3600_r224_in1k", weights)
    assert zepto.mean == zepto.std == (0.5, 0.5, 0.5) and zepto.interpolation == "bicubic"
    default, tagged = (weights_preprocessing(f"timm:{name}", weights)
                       for name in ("efficientnet_b0", "efficientnet_b0.ra4_e3600_r224_in1k"))
    cfg = timm.get_pretrained_cfg("efficientnet_b0")
    assert default.mean == tuple(cfg.mean) != tagged.mean == (0.5, 0.5, 0.5)
    assert "efficientnet_b0.ra_in1k" in default.source
    imagenet = weights_preprocessing("cbam_resnet50", weights)
    assert imagenet.mean == tuple(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms().mean)
    assert "foreign file" in imagenet.source and weights_preprocessing("resnet20", weights) is None
    assert weights_preprocessing("tests.test_recipe:tiny_net", weights) is None


def test_efficientnet_b3_evaluates_with_its_own_resize_crop_and_interpolation(tmp_path):
    folder = make_image_folder(tmp_path / "images", train=4, test=2, size=400)  # larger than the crop, as photos are
    weights = _weights(torchvision.models.efficientnet_b3(num_classes=3), tmp_path / "b3.pth")
    recipe = ModelRecipe(model="torchvision:efficientnet_b3", weights=weights)
    _, data, notes = load_published(recipe, f"imagefolder:{folder}")
    assert any("resize 320, centre crop 300, bicubic" in note for note in notes)
    image, _ = data.test[0]
    ours = data.transform()(image[None])[0]
    preset = torchvision.models.EfficientNet_B3_Weights.DEFAULT.transforms()
    theirs = preset(Image.open(folder / "test" / "class0" / "0000.png"))  # torchvision's own pipeline, on the PIL image
    assert ours.shape == theirs.shape == (3, 300, 300)
    grey_level = 1.01 / 255 / min(preset.std)  # PIL's and torchvision's bicubic kernels round differently
    torch.testing.assert_close(ours, theirs, atol=grey_level, rtol=0)
    result = CliRunner().invoke(app, ["eval", "--model", "torchvision:efficientnet_b3", "--weights", weights,
                                      "--dataset", f"imagefolder:{folder}"])
    assert result.exit_code == 0, result.output
    assert "torchvision efficientnet_b3 weights IMAGENET1K_V1" in result.output and "top-1" in result.output


def test_a_torchvision_network_from_weights_normalises_as_imagenet_and_under_dataset_as_the_data(image_folder, tmp_path):
    weights = _weights(torchvision.models.resnet18(), tmp_path / "r18.pth")
    summary = train(_run(image_folder, tmp_path / "weights", weights=weights, image_size=32))
    used = json.loads(json.dumps(summary["preprocessing"]))  # as summary.json and the checkpoint hold it
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert used["mean"] == list(preset.mean) and used["std"] == list(preset.std)
    assert (used["crop_size"], used["resize_size"], used["interpolation"]) == (32, 37, "bilinear")  # 224:256 kept
    assert load_checkpoint(tmp_path / "weights" / "last.safetensors")[1]["preprocessing"] == used
    summary = train(_run(image_folder, tmp_path / "dataset", weights=weights, normalize="dataset"))
    mean, std = _folder_statistics(image_folder)
    np.testing.assert_allclose(summary["preprocessing"]["mean"], mean, atol=1e-5)
    np.testing.assert_allclose(summary["preprocessing"]["std"], std, atol=1e-4)
    assert summary["preprocessing"]["crop_size"] is None and "data set's own" in summary["preprocessing"]["source"]


def test_grey_input_takes_the_mean_of_the_three_values(tmp_path):
    grey = tmp_path / "grey"
    for split, count in (("train", 8), ("test", 2)):
        for label in range(2):
            (grey / split / f"c{label}").mkdir(parents=True)
            for index in range(count):
                Image.fromarray(np.full((16, 16), 60 * label + index, np.uint8), "L").save(grey / split / f"c{label}" / f"{index}.png")
    weights = _weights(torchvision.models.resnet18(), tmp_path / "r18.pth")
    summary = train(_run(grey, tmp_path / "run", weights=weights, image_size=16, batch_size=8))
    preset = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    assert summary["preprocessing"]["mean"] == pytest.approx([sum(preset.mean) / 3])
    assert summary["preprocessing"]["std"] == pytest.approx([sum(preset.std) / 3])


def test_a_timm_architecture_uses_its_pretrained_cfg(image_folder, tmp_path):
    name = "convnext_zepto_rms.ra4_e3600_r224_in1k"
    weights = _weights(timm.create_model(name), tmp_path / "zepto.pth")
    result = CliRunner().invoke(app, ["train", "--model", f"timm:{name}", "--weights", weights, "--attention", "cbam",
                                      "--dataset", f"imagefolder:{image_folder}", "--image-size", "32", "--epochs", "1",
                                      "--batch-size", "16", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"mean/std 0.5/0.5, 0.5/0.5, 0.5/0.5 per channel — timm pretrained_cfg of {name}" in result.output
    recorded = json.loads((tmp_path / "run" / "summary.json").read_text())["preprocessing"]
    assert recorded["mean"] == [0.5] * 3 and recorded["interpolation"] == "bicubic"


def test_a_checkpoint_records_its_preprocessing_and_eval_and_fine_tuning_reuse_it(image_folder, tmp_path):
    summary = train(_run(image_folder, tmp_path / "run", model="resnet20", normalize="0.5,0.25"))
    checkpoint = tmp_path / "run" / "last.safetensors"
    _, data, _, _ = load_trained(checkpoint)
    assert data.mean == (0.5,) * 3 and data.std == (0.25,) * 3
    assert evaluate_checkpoint(checkpoint)["top1"] == pytest.approx(summary["top1"])
    assert weights_preprocessing("resnet20", checkpoint) == Preprocessing(
        (0.5,) * 3, (0.25,) * 3, source="given with normalize, as recorded in last.safetensors")
    tensors, meta = load_checkpoint(checkpoint)  # as written before preprocessing was recorded
    del meta["preprocessing"]
    save_checkpoint(tmp_path / "old.safetensors", tensors, meta)
    _, old, _, _ = load_trained(tmp_path / "old.safetensors")
    mean, _ = _folder_statistics(image_folder)
    np.testing.assert_allclose(old.mean, mean, atol=1e-5)  # the data set's own, as such runs were evaluated


@pytest.mark.parametrize(("normalize", "weights", "message"), [
    ("weights", None, "normalize='weights' needs weights"),
    ("0.5,0.5,0.5", None, "as many means as stds"),
    ("0.5,0.4,0.3,0.2", None, r"expected 2 numbers \(one mean, one std\) or 6 \(means then stds\) for 3-channel "
                              r"input, got 4"),
    ("0.5,0", None, r"std must be > 0 for every channel; got \[0.0, 0.0, 0.0\]"),
    ("mean", None, "normalize must be 'weights', 'dataset' or MEAN,STD numbers"),
])
def test_bad_normalize_values_are_named(normalize, weights, message, image_folder, tmp_path):
    with pytest.raises(ValueError, match=message):
        train(_run(image_folder, tmp_path, model="resnet20", normalize=normalize, weights=weights))
    result = CliRunner().invoke(app, ["train", "--dataset", f"imagefolder:{image_folder}", "--normalize", normalize,
                                      "--epochs", "1", "--out", str(tmp_path / "cli")])
    assert result.exit_code == 2 and "normalize" in result.output
