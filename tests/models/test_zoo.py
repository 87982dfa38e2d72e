"""create_model: torchvision equivalence, attention positions computed by hand, stages, bad input."""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck as TVBottleneck
from torchvision.models.resnet import ResNet as TVResNet

import plugattn
from plugattn import CBAM, SqueezeExcite, attach, without_attention
from plugattn.blocks import find_attention_blocks
from plugattn.models import (
    MODELS,
    ResidualUnit,
    create_model,
    list_models,
    load_backbone_state_dict,
    model_entry,
)
from plugattn.models.zoo import ATTENTION_PREFIXES
from plugattn.profiling import count_macs, count_parameters
from tests import foreign_models

TORCHVISION = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnext50_32x4d": torchvision.models.resnext50_32x4d,
    "resnext101_32x4d": lambda: TVResNet(TVBottleneck, [3, 4, 23, 3], groups=32, width_per_group=4),
}


@pytest.mark.parametrize("name", TORCHVISION)
def test_plain_model_is_torchvision_key_for_key_and_output_for_output(name):
    torch.manual_seed(0)
    reference = TORCHVISION[name]().eval()
    ours = create_model(name).eval()
    ours_state = ours.state_dict()
    assert list(ours_state) == list(reference.state_dict())
    assert all(ours_state[k].shape == v.shape for k, v in reference.state_dict().items())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_torchvision_weights_load_and_only_attention_is_missing(attention):
    reference = torchvision.models.resnet50()
    model = create_model("resnet50", attention=attention)
    missing = load_backbone_state_dict(model, reference.state_dict())
    # BatchNorm tolerates a missing num_batches_tracked, so torch does not report it
    attention_keys = {k for k in model.state_dict() if ".attention." in k and not k.endswith("num_batches_tracked")}
    assert set(missing) == attention_keys and len(attention_keys) > 0
    torch.testing.assert_close(model.layer3[2].conv2.weight, reference.layer3[2].conv2.weight)


def test_load_backbone_rejects_foreign_weights():
    with pytest.raises(ValueError, match="keys this model does not"):
        load_backbone_state_dict(create_model("resnet18"), torchvision.models.resnet18().state_dict() | {"extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"shape mismatch for fc.weight: state_dict has \(1000, 2048\), model has \(1000, 512\)"):
        wrong = torchvision.models.resnet18().state_dict() | {"fc.weight": torch.zeros(1000, 2048)}
        load_backbone_state_dict(create_model("resnet18"), wrong)
    partial = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    with pytest.raises(ValueError, match="non-attention weights.*fc"):
        load_backbone_state_dict(create_model("resnet18"), partial)


def test_zoo_se_has_the_papers_biases_unless_told_otherwise():
    assert create_model("se_resnet50").layer1[0].attention.fc[0].bias is not None
    assert create_model("se_resnet50", bias=False).layer1[0].attention.fc[0].bias is None


def test_attention_none_is_exactly_the_plain_network():
    torch.manual_seed(0)
    plain = create_model("resnet20", attention=None)
    assert not any(isinstance(m, (SqueezeExcite, CBAM)) for m in plain.modules())
    with_cbam = create_model("cbam_resnet20")
    stripped = without_attention(with_cbam)
    assert list(stripped.state_dict()) == list(plain.state_dict())
    assert count_parameters(stripped) == count_parameters(plain)


def _unit_by_hand(unit: ResidualUnit, x: torch.Tensor, position: str) -> torch.Tensor:
    """The residual unit's forward written out for each SENet integration position (Fig. 5 of the SENet paper)."""
    attention = unit.attention
    branch_input, shortcut_input = unit.split(x)
    if position == "pre":
        branch_input = attention(branch_input)
    residual = unit.branch(branch_input)
    if position == "standard":
        residual = attention(residual)
    identity = unit.shortcut(shortcut_input)
    if position == "identity":
        identity = attention(identity)
    out = unit.merge(residual, identity)
    return attention(out) if position == "post" else out


@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity"])
@pytest.mark.parametrize(
    ("name", "shape"),
    [("resnet18", (2, 3, 64, 64)), ("resnet50", (2, 3, 64, 64)), ("resnet20", (2, 3, 32, 32)),
     ("preact_resnet164", (2, 3, 32, 32)), ("wrn16_8", (2, 3, 32, 32))],
)
def test_positions_put_the_block_where_senet_says(name, shape, position):
    torch.manual_seed(0)
    model = create_model(name, attention="se", reduction=4, position=position).eval()
    unit = model.layer2[0]  # a downsampling unit: input and output channels differ
    expected_channels = unit.conv1.in_channels if position == "pre" else model.layer2[-1].attention.channels
    assert unit.attention.channels == expected_channels
    x = torch.randn(shape[0], unit.conv1.in_channels, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), _unit_by_hand(unit, x, position))
        unit_plain = without_attention(unit)
        assert not torch.allclose(unit(x), unit_plain(x))


def test_pre_position_does_not_touch_the_identity_path():
    unit = create_model("resnet18", attention="se", position="pre").eval().layer1[0]
    unit.attention = nn.Identity()  # still identical once the block is neutral
    x = torch.randn(1, 64, 8, 8)
    torch.testing.assert_close(unit(x), without_attention(unit)(x))


def test_stages_select_where_blocks_go():
    model = create_model("resnet50", attention="cbam", stages=(3, 4))
    with_block = [name for name, m in model.named_modules() if isinstance(m, ResidualUnit) and m.attention is not None]
    assert len(with_block) == 6 + 3 and all(name.startswith(("layer3", "layer4")) for name in with_block)
    assert sum(isinstance(m, CBAM) for m in create_model("cbam_resnet20", stages=[1]).modules()) == 3


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if any(d in n for d in ("101", "152"))
                                  else n for n in sorted(MODELS)])
def test_forward_and_backward_at_natural_size(name):
    torch.manual_seed(0)
    model = create_model(name, attention="cbam", num_classes=7)
    x = torch.randn(2, *model_entry(name).input_size)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert model.conv1.weight.grad is not None
    assert all(p.grad is not None for p in model.layer1[0].attention.parameters())


def test_names_and_prefixes():
    names = list_models()
    assert {"resnet50", "resnet50_v1", "cbam_resnet50", "cbam_resnet50_v1", "se_resnet20", "wrn16_8", "bam_resnet50",
            "eca_resnet50", "coord_resnet20", "simam_resnet50", "triplet_resnet50", "gc_resnet50",
            "scse_wrn16_8"} <= set(names)
    assert len(names) == (1 + len(ATTENTION_PREFIXES)) * len(MODELS) == 10 * len(MODELS)
    assert isinstance(create_model("cbam_resnet20").layer1[0].attention, CBAM)
    assert isinstance(create_model("resnet20", attention="se").layer1[0].attention, SqueezeExcite)


BAD = [
    (dict(name="resnet5"), ValueError, ["unknown model name 'resnet5'", "resnet50", "resnet56"]),
    (dict(name="cbam_resnt50"), ValueError, ["cbam_resnet50"]),
    (dict(name="resnet50", stages=(5,)), ValueError, ["stages", "1..4", "(5,)"]),
    (dict(name="resnet20", stages=(4,), attention="se"), ValueError, ["stages", "1..3", "resnet20"]),
    (dict(name="resnet20", stages=(), attention="se"), ValueError, ["stages"]),
    (dict(name="resnet18", attention="se", position="middle"), ValueError, ["position", "'identity'", "'middle'"]),
    (dict(name="resnet18", num_classes=-1), ValueError, ["num_classes", "-1"]),
    (dict(name="resnet18", num_classes=2.5), TypeError, ["num_classes", "float"]),
    (dict(name="cbam_resnet18", attention="se"), ValueError, ["already selects attention 'cbam'", "'se'"]),
    (dict(name="resnet18", kernel_size=3), ValueError, ["block options", "kernel_size", "attention is None"]),
    (dict(name="resnet18", attention="se", kernel_size=3), TypeError, ["'se'", "kernel_size"]),
    (dict(name="resnet18", attention="sse"), ValueError, ["attention must be one of", "did you mean", "'se'"]),
    (dict(name="resnet18", attention="cbam", reduction=0), ValueError, ["reduction", "0"]),
    (dict(name="resnet18", attention="bam", placement="between"), ValueError, ["placement", "'stage'", "'between'"]),
]


@pytest.mark.parametrize(("kwargs", "error", "fragments"), BAD, ids=lambda v: None)
def test_bad_input(kwargs, error, fragments):
    kwargs = dict(kwargs)
    with pytest.raises(error) as caught:
        create_model(kwargs.pop("name"), **kwargs)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


def test_zoo_models_script():
    model = create_model("cbam_resnet20", position="post").eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(torch.jit.script(model)(x), model(x))


def test_architecture_variants_for_published_weights():
    """Cadene's stem pool, senet.pytorch's CIFAR projection shortcuts and timm's rounded SE widths."""
    ceil = create_model("se_resnet50_v1", stem_pool="ceil")
    assert isinstance(ceil.maxpool, nn.MaxPool2d) and ceil.maxpool.ceil_mode and ceil.maxpool.padding == 0
    assert ceil.maxpool(torch.zeros(1, 1, 112, 112)).shape[-1] == 56  # same size as padding=1, other values
    assert create_model("resnet50").stem_pool == "pad" and create_model("resnet50_v1").stride_in_1x1
    projected = create_model("se_resnet20", shortcut="B", bias=False, reduction=16)
    downsample = projected.layer2[0].downsample
    assert isinstance(downsample, nn.Sequential) and downsample[0].kernel_size == (1, 1) and downsample[0].stride == (2, 2)
    assert projected.layer1[0].downsample is None
    extra = 32 * 16 + 2 * 32 + 64 * 32 + 2 * 64  # two 1x1 convolutions with their BatchNorms
    assert count_parameters(projected) == count_parameters(create_model("se_resnet20", bias=False, reduction=16)) + extra
    timm_like = create_model("se_resnet18", divisor=8)
    assert [unit.attention.fc[0].out_features for unit in (timm_like.layer1[0], timm_like.layer2[0],
                                                           timm_like.layer3[0], timm_like.layer4[0])] == [8, 8, 16, 32]
    assert create_model("se_resnet18").layer1[0].attention.fc[0].out_features == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "resnet50", "stem_pool": "same"}, r"stem_pool must be one of 'pad', 'ceil'; got 'same'"),
    ({"name": "resnet20", "stem_pool": "ceil"}, r"stem_pool is an option of the ImageNet family; resnet20 is cifar-style"),
    ({"name": "resnet50", "shortcut": "B"}, r"shortcut is an option of the CIFAR family; resnet50 is imagenet-style"),
    ({"name": "wrn16_8", "shortcut": "B"}, r"shortcut='B' applies to the ResNet-20…110 units only"),
    ({"name": "se_resnet20", "divisor": 0}, r"divisor must be a positive int"),
])
def test_bad_architecture_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model(**kwargs)


@pytest.mark.parametrize(("name", "options", "expected", "gmacs"), [  # ../shared/reference/paper_tables.md
    ("bam_resnet50", {}, 25_915_099, 4.171),  # BAM after layer1–3 (the official bam1..bam3)
    ("eca_resnet50", {}, 25_557_112, 4.089),  # ECANet's README: "24.37M" = this count / 2**20
    ("triplet_resnet50", {}, 25_561_832, 4.136),
    ("gc_resnet50", {}, 28_078_773, 4.098),  # GCNet, ratio 1/16 after conv3/bn3 of c3–c5
    ("gc_resnet50", {"ratio": 1 / 4}, 35_557_941, 4.105),
])
def test_the_familys_published_parameter_and_mac_counts(name, options, expected, gmacs):
    model = create_model(name, **options).eval()
    assert sum(p.numel() for p in model.parameters()) == expected
    assert count_macs(model, torch.randn(1, 3, 224, 224)) / 1e9 == pytest.approx(gmacs, abs=5e-4)


def test_the_familys_official_placements():
    eca = create_model("eca_resnet50")
    assert [eca.get_submodule(f"layer{i}")[0].attention.kernel_size for i in range(1, 5)] == [3, 5, 5, 7]
    assert [create_model("eca_resnet18").get_submodule(f"layer{i}")[0].attention.kernel_size
            for i in range(1, 5)] == [3, 3, 3, 3]
    assert create_model("eca_resnet50", kernel_size=9).layer1[0].attention.kernel_size == 9  # explicit wins
    gc = create_model("gc_resnet50")
    assert gc.layer1[0].attention is None and all(gc.get_submodule(f"layer{i}")[0].attention is not None
                                                  for i in (2, 3, 4))
    bam = create_model("bam_resnet20")
    assert [name for name, _ in find_attention_blocks(bam)] == ["layer1.2.attention", "layer2.2.attention"]
    assert bam.layer1[2].position == "post"  # at the stage's output, after the last unit's addition
    triplet = create_model("triplet_resnet50").layer2[1].attention
    assert triplet.hw.spatial.bn.weight.item() == 0 and triplet.cw.spatial.bn.weight.item() == 1 == \
        triplet.hc.spatial.bn.weight.item()


def test_coordinate_attention_mobilenet_v2_by_attach_has_the_published_count():
    model = torchvision.models.mobilenet_v2()
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    after_depthwise = [f"features.{i}.conv.1" for i in range(2, 18)]  # every block with expansion 6
    attach(model, "coord", after_depthwise, example_input=torch.randn(1, 3, 224, 224))
    assert sum(p.numel() for p in model.parameters()) == 3_950_648
    assert sum(p.numel() for p in foreign_models.OfficialMobileNetV2CA().parameters()) == 3_950_648  # mbv2_ca.py


def _simam(x, e_lambda=1e-4):
    """SimAM written out from the paper's formula."""
    n = x.shape[2] * x.shape[3] - 1
    d = (x - x.mean((2, 3), keepdim=True)) ** 2
    return x * torch.sigmoid(d / (4 * (d.sum((2, 3), keepdim=True) / n + e_lambda)) + 0.5)


def test_simam_sits_before_the_last_batchnorm_as_in_its_official_resnets():
    torch.manual_seed(0)
    model = create_model("simam_resnet50").eval()
    assert count_parameters(model) == 25_557_032  # parameter-free: resnet50's count
    unit = model.layer2[0]
    assert unit.position == "prenorm"
    x = torch.randn(1, 256, 28, 20)
    with torch.no_grad():
        out = unit.relu(unit.bn1(unit.conv1(x)))
        out = unit.relu(unit.bn2(unit.conv2(out)))
        expected = unit.relu(unit.bn3(_simam(unit.conv3(out))) + unit.downsample(x))
        torch.testing.assert_close(unit(x), expected)
    cifar = create_model("simam_resnet20").eval()
    unit = cifar.layer1[1]
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        expected = unit.relu(unit.bn2(_simam(unit.conv2(unit.relu(unit.bn1(unit.conv1(x)))))) + x)
        torch.testing.assert_close(unit(x), expected)
        torch.testing.assert_close(torch.jit.script(cifar)(x[:, :3]), cifar(x[:, :3]))
    assert create_model("resnet20", attention="simam", position="standard").layer1[0].position == "standard"
    assert create_model("simam_preact_resnet164").layer1[0].position == "standard"  # no final norm to sit before
    with pytest.raises(ValueError, match=r"position 'prenorm' .* PreActBottleneck's branch does not end in a BatchNorm"):
        create_model("preact_resnet164", attention="se", position="prenorm")


def test_attach_prenorm_into_torchvision_units_and_detach():
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        before = model(x)
    kinds = {p.kind for p in plugattn.insertion_points(model) if p.name == "layer1.0"}
    assert "prenorm" in kinds
    attach(model, "simam")  # SimAM's default position: its official place
    unit = model.layer3[1]
    y = torch.randn(1, 1024, 6, 4)
    with torch.no_grad():
        out = unit.relu(unit.bn2(unit.conv2(unit.relu(unit.bn1(unit.conv1(y))))))
        bn3 = unit.bn3  # called without its hook: the block's input is computed here by hand
        normed = nn.functional.batch_norm(_simam(unit.conv3(out)), bn3.running_mean, bn3.running_var, bn3.weight,
                                          bn3.bias, False, 0.0, bn3.eps)
        torch.testing.assert_close(unit(y), unit.relu(normed + y))
        plugattn.detach(model)
        torch.testing.assert_close(model(x), before)
    convnext = attach(torchvision.models.convnext_tiny(), "simam")  # no BatchNorm to sit before: standard
    assert {p.kind for p in plugattn.insertion_points(convnext) if p.name == "features.1.0"} == {"standard", "pre", "post"}
    assert len(plugattn.attached_blocks(convnext)) == 18
