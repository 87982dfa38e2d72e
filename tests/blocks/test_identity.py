"""init="identity": a block inserted into a trained network leaves its outputs exactly as they were, learns
from the first steps, and is the papers' block once alpha reaches 1."""

import copy

import pytest
import torch
import torchvision
from torch import nn

import plugattn
from plugattn import attach, create_attention, create_model, register_attention
from plugattn.blocks import IdentityStart
from tests.conftest import trained_like

BLOCKS = ["se", "channel", "spatial", "cbam", "cbam-channel"]
POSITIONS = ["standard", "pre", "post", "identity"]


def _trained_like(model):
    return trained_like(model).eval()


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("block", BLOCKS)
def test_attach_with_identity_init_leaves_outputs_unchanged(block, position):
    model = _trained_like(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        attach(model, block, position=position, reduction=4, init="identity")
        after = model(x)
    assert len(plugattn.attached_blocks(model)) == 8
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    paper = attach(_trained_like(torchvision.models.resnet18(num_classes=10)), block, position=position, reduction=4)
    with torch.no_grad():
        assert (paper(x) - before).abs().max() > 1e-3  # the papers' insertion changes the function


@pytest.mark.parametrize("block", BLOCKS)
def test_identity_start_at_after_points_and_in_zoo_models(block):
    model = _trained_like(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        attach(model, block, ["layer1.0.conv1", "layer3", "layer2.1.bn1"], reduction=4, init="identity")
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)
    zoo = _trained_like(create_model("resnet20", num_classes=5))
    with_blocks = create_model("resnet20", num_classes=5, attention=block, reduction=4, init="identity")
    assert not with_blocks.load_state_dict(zoo.state_dict(), strict=False).unexpected_keys
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(with_blocks.eval()(x), zoo.eval()(x), atol=1e-6, rtol=0)


def test_user_blocks_start_as_the_identity_too(monkeypatch):
    monkeypatch.setattr(plugattn.blocks.registry, "_REGISTRY", dict(plugattn.blocks.registry._REGISTRY))
    register_attention("test-halve", lambda channels, **options: nn.Sequential(nn.Conv2d(channels, channels, 1)))
    model = _trained_like(torchvision.models.resnet18())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        attach(model, "test-halve", init="identity")
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)
    assert all(isinstance(block, IdentityStart) for _, block in plugattn.attached_blocks(model))


@pytest.mark.parametrize("block", ["se", "cbam"])
def test_every_attention_parameter_learns_within_a_few_steps(block):
    torch.manual_seed(0)
    model = attach(_trained_like(torchvision.models.resnet18(num_classes=4)).train(), block, reduction=4,
                   init="identity")
    names = [name for name, _ in model.named_parameters() if ".attention." in f".{name}"]
    moved = dict.fromkeys(names, False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 4, (8,))
    for _ in range(4):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name, parameter in model.named_parameters():
            if name in moved and parameter.grad is not None and parameter.grad.abs().sum() > 0:
                moved[name] = True
        optimizer.step()
    assert all(moved.values()), [name for name, ok in moved.items() if not ok]


@pytest.mark.parametrize("block", BLOCKS)
def test_alpha_one_is_the_papers_block(block):
    torch.manual_seed(0)
    options = {"reduction": 4} if "reduction" in plugattn.attention_options(block) else {}
    inner = create_attention(block, 16, **options)
    wrapped = IdentityStart(copy.deepcopy(inner))
    with torch.no_grad():
        wrapped.alpha.fill_(1.0)
    x, shortcut = torch.randn(2, 16, 6, 6), torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(wrapped(x), inner(x))
    torch.testing.assert_close(wrapped(x, shortcut), shortcut + inner(x))
    assert torch.autograd.gradcheck(IdentityStart(create_attention(block, 4)).double(),
                                    (torch.randn(1, 4, 3, 3, dtype=torch.double, requires_grad=True),))


def test_identity_blocks_script_trace_and_export():
    model = create_model("cbam_resnet20", init="identity").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected)


def test_insertion_points_carry_their_channels_into_attach():
    class Shift(nn.Module):  # declares no channel count
        def forward(self, x):
            return x + 1

    model = nn.Sequential(nn.Conv2d(3, 8, 3), Shift(), nn.Flatten(), nn.LazyLinear(2))
    with pytest.raises(ValueError, match="pass example_input"):
        attach(copy.deepcopy(model), "se", ["1"])
    points = [p for p in plugattn.insertion_points(model, torch.randn(1, 3, 10, 10)) if p.name == "1"]
    attach(model, "se", points, reduction=2, init="identity")  # no second example_input
    assert model[1].attention.block.channels == 8
    with pytest.raises(ValueError, match=r"InsertionPoint\('layer9', kind='after'\), which is not a point"):
        attach(model, "se", plugattn.InsertionPoint("layer9", "after", 8, 2, "Conv2d"))


def test_bad_init_names_the_argument():
    with pytest.raises(ValueError, match=r"init must be one of 'paper', 'identity'; got 'zero'"):
        attach(torchvision.models.resnet18(), "se", init="zero")
    with pytest.raises(ValueError, match=r"init must be one of"):
        create_model("se_resnet20", init="zero")
