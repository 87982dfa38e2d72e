"""Default insertion in every common CNN family: torchvision's classification families and timm's most fine-tuned
ones, every registered block at every position their units offer — shapes, identity insertion, detach — and the
stage placement for networks without residual units (VGG, DenseNet, a user's plain stack)."""

import json

import pytest
import timm
import torch
import torchvision
from timm.models import resnetv2
from torch import nn
from typer.testing import CliRunner

from plugattn import attach, detach, insertion_points, list_attention, stage_ends
from plugattn.checkpoint import load_checkpoint
from plugattn.cli import app
from plugattn.insertion import attached_blocks
from tests.conftest import make_image_folder, trained_like

TORCHVISION = {  # family: (model, unit classes its default insertion must find)
    "mobilenet_v3": ("mobilenet_v3_small", {"InvertedResidual"}),
    "efficientnet": ("efficientnet_b0", {"MBConv"}),
    "efficientnet_v2": ("efficientnet_v2_s", {"MBConv", "FusedMBConv"}),
    "regnet_x": ("regnet_x_400mf", {"ResBottleneckBlock"}),
    "regnet_y": ("regnet_y_400mf", {"ResBottleneckBlock"}),
    "mnasnet": ("mnasnet0_5", {"_InvertedResidual"}),
    "shufflenet_v2": ("shufflenet_v2_x0_5", {"InvertedResidual"}),
    "convnext": ("convnext_tiny", {"CNBlock"}),
}
TIMM = {
    "efficientnet_b0": {"DepthwiseSeparableConv", "InvertedResidual"},
    "mobilenetv3_small_050": {"ConvBnAct", "DepthwiseSeparableConv", "InvertedResidual"},
    "tf_efficientnetv2_b0": {"EdgeResidual", "InvertedResidual"},
    "mobilenetv4_hybrid_medium": {"UniversalInvertedResidual", "MobileAttention"},
    "efficientnet_cc_b0_4e": {"CondConvResidual"},
    "regnety_002": {"Bottleneck"},
    "resnetv2_18": {"PreActBasic"},
    "resnetv2_50": {"PreActBottleneck"},
    "resnetv2_bottleneck": {"Bottleneck"},
    "convnext_atto": {"ConvNeXtBlock"},
}


def _build(source: str, name: str) -> nn.Module:
    """The network with trained-looking BatchNorms and layer scales (freshly initialised ones make some nets'
    logits ~1e-10 and their branches negligible)."""
    torch.manual_seed(0)
    if source == "torchvision":
        model = torchvision.models.get_model(name, weights=None)
    elif name == "resnetv2_bottleneck":  # timm's non-pre-activation ResNetV2 unit (no registered model uses it)
        model = resnetv2.ResNetV2(layers=(1, 1, 1, 1), preact=False, num_classes=10)
    else:
        model = timm.create_model(name)
    with torch.no_grad():  # layer scales start at 1e-6: trained ones are of order 1, else no branch matters
        for parameter_name, parameter in model.named_parameters():
            if parameter_name.endswith(("layer_scale", "gamma")):
                parameter.uniform_(0.5, 1.5)
    return trained_like(model)


def _assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within float rounding, at the outputs' own scale."""
    torch.testing.assert_close(actual, expected, atol=1e-5 * expected.abs().max().item(), rtol=1e-4)


CASES = [("torchvision", name, units) for name, units in TORCHVISION.values()] + \
        [("timm", name, units) for name, units in TIMM.items()]
ROTATION = 3
"""Each network takes every third registered block (a different third per network), so that every block meets
several families in ``make test``; the whole block × network matrix is marked slow."""


def _blocks_for(index: int, everything: bool) -> list[str]:
    names = list_attention()
    return names if everything else [name for i, name in enumerate(names) if i % ROTATION == index % ROTATION]


@pytest.mark.parametrize("everything", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["rotation", "all"])
@pytest.mark.parametrize(("index", "source", "name", "units"), [(i, *case) for i, case in enumerate(CASES)],
                         ids=[f"{s}:{n}" for s, n, _ in CASES])
def test_every_block_at_every_position_inserts_as_the_identity_and_detaches(index, source, name, units, everything):
    model = _build(source, name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
    state = list(model.state_dict())
    points = [p for p in insertion_points(model, x) if p.kind != "after"]
    assert units <= {p.module_type for p in points}, {p.module_type for p in points}
    positions = sorted({p.kind for p in points})
    assert {"standard", "pre", "post"} <= set(positions)
    for attention in _blocks_for(index, everything):
        for position in positions:
            attach(model, attention, "residual", position=position, init="identity", example_input=x)
            expected = sum(p.kind == position for p in points)
            assert len(attached_blocks(model)) == expected > 0
            with torch.no_grad():
                _assert_same(model(x), reference)
            detach(model)
    attach(model, "cbam", "residual", example_input=x)  # as the papers build it: a real change, same shape
    with torch.no_grad():
        changed = model(x)
    assert changed.shape == reference.shape and torch.isfinite(changed).all()
    assert (changed - reference).abs().max() > 1e-2 * reference.abs().max()
    detach(model)
    assert list(model.state_dict()) == state
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, atol=0, rtol=0)


def test_maxvit_mbconv_units():
    model = trained_like(torchvision.models.maxvit_t()).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        reference = model(x)
    attach(model, "se", init="identity", example_input=x)
    assert len(attached_blocks(model)) == 11  # one MBConv per MaxViT layer: 2 + 2 + 5 + 2
    assert {p.module_type for p in insertion_points(model) if p.kind == "standard"} == {"MBConv"}
    with torch.no_grad():
        _assert_same(model(x), reference)


def test_shufflenet_gates_the_processed_half_and_the_post_point_the_whole_output():
    model = torchvision.models.shufflenet_v2_x0_5()
    unit = model.stage2[1]
    half = unit.branch2[-2].num_features
    by_kind = {p.kind: p for p in insertion_points(model) if p.name == "stage2.1"}
    assert (by_kind["standard"].channels, by_kind["post"].channels, by_kind["pre"].channels) == (half, 2 * half, half)
    assert "identity" not in by_kind  # no shortcut module: the passed-through half is a chunk of the input
    attach(model, "se", reduction=4)
    assert unit.attention.channels == half
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_shortcuts_that_none_does_not_stand_for_are_never_invented():
    """timm's pre-activation units take the normed input as shortcut only through their downsample; timm's RegNet
    has no shortcut where downsample is None. An nn.Identity placeholder would change what such a unit computes,
    so the identity position exists only where a shortcut module does."""
    model = timm.create_model("resnetv2_18").eval()
    with_module = {name for name, m in model.named_modules() if isinstance(m, resnetv2.PreActBasic)
                   and m.downsample is not None}
    identity = {p.name for p in insertion_points(model) if p.kind == "identity"}
    assert identity == with_module and 0 < len(identity) < 8


@pytest.mark.parametrize(("name", "ends"), [
    ("vgg11", ["features.1", "features.4", "features.9", "features.14", "features.19"]),
    ("densenet121", ["features.relu0", "features.denseblock1", "features.denseblock2", "features.denseblock3",
                     "features.norm5"]),
    ("resnet18", ["relu", "layer1", "layer2", "layer3", "layer4"]),
])
def test_stage_ends_are_where_the_resolution_changes(name, ends):
    model = torchvision.models.get_model(name)
    assert stage_ends(model) == ends
    assert stage_ends(model, torch.zeros(1, 3, 64, 64)) == ends  # found the same at a small size


@pytest.mark.parametrize(("name", "stored"), [
    ("vgg11", ["features.1.attention", "features.4.attention", "features.9.attention", "features.14.attention",
               "features.19.attention"]),
    # a dense block is a ModuleDict (runs no forward of its own): its block is stored on the nearest module that does
    ("densenet121", ["features.relu0.attention", "attention_features_denseblock1", "attention_features_denseblock2",
                     "attention_features_denseblock3", "features.norm5.attention"]),
])
def test_stage_placement_for_networks_without_residual_units(name, stored):
    model = trained_like(torchvision.models.get_model(name)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
    with pytest.raises(ValueError, match=r"where='residual' matched nothing.*where='stage' \(a block after each of "
                                         r"its 5 stages: \[features\."):
        attach(model, "se", example_input=x)
    for attention in list_attention():
        attach(model, attention, "stage", init="identity", example_input=x)
        assert sorted(name for name, _ in attached_blocks(model)) == sorted(stored)
        with torch.no_grad():
            _assert_same(model(x), reference)
        detach(model)
    attach(model, "cbam", "stage", stages=[2, 3])
    assert len(attached_blocks(model)) == 2
    with pytest.raises(ValueError, match=r"stages must be a non-empty selection of \[1, 2, 3, 4, 5\].*got \[7\]"):
        attach(model, "se", "stage", stages=[7], replace=True)


def test_a_users_plain_stack_gets_stages_and_lazy_modules_need_a_sample():
    stack = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 2))
    model = nn.Sequential()
    model.add_module("body", stack)
    x = torch.randn(2, 3, 16, 16)
    assert stage_ends(model, x) == ["body.1", "body.4"]  # the last pooling alone holds no convolution
    attach(model, "cbam", "stage", reduction=4, example_input=x)
    assert model(x).shape == (2, 2)
    lazy = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="where='stage' needs example_input .*lazy modules"):
        attach(lazy, "se", "stage")


FINE_TUNED = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "efficientnet_v2_s", "mnasnet0_5",
              "regnet_y_400mf", "shufflenet_v2_x0_5", "convnext_tiny", "vgg11", "densenet121"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("vgg11", "efficientnet_v2_s") else n
                                  for n in FINE_TUNED])  # the slowest two: densenet121 and efficientnet_b0 cover them
def test_cli_fine_tunes_every_family_from_a_weights_file(name, tmp_path):
    """`plugattn train --model torchvision:NAME --weights FILE --attention cbam` with the default where (stage
    placement for VGG and DenseNet), the weights' preprocessing (ImageNet statistics), CBAM starting as the identity."""
    folder = make_image_folder(tmp_path / "images", train=8, test=4)
    weights = tmp_path / f"{name}.pth"
    torch.save(torchvision.models.get_model(name, num_classes=3).state_dict(), weights)
    where = ["--where", "stage"] if name in ("vgg11", "densenet121") else []
    result = CliRunner().invoke(app, ["train", "--model", f"torchvision:{name}", "--weights", str(weights),
                                      "--attention", "cbam", *where, "--dataset", f"imagefolder:{folder}",
                                      "--image-size", "32", "--epochs", "1", "--batch-size", "8", "--lr", "0.01",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "starting as the exact identity" in result.output and f"torchvision {name} weights" in result.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["start_metrics"]["top1"] >= 0 and summary["epochs"] == 1
    blocks = [key for key in load_checkpoint(tmp_path / "run" / "last.safetensors")[0] if key.endswith(".alpha")]
    assert len(blocks) == (5 if where else len([p for p in insertion_points(torchvision.models.get_model(name))
                                                if p.kind == "standard"]))
