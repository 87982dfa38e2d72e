"""ONNX export checked in ONNX Runtime, TorchScript of every zoo model, timm registration."""

import pytest
import timm
import torch
from typer.testing import CliRunner

import plugattn.timm as plugattn_timm
from plugattn.cli import app
from plugattn.export import export_onnx, script_model
from plugattn.models import MODELS, create_model, model_entry


@pytest.mark.parametrize("name", ["resnet50", "cbam_resnet20"])
def test_onnx_runtime_matches_pytorch_at_the_natural_size(name, tmp_path):
    torch.manual_seed(0)
    shape = model_entry(name).input_size
    report = export_onnx(create_model(name), tmp_path / f"{name}.onnx", shape, verify_batches=(1, 4))
    assert report.opset >= 17
    assert set(report.max_abs_difference) == {1, 4}
    assert max(report.max_abs_difference.values()) < 1e-4, report.max_abs_difference


REPRESENTED = ("32", "34", "44", "56", "101", "110", "152", "164", "_v1", "x2")
"""Copies of an architecture already scripted at another depth, width or stride placement: marked slow
(``make test-all``)."""


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if any(d in n for d in REPRESENTED) else n
                                  for n in sorted(MODELS)])
def test_every_zoo_model_scripts_and_agrees(name):
    torch.manual_seed(0)
    model = create_model(name, attention="cbam", position="post" if "resnet2" in name else "standard").eval()
    scripted = script_model(model)
    size = 32 if model_entry(name).family == "cifar" else 64  # any size runs; scripting does not depend on it
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=1e-5)


def test_timm_create_model_returns_plugattn_models():
    model = timm.create_model("plugattn_cbam_resnet50", num_classes=7)
    assert type(model).__name__ == "ResNet" and model.fc.out_features == 7
    assert model.layer1[0].attention.__class__.__name__ == "CBAM"
    grey = timm.create_model("plugattn_se_resnet20", in_chans=1, reduction=4)
    assert grey(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert len(plugattn_timm.REGISTERED) == len(timm.list_models("plugattn_*"))
    with pytest.raises(ValueError, match="no hub weights"):
        timm.create_model("plugattn_resnet20", pretrained=True)


def test_cli_export_writes_onnx_and_torchscript(tmp_path):
    result = CliRunner().invoke(app, ["export", "se_resnet20", "--onnx", str(tmp_path / "m.onnx"),
                                      "--torchscript", str(tmp_path / "m.pt")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "ONNX Runtime vs PyTorch" in result.output
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert loaded(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    bad = CliRunner().invoke(app, ["export", "resnet20"])
    assert bad.exit_code != 0 and "--onnx" in bad.output
