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


@pytest.mark.parametrize("init", ["identity", "identity-boost"])
@pytest.mark.parametrize("block", ["se", "cbam", "gc"])
def test_every_attention_parameter_learns_within_a_few_steps(block, init):
    """GC is the identity as built (its last convolution starts at zero): its blend starts at α = 1, since at α = 0
    neither α nor the block would ever receive a gradient."""
    torch.manual_seed(0)
    options = {} if block == "gc" else {"reduction": 4}
    model = attach(_trained_like(torchvision.models.resnet18(num_classes=4)).train(), block, init=init, **options)
    starts = {float(start.blend()) for _, start in plugattn.attached_blocks(model)}
    assert starts == ({1.0} if block == "gc" else {0.0})
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
    with pytest.raises(ValueError, match=r"init must be one of 'paper', 'identity', 'identity-boost', 'zero-sigmoid', "
                                         r"'zero-tanh'; got 'zero'"):
        attach(torchvision.models.resnet18(), "se", init="zero")
    with pytest.raises(ValueError, match=r"init must be one of"):
        create_model("se_resnet20", init="zero")


FAMILY = ["se", "channel", "spatial", "cbam", "eca", "coord", "triplet", "gc", "scse", "bam", "simam"]
ZERO_STARTS = {"zero-sigmoid": lambda z: 2 * torch.sigmoid(z), "zero-tanh": lambda z: 1 + torch.tanh(z)}
ZERO_REFUSED = {"bam", "simam"}


def _starts(block):
    return ["identity", "identity-boost"] + ([] if block in ZERO_REFUSED else list(ZERO_STARTS))


@pytest.mark.parametrize("block", FAMILY)
def test_every_start_of_every_block_is_the_exact_identity_in_a_trained_network(block):
    model = _trained_like(torchvision.models.resnet18(num_classes=10))
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        before = model(x)
        for init in _starts(block):
            inserted = attach(copy.deepcopy(model), block, ["layer1.0", "layer2.1.conv1", "layer3"], init=init).eval()
            torch.testing.assert_close(inserted(x), before, atol=1e-6, rtol=0, msg=f"{block}, init={init}")
    feature = torch.randn(2, 32, 7, 5)
    for init in set(_starts(block)) & set(ZERO_STARTS):
        alone = plugattn.blocks.with_init(create_attention(block, 32), init).train()
        assert torch.equal(alone(feature), feature), init  # bit for bit: every gate is exactly 1


@pytest.mark.parametrize("init", list(ZERO_STARTS))
def test_zero_start_gates_are_worth_one_at_zero_and_follow_their_formula(init):
    torch.manual_seed(0)
    block = plugattn.blocks.with_init(create_attention("se", 16, reduction=4), init)
    assert all(p.abs().sum() == 0 for p in block.fc[2].parameters())
    with torch.no_grad():
        for parameter in block.fc[2].parameters():
            parameter.normal_()
    x = torch.randn(3, 16, 5, 4)
    logits = block.fc[2](torch.relu(block.fc[0](x.mean((2, 3)))))  # naive SE, written out here
    torch.testing.assert_close(block(x), x * ZERO_STARTS[init](logits)[:, :, None, None])
    assert block.fc[3].function == {"zero-sigmoid": "2sigmoid", "zero-tanh": "1+tanh"}[init]


@pytest.mark.parametrize("init", list(ZERO_STARTS))
@pytest.mark.parametrize("block", ["cbam", "coord", "triplet", "eca", "scse", "gc"])
def test_zero_start_blocks_learn_from_the_first_step_and_pass_gradcheck(block, init):
    torch.manual_seed(0)
    options = {"fusion": ("add", "mul"), "ratio": 0.25} if block == "gc" else {}
    if "reduction" in plugattn.attention_options(block):
        options["reduction"] = 4  # a hidden layer wide enough that ReLU leaves some unit alive
    module = plugattn.blocks.with_init(create_attention(block, 16, **options), init).double().train()
    zeroed = [p for layer in module.gate_logit_layers() for p in layer.parameters()]
    x = torch.randn(2, 16, 5, 4, dtype=torch.double)
    (module(x) * torch.randn_like(x)).sum().backward()
    assert zeroed and all(p.grad is not None and p.grad.abs().sum() > 0 for p in zeroed)
    with torch.no_grad():
        for parameter in zeroed:
            parameter.normal_(0, 0.5)
    small = torch.randn(1, 16, 4, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(module.eval(), (small,))
    assert torch.autograd.gradgradcheck(module, (small,))


def test_identity_boost_moves_alpha_a_hundred_times_further_under_sgd():
    torch.manual_seed(0)
    inner = create_attention("se", 16, reduction=4)
    x = torch.randn(4, 16, 6, 6)
    target = torch.randn(4, 16, 6, 6)
    moved = {}
    for name, gain in (("identity", 1.0), ("boost", 10.0)):
        block = IdentityStart(copy.deepcopy(inner), gain=gain)
        optimizer = torch.optim.SGD([block.alpha], lr=0.01)
        nn.functional.mse_loss(block(x), target).backward()
        optimizer.step()
        moved[name] = block.blend().item()
    assert moved["identity"] != 0
    assert moved["boost"] == pytest.approx(100 * moved["identity"], rel=1e-5)
    assert isinstance(plugattn.blocks.with_init(create_attention("se", 16), "identity-boost"), IdentityStart)


def test_zero_starts_refuse_blocks_they_cannot_start_and_name_the_way_out():
    for block in ZERO_REFUSED:
        with pytest.raises(ValueError, match=r"cannot start from zeroed gate logits.*init='identity'"):
            create_model("resnet20", attention=block, init="zero-sigmoid")
    with pytest.raises(ValueError, match=r"cannot start from zeroed gate logits"):
        attach(torchvision.models.resnet18(), "scse", combine="add", init="zero-tanh")
    with pytest.raises(ValueError, match=r"replaces sigmoid gates.*\['tanh'\]"):
        attach(torchvision.models.resnet18(), "se", gate="tanh", init="zero-sigmoid")
    with pytest.raises(ValueError, match=r"gain must be a number > 0, got 0"):
        IdentityStart(nn.Identity(), gain=0)


@pytest.mark.parametrize("init", ["identity-boost", *(pytest.param(init, marks=pytest.mark.slow)
                                                     for init in ("zero-sigmoid", "zero-tanh"))])
def test_new_starts_script_trace_export_and_onnx(init, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    model = trained_like(create_model("cbam_resnet20", init=init)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".attention." in name:
                parameter.normal_(0, 0.3)  # gates away from their start
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        close = dict(atol=1e-4, rtol=1e-4)  # gates up to 2 in nine units amplify float rounding
        torch.testing.assert_close(torch.jit.script(model)(x), expected, **close)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected, **close)
        torch.testing.assert_close(torch.export.export(model, (x,)).module()(x), expected, **close)
    path = tmp_path / "model.onnx"
    plugattn.export.export_onnx(model, path, (3, 32, 32))
    session = onnxruntime.InferenceSession(str(path))
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    torch.testing.assert_close(torch.from_numpy(out), expected, atol=1e-4, rtol=1e-4)
