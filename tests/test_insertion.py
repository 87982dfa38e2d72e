"""attach / detach / insertion_points on torchvision, timm, 1-D and user-defined models."""

import copy

import pytest
import timm
import torch
import torchvision
from torch import nn

from plugattn import CBAM
from plugattn.insertion import (
    attach,
    attached_blocks,
    detach,
    insertion_points,
    register_residual_unit,
)
from plugattn.models import create_model
from plugattn.profiling import count_parameters

tv = torchvision.models


@pytest.mark.parametrize(("arch", "attention"), [("resnet50", "cbam"), ("resnet50", "se"), ("resnet18", "cbam"), ("resnet18", "se")])
def test_attach_to_torchvision_equals_the_zoo_model(arch, attention):
    torch.manual_seed(0)
    attached = attach(getattr(tv, arch)(), attention).eval()
    zoo = create_model(f"{attention}_{arch}").eval()
    assert count_parameters(attached) == count_parameters(zoo)
    assert list(attached.state_dict()) == list(zoo.state_dict())  # same names: weights copy across strictly
    zoo.load_state_dict(attached.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(attached(x), zoo(x))


@pytest.mark.parametrize("position", ["standard", "pre", "post", "identity"])
def test_every_position_on_torchvision_matches_the_zoo_unit(position):
    torch.manual_seed(0)
    attached = attach(tv.resnet18(), "se", position=position, reduction=8).eval()
    zoo = create_model("resnet18", attention="se", position=position, reduction=8).eval()
    zoo.load_state_dict(attached.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(attached(x), zoo(x))
    assert not torch.allclose(attached(x), detach(attached)(x))


def test_pretrained_weight_flow():
    torch.manual_seed(0)
    plain_state = tv.resnet50().state_dict()
    model = attach(tv.resnet50(), "cbam")
    result = model.load_state_dict(plain_state, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".attention." in key for key in result.missing_keys)
    detach(model).load_state_dict(plain_state, strict=True)


def _tv_and_timm_models():
    return {
        "resnet18": (tv.resnet18, "residual", 8),
        "resnext50_32x4d": (tv.resnext50_32x4d, "residual", 16),
        "wide_resnet50_2": (tv.wide_resnet50_2, "residual", 16),
        "mobilenet_v2": (tv.mobilenet_v2, "residual", 17),
        "vgg16_bn": (tv.vgg16_bn, "features.*", 44),
        "densenet121": (tv.densenet121, "features.transition*", 3),
        "convnext_tiny": (tv.convnext_tiny, "residual", 18),
        "timm_resnet50": (lambda: timm.create_model("resnet50"), "residual", 16),
        "timm_efficientnet_b0": (lambda: timm.create_model("efficientnet_b0"), "residual", 16),
    }


@pytest.mark.parametrize("name", list(_tv_and_timm_models()))
def test_attach_works_and_detach_round_trips(name):
    make, where, expected_blocks = _tv_and_timm_models()[name]
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    points = insertion_points(model)
    assert points and all(p.channels is None or p.channels > 0 for p in points)
    attach(model, "cbam", where)
    blocks = attached_blocks(model)
    assert len(blocks) == expected_blocks
    model.train()
    out = model(x)
    out.sum().backward()
    assert all(p.grad is not None for _, block in blocks for p in block.parameters())
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(x), reference)
    detach(model)
    assert list(model.state_dict()) == list(state)
    model.load_state_dict(state)  # undo the BatchNorm statistics the training step moved
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, atol=0, rtol=0)
    assert not attached_blocks(model)


def test_point_list_of_torchvision_resnet18():
    points = insertion_points(tv.resnet18())
    units = [p for p in points if p.kind == "standard"]
    assert [p.name for p in units] == [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert [p.channels for p in units] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [p.stage for p in units] == [1, 1, 2, 2, 3, 3, 4, 4]
    pre = {p.name: p.channels for p in points if p.kind == "pre"}
    assert pre["layer2.0"] == 64 and pre["layer2.1"] == 128
    after = {p.name: (p.channels, p.dims) for p in points if p.kind == "after"}
    assert after["layer3.1.conv2"] == (256, 2) and after["layer3.1.bn1"] == (256, 2)
    assert after["relu"] == (None, None) and after["fc"] == (None, None)  # not declared by the modules
    traced = {p.name: (p.channels, p.dims) for p in insertion_points(tv.resnet18(), torch.randn(1, 3, 64, 64))}
    assert traced["relu"] == (64, 2) and traced["fc"] == (None, None)  # fc's output has rank 2: no point


def test_glob_regex_and_explicit_names():
    model = attach(tv.resnet18(), "se", "layer3.*.conv2")
    assert [name for name, _ in attached_blocks(model)] == ["layer3.0.conv2.attention", "layer3.1.conv2.attention"]
    model = attach(tv.resnet18(), "se", "re:layer4\\.\\d\\.bn1")
    assert len(attached_blocks(model)) == 2
    model = attach(tv.resnet18(), "cbam", ["layer1.0", "layer4.1.bn1"], position="post")
    names = [name for name, _ in attached_blocks(model)]
    assert names == ["layer1.0.attention", "layer4.1.bn1.attention"]
    assert model.layer4[1].bn1.attention.channels == 512


def test_stages_and_options_pass_through():
    model = attach(tv.resnet50(), "cbam", stages=(3, 4), reduction=8, kernel_size=3, pool_types=("avg", "lse"))
    blocks = dict(attached_blocks(model))
    assert len(blocks) == 6 + 3 and all(name.startswith(("layer3", "layer4")) for name in blocks)
    block = blocks["layer3.0.attention"]
    assert block.channel_gate.mlp[1].out_features == 1024 // 8
    assert block.spatial_gate.kernel_size == 3 and block.channel_gate.pool_types == ["avg", "lse"]


class ResBlock1d(nn.Module):
    """A user-defined 1-D residual unit (e.g. for sequences or modality channels)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv1d(channels, channels, 3, padding=1)
        self.norm = nn.BatchNorm1d(channels)
        self.conv_b = nn.Conv1d(channels, channels, 3, padding=1)
        self.skip = None

    def forward(self, x):
        shortcut = x if self.skip is None else self.skip(x)
        return torch.relu(self.conv_b(torch.relu(self.norm(self.conv_a(x)))) + shortcut)


class UserNet1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv1d(4, 32, 5, padding=2)
        self.body = nn.Sequential(ResBlock1d(32), ResBlock1d(32))
        self.head = nn.Linear(32, 3)

    def forward(self, x):
        return self.head(self.body(torch.relu(self.stem(x))).mean(-1))


@pytest.fixture
def registered_resblock1d(monkeypatch):
    """ResBlock1d declared as a residual unit for one test only: the process-wide table is restored after it."""
    from plugattn import insertion

    monkeypatch.setattr(insertion, "_RESIDUAL_SPECS", dict(insertion._RESIDUAL_SPECS))
    register_residual_unit(ResBlock1d, branch_start="conv_a", branch_end="conv_b", shortcut="skip")
    yield


def test_user_defined_1d_model_with_declared_residual_unit(registered_resblock1d):
    torch.manual_seed(0)
    model = UserNet1d()
    x = torch.randn(2, 4, 50)
    reference = model(x)
    attach(model, "cbam", position="identity", reduction=4)
    block = model.body[0].attention
    assert isinstance(block, CBAM) and block.dims == 1 and block.channels == 32
    assert isinstance(model.body[0].skip, nn.Identity)  # placeholder for the plain shortcut
    model(x).sum().backward()
    detach(model)
    assert model.body[0].skip is None
    torch.testing.assert_close(model(x), reference)
    attach(model, "cbam", "stem")  # an "after" point on a Conv1d: dims inferred from the layer
    assert model.stem.attention.dims == 1
    assert model(x).shape == (2, 3)


def test_user_module_tree_without_residual_units_needs_names():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="no residual unit.*register_residual_unit"):
        attach(model, "se")
    attach(model, "se", ["1"], reduction=4)  # after the ReLU: 8 channels, from the conv before it
    assert model[1].attention.channels == 8
    assert model(torch.randn(1, 3, 10, 10)).shape == (1, 2)


def test_channel_count_from_a_dry_run_when_modules_do_not_say():
    class Doubler(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], 1)

    model = nn.Sequential(nn.Conv2d(3, 8, 3), Doubler(), nn.Conv2d(16, 4, 1))
    with pytest.raises(ValueError, match=r"cannot determine the channel count at 1 \(Doubler\).*example_input"):
        attach(model, "se", ["1"])
    attach(model, "se", ["1"], reduction=4, example_input=torch.randn(1, 3, 8, 8))
    assert model[1].attention.channels == 16
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4, 6, 6)


def test_attach_to_zoo_model_equals_building_it_with_attention():
    plain = create_model("resnet20")
    attach(plain, "cbam", position="pre", reduction=4)
    built = create_model("resnet20", attention="cbam", position="pre", reduction=4)
    assert list(plain.state_dict()) == list(built.state_dict())
    built.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(plain.eval()(x), built.eval()(x))
    detach(plain)
    assert all(unit.attention is None for unit in plain.modules() if hasattr(unit, "attention"))


def test_deepcopy_keeps_an_independent_working_copy():
    model = attach(tv.resnet18(), "se").eval()
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.layer1[0].attention.fc[2].weight.zero_()  # twin's gates become 0.5 in layer1.0 only
    x = torch.randn(1, 3, 64, 64)
    assert not torch.allclose(twin(x), model(x))
    detach(twin)
    assert attached_blocks(model) and not attached_blocks(twin)


def test_replace_and_attach_twice():
    model = attach(tv.resnet18(), "se")
    with pytest.raises(ValueError, match=r"point 'layer1.0' already has an attention block.*replace=True"):
        attach(model, "cbam")
    attach(model, "cbam", replace=True)
    assert isinstance(model.layer1[0].attention, CBAM) and len(attached_blocks(model)) == 8
    zoo = create_model("se_resnet20")
    with pytest.raises(ValueError, match="already has an attention block"):
        attach(zoo, "se")


def test_bad_input():
    with pytest.raises(ValueError, match=r"where='nothing\.\*' matched no insertion point.*layer1\.0.*insertion_points"):
        attach(tv.resnet18(), "se", "nothing.*")
    with pytest.raises(ValueError, match=r"'layer9\.0'.*close matches"):
        attach(tv.resnet18(), "se", ["layer9.0"])
    with pytest.raises(ValueError, match="position 'identity' is not available.*CNBlock"):
        attach(tv.convnext_tiny(), "se", position="identity")
    with pytest.raises(ValueError, match="position must be one of"):
        attach(tv.resnet18(), "se", position="middle")
    with pytest.raises(ValueError, match=r"stages must be a non-empty selection of \[1, 2, 3, 4\].*\(5,\)"):
        attach(tv.resnet18(), "se", stages=(5,))
    with pytest.raises(TypeError, match="DataParallel.*attach attention to the bare model first"):
        attach(nn.DataParallel(tv.resnet18()), "se")
    with pytest.raises(TypeError, match="'se' does not take option"):
        attach(tv.resnet18(), "se", kernel_size=3)
    with pytest.raises(TypeError, match="where must be"):
        attach(tv.resnet18(), "se", where=3)


def test_builtin_residual_specs_load_once_and_completely_under_concurrent_first_use(monkeypatch):
    """Many threads meet the lazily loaded table of torchvision/timm units at once; each sees it complete."""
    import threading

    from plugattn import insertion

    monkeypatch.setattr(insertion, "_RESIDUAL_SPECS", {})
    monkeypatch.setattr(insertion, "_BUILTIN_SPECS_LOADED", False)
    model = torchvision.models.resnet18()
    unit = model.layer1[0]
    start = threading.Barrier(8)
    found = []

    def first_use():
        start.wait()
        found.append(insertion.residual_spec(unit))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and all(spec is not None and spec.branch_end == "bn2" for spec in found)
