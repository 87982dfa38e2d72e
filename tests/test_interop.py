"""Published weight layouts: each is written here from that project's model structure, filled with our
model's random weights, loaded back with load_pretrained, and must give identical outputs."""

import os
import pickle
import re

import pytest
import timm
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from plugattn.checkpoint import CheckpointError
from plugattn.cli import app
from plugattn.interop import detect_layout, load_pretrained, read_state_dict
from plugattn.models import create_model


def _outputs_equal(a, b, shape=(2, 3, 64, 64)):
    torch.manual_seed(1)
    x = torch.randn(shape)
    torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def _randomise(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.05 + (1.0 if tensor.dim() == 1 else 0.0))
    return model


def to_cbam_official(state):
    """Jongchan/attention-module (MODELS/model_resnet.py, MODELS/cbam.py), saved from nn.DataParallel:
    module.layerX.Y.cbam.ChannelGate.mlp.{1,3}, module.layerX.Y.cbam.SpatialGate.spatial.{conv,bn}."""
    out = {}
    for key, value in state.items():
        key = key.replace(".attention.channel_gate.mlp.", ".cbam.ChannelGate.mlp.")
        key = key.replace(".attention.spatial_gate.spatial.", ".cbam.SpatialGate.spatial.")
        out[f"module.{key}"] = value
    return out


def to_senet_pytorch(state):
    """moskomule/senet.pytorch (senet/se_resnet.py): SELayer fc = Sequential(Linear, ReLU, Linear, Sigmoid), no bias."""
    return {re.sub(r"\.attention\.fc\.", ".se.fc.", k): v for k, v in state.items()}


def to_timm(state):
    """timm seresnet* (timm/layers/squeeze_excite.py SEModule): se.fc1 / se.fc2 are 1x1 convolutions with bias."""
    out = {}
    for key, value in state.items():
        match = re.match(r"(.*)\.attention\.fc\.([02])\.(weight|bias)$", key)
        if match:
            prefix, index, kind = match.groups()
            key = f"{prefix}.se.fc{1 if index == '0' else 2}.{kind}"
            value = value[:, :, None, None] if kind == "weight" else value
        out[key] = value
    return out


def to_cadene(state):
    """Cadene/pretrained-models.pytorch (pretrainedmodels/models/senet.py): layer0.{conv1,bn1}, SEModule
    se_module.fc1/fc2 as 1x1 convolutions with bias, last_linear as the classifier."""
    out = {}
    for key, value in to_timm(state).items():
        key = re.sub(r"^(conv1|bn1)\.", r"layer0.\1.", key)
        key = re.sub(r"^fc\.", "last_linear.", key)
        key = key.replace(".se.fc1.", ".se_module.fc1.").replace(".se.fc2.", ".se_module.fc2.")
        out[key] = value
    return out


@pytest.mark.parametrize(
    ("layout", "name", "options", "writer", "as_file"),
    [
        ("cbam-official", "cbam_resnet50", {}, to_cbam_official, True),
        ("senet.pytorch", "se_resnet50", {"bias": False}, to_senet_pytorch, False),
        ("timm", "se_resnet50", {}, to_timm, False),
        ("cadene", "se_resnet50_v1", {}, to_cadene, True),
        ("cadene", "se_resnext50_32x4d", {}, to_cadene, False),
        ("torchvision", "resnet18", {}, dict, False),
    ],
)
def test_foreign_layout_round_trip(layout, name, options, writer, as_file, tmp_path):
    source = _randomise(create_model(name, **options))
    foreign = writer(source.state_dict())
    assert detect_layout(foreign) == layout
    if as_file:  # the official CBAM code saves {'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}
        path = tmp_path / "weights.pth.tar"
        torch.save({"epoch": 90, "arch": name, "state_dict": foreign, "best_prec1": 77.6}, path)
        foreign = path
    target = create_model(name, **options)
    report = load_pretrained(target, foreign)
    assert report.layout == layout and not report.missing and not report.unexpected
    _outputs_equal(source, target)


def test_real_timm_seresnet50_loads_and_agrees():
    torch.manual_seed(0)
    reference = timm.create_model("seresnet50").eval()
    ours = create_model("se_resnet50")
    report = load_pretrained(ours, reference.state_dict(), strict=True)
    assert report.layout == "timm"
    _outputs_equal(reference, ours)


def test_shape_mismatch_names_the_key_and_both_shapes():
    foreign = to_timm(create_model("se_resnet50", reduction=8).state_dict())
    with pytest.raises(ValueError, match=r"shape mismatch for layer1\.0\.attention\.fc\.0\.weight: the weights have "
                                         r"\(32, 256\), the model has \(16, 256\)"):
        load_pretrained(create_model("se_resnet50"), foreign)


def test_missing_biases_are_reported_and_strict_refuses():
    foreign = to_senet_pytorch(create_model("se_resnet20", bias=False).state_dict())
    report = load_pretrained(create_model("se_resnet20"), foreign)  # zoo SE has biases, senet.pytorch's none
    assert report.missing and all(k.endswith("bias") and ".attention." in k for k in report.missing)
    with pytest.raises(ValueError, match="strict load"):
        load_pretrained(create_model("se_resnet20"), foreign, strict=True)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_that_run_code_are_refused_and_truncated_files_explained(tmp_path):
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    planted = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": exploit}, planted)
    with pytest.raises(CheckpointError, match="refused to load.*could run code"):
        read_state_dict(planted)
    assert not exploit.marker.exists()
    with open(tmp_path / "raw.pkl", "wb") as handle:
        pickle.dump(exploit, handle)
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path / "raw.pkl")
    assert not exploit.marker.exists()
    good = tmp_path / "good.pth"
    torch.save(create_model("resnet20").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(truncated)


def test_convert_cli_writes_our_layout(tmp_path):
    source = _randomise(create_model("se_resnet50_v1"))
    torch.save(to_cadene(source.state_dict()), tmp_path / "se_resnet50-ce0d4300.pth")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "se_resnet50-ce0d4300.pth"), str(tmp_path / "ours.safetensors")])
    assert result.exit_code == 0 and "cadene" in result.output, result.output
    target = create_model("se_resnet50_v1")
    target.load_state_dict(load_file(str(tmp_path / "ours.safetensors")), strict=True)
    _outputs_equal(source, target)
