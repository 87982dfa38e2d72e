"""The fused paths equal the reference: inference fusion (on by default, no autograd) against the naive
formulas, and the opt-in training fast path (``plugattn.fast``) against the default path, forward, backward
and double backward; the fast path keeps less for backward."""

import copy
import functools
import itertools

import pytest
import torch

import plugattn
from plugattn import CBAM
from tests.blocks import naive

POOLS = [("avg", "max"), ("avg",), ("max", "lse"), ("avg", "max", "lp", "lse")]


def _close(actual, expected, msg=""):
    """Within 1e-5 of the reference, relative to the tensor's scale (sums over many elements reorder)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=1e-5 * scale, rtol=1e-5, msg=msg or None)


CASES = list(itertools.product(POOLS, [3, 7], [1, 2, 3], [False, True], ["train", "eval"]))


def _pair(pool_types, kernel_size, dims):
    torch.manual_seed(0)
    fast = CBAM(24, 4, pool_types=pool_types, kernel_size=kernel_size, dims=dims, fast=True)
    with torch.no_grad():
        fast.spatial_gate.spatial.bn.weight.uniform_(0.5, 1.5)
        fast.spatial_gate.spatial.bn.running_var.uniform_(0.5, 2)
    reference = plugattn.fast(copy.deepcopy(fast), False)
    assert fast.channel_gate.fast and not reference.fast and not reference.channel_gate.fast
    return fast, reference


def _input(dims, channels_last):
    shape = {1: (3, 24, 17), 2: (3, 24, 9, 11), 3: (3, 24, 4, 5, 6)}[dims]
    x = torch.randn(shape)
    if channels_last and dims == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    elif channels_last:
        x = x.transpose(1, -1).contiguous().transpose(1, -1)  # channels innermost for 1-D/3-D too
    return x


@pytest.mark.parametrize(("pool_types", "kernel_size", "dims", "channels_last", "mode"), CASES,
                         ids=["-".join(map(str, c)).replace("'", "") for c in CASES])
def test_fast_equals_reference_forward_and_backward(pool_types, kernel_size, dims, channels_last, mode):
    fast, reference = _pair(pool_types, kernel_size, dims)
    fast.train(mode == "train")
    reference.train(mode == "train")
    x = _input(dims, channels_last)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_fast, out_ref = fast(x_fast), reference(x_ref)
    _close(out_fast, out_ref)
    grad = torch.randn_like(out_ref)
    out_fast.backward(grad)
    out_ref.backward(grad)
    _close(x_fast.grad, x_ref.grad)
    for (name, p_fast), p_ref in zip(fast.named_parameters(), reference.parameters()):
        _close(p_fast.grad, p_ref.grad, name)
    if mode == "train":
        torch.testing.assert_close(fast.spatial_gate.spatial.bn.running_mean, reference.spatial_gate.spatial.bn.running_mean)


@pytest.mark.parametrize("shape", [(2, 24, 8, 8), (2, 256, 64, 64)])  # the second takes the grouped channel max
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_inference_fusion_equals_the_formulas_and_leaves_the_input_alone(shape, mode):
    torch.manual_seed(0)
    block = CBAM(shape[1], 16).train(mode == "train")
    x = torch.randn(shape)
    kept = x.clone()
    expected = naive.cbam(x, block)  # naive reads the weights; the BN statistics it is given are copies
    with torch.no_grad():
        fused = block(x)
        fused_identity = block(x, kept)
    _close(fused, expected)
    _close(fused_identity, kept + expected)
    assert torch.equal(x, kept)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_fast_equals_reference_under_autocast(dtype):
    fast, reference = _pair(("avg", "max"), 7, 2)
    x = torch.randn(2, 24, 16, 16)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        out_fast, out_ref = fast(x_fast), reference(x_ref)
    assert out_fast.dtype == out_ref.dtype
    torch.testing.assert_close(out_fast.float(), out_ref.float(), atol=2e-2, rtol=2e-2)
    grad = torch.randn(out_ref.shape)
    out_fast.float().backward(grad)
    out_ref.float().backward(grad)
    torch.testing.assert_close(x_fast.grad, x_ref.grad, atol=2e-2, rtol=2e-2)
    for (name, p_fast), p_ref in zip(fast.named_parameters(), reference.parameters()):
        scale = max(1.0, p_ref.grad.abs().max().item())
        torch.testing.assert_close(p_fast.grad, p_ref.grad, atol=2e-2 * scale, rtol=2e-2, msg=name)


@pytest.mark.parametrize("pool_types", POOLS)
def test_fast_path_double_backward_equals_the_reference(pool_types):
    fast, reference = _pair(pool_types, 3, 2)
    x = torch.randn(2, 24, 6, 7, dtype=torch.float64)
    fast.double(), reference.double()
    results = []
    for block in (fast, reference):
        leaf = x.clone().requires_grad_()
        (grad_x,) = torch.autograd.grad(block(leaf).pow(2).sum(), leaf, create_graph=True)
        penalty = grad_x.pow(2).sum()
        penalty.backward()
        results.append([leaf.grad, *(p.grad for p in block.parameters())])
    for got, expected in zip(*results):
        _close(got, expected)


def _saved_bytes(module, x):
    seen = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()  # views of one tensor count once
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(seen.values())


def test_fast_path_keeps_less_for_backward():
    fast, reference = _pair(("avg", "max"), 7, 2)
    x = torch.randn(4, 24, 32, 32, requires_grad=True)
    full = x.numel() * 4
    fast_bytes, reference_bytes = _saved_bytes(fast, x), _saved_bytes(reference, x)
    assert fast_bytes < 1.5 * full < reference_bytes, (fast_bytes / full, reference_bytes / full)


@pytest.mark.parametrize("kind", ["se", "cbam"])
@pytest.mark.parametrize("grad", [True, False])
def test_forward_with_identity_equals_identity_plus_block(kind, grad):
    from plugattn import SqueezeExcite

    torch.manual_seed(0)
    block = SqueezeExcite(24, 4, bias=True, fast=True) if kind == "se" else _pair(("avg", "max"), 7, 2)[0]
    reference = plugattn.fast(copy.deepcopy(block), False)
    x, identity = torch.randn(2, 24, 9, 9), torch.randn(2, 24, 9, 9)
    x1, i1 = x.clone().requires_grad_(grad), identity.clone().requires_grad_(grad)
    x2, i2 = x.clone().requires_grad_(grad), identity.clone().requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        fused, plain = block(x1, i1), i2 + reference(x2)
    _close(fused, plain)
    if grad:
        g = torch.randn_like(plain)
        fused.backward(g)
        plain.backward(g)
        _close(x1.grad, x2.grad)
        _close(i1.grad, i2.grad)
    else:
        assert torch.equal(x1, x) and torch.equal(i1, identity)  # inputs untouched


UNIT_CASES = [("cbam_resnet20", {}), ("se_resnet20", {}), ("cbam_resnet50", {}),
              ("se_resnet20", {"squeeze": "max"}), ("cbam_resnet20", {"pool_types": ("max", "lp", "lse")})]


@pytest.mark.parametrize(("name", "options"), UNIT_CASES, ids=[f"{n}-{o}" for n, o in UNIT_CASES])
def test_zoo_units_with_fused_addition_equal_the_reference_path(name, options):
    """On the fast path, units rebuild the block input from the BatchNorm's input in backward; gradients
    (max pooling's included, whose backward compares values) equal the default path's."""
    from plugattn.models import create_model

    torch.manual_seed(0)
    reference = create_model(name, num_classes=5, **options).train()
    fast = plugattn.fast(copy.deepcopy(reference))
    x = torch.randn(2, 3, 32, 32) if "20" in name else torch.randn(2, 3, 64, 64)
    out_fast, out_ref = fast(x), reference(x)
    _close(out_fast, out_ref)
    out_fast.sum().backward()
    out_ref.sum().backward()
    for (name_, p_fast), p_ref in zip(fast.named_parameters(), reference.parameters()):
        _close(p_fast.grad, p_ref.grad, name_)


def test_fused_units_still_call_their_blocks_so_hooks_fire():
    from plugattn.models import ResidualUnit, create_model

    model = create_model("cbam_resnet20", num_classes=3)
    units = [unit for unit in model.modules() if isinstance(unit, ResidualUnit)]
    calls = []
    for unit in units:
        assert unit.gated_add
        unit.attention.register_forward_pre_hook(lambda module, args: calls.append(len(args)))
    model(torch.randn(1, 3, 32, 32))
    assert calls == [2] * len(units)  # (branch, shortcut) reached every block through __call__


@pytest.mark.parametrize("shape", [(2, 256, 64, 64), (1, 512, 48, 48), (3, 24, 9, 11)])
def test_grouped_channel_max_equals_amax(shape):
    from plugattn.blocks.fused import channel_max

    x = torch.randn(shape)
    assert torch.equal(channel_max(x), x.amax(1, keepdim=True))
    assert torch.equal(channel_max(x.contiguous(memory_format=torch.channels_last)), x.amax(1, keepdim=True))


def _step_peak(model, x):
    """The peak memory of a training step of ``model`` on ``x`` (the least of two, after a warm-up step)."""
    from plugattn.profiling import peak_memory

    def step():
        model(x).sum().backward()
        model.zero_grad(set_to_none=True)

    if peak_memory(lambda: None) is None:
        pytest.skip("peak_memory needs glibc's mallinfo2")
    step()
    return min(peak_memory(step) for _ in range(2))


def test_fast_training_units_keep_no_full_size_copy_for_the_attention():
    from plugattn.models import create_model

    x = torch.randn(32, 3, 32, 32)
    step_peak = functools.partial(_step_peak, x=x)
    torch.manual_seed(0)
    plain = step_peak(create_model("resnet20").train())
    for name in ("se_resnet20", "cbam_resnet20"):
        model = create_model(name, reduction=4).train()
        assert step_peak(model) > 1.12 * plain, name  # the default path keeps the block's input: one more map per unit
        plugattn.fast(model)
        assert step_peak(model) < 1.08 * plain, name  # only (N, C) weights and (N, 1, H, W) maps are added


SMALL_CASES = list(itertools.product([("avg", "max"), ("avg", "max", "lp", "lse")], ["paper", "zero-sigmoid"],
                                     [(1, 24, 8, 8), (3, 24, 9, 11), (1, 24, 32, 32), (2, 24, 17), (1, 24, 4, 5, 6)]))


@pytest.mark.parametrize(("pool_types", "init", "shape"), SMALL_CASES, ids=[f"{'+'.join(p)}-{i}-{'x'.join(map(str, s))}"
                                                                             for p, i, s in SMALL_CASES])
def test_small_maps_take_the_fewest_dispatches_and_equal_the_reference(pool_types, init, shape):
    """On maps of at most 32×32 positions, inference takes cbam_small_map_inference (the MLP applied once, the
    submodules' forward called directly, the 2→1 convolution through thnn at batch 1), which equals the reference
    formulation — with every pool type, the zero starts' 2σ gates, 1-D/2-D/3-D maps, and in training mode (running
    statistics updated once, as the reference updates them)."""
    from plugattn.blocks import with_init
    from plugattn.blocks.fused import hook_free

    torch.manual_seed(0)
    dims = len(shape) - 2
    block = with_init(CBAM(24, 4, pool_types=pool_types, dims=dims), init)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.uniform_(-0.5, 0.5)
        block.spatial_gate.spatial.bn.running_var.uniform_(0.5, 2)
    reference = copy.deepcopy(block)
    assert hook_free(block)
    x, identity = torch.randn(shape), torch.randn(shape)
    for mode in ("eval", "train"):
        block.train(mode == "train"), reference.train(mode == "train")
        with torch.no_grad():
            _close(block(x, identity), identity + reference._reference(x))
            _close(block(x), reference._reference(x))
        for key, value in block.state_dict().items():
            torch.testing.assert_close(value, reference.state_dict()[key], msg=key)


def test_a_hook_inside_a_block_keeps_the_path_that_calls_every_submodule():
    from plugattn.blocks.fused import hook_free

    block = CBAM(16, 4).eval()
    seen = []
    block.spatial_gate.gate.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    assert not hook_free(block)
    with torch.no_grad():
        block(torch.randn(1, 16, 8, 8))
    assert seen == [torch.Size([1, 1, 8, 8])]
    with plugattn.capture(plugattn.create_model("cbam_resnet20").eval()) as captured:
        pass
    assert captured.names


@pytest.mark.parametrize("name", ["cbam_resnet20", "se_resnet20", "coord_resnet20", "simam_resnet20"])
def test_checkpointed_attention_equals_the_reference(name):
    """The memory path by non-reentrant activation checkpointing of the final BatchNorm and the attention (the
    family's blocks; SE and CBAM with method="checkpoint"): outputs, gradients and
    second derivatives equal in float64 (the shortcut is added outside the region, where the reference fuses it
    into one addcmul: the last bit may differ), every running statistic (the unit's norm and the attention's own
    BatchNorms) updated once per step."""
    def same(a, b):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)

    torch.manual_seed(0)
    reference = plugattn.create_model(name, reduction=4).train().double()
    model = plugattn.fast(copy.deepcopy(reference), method="checkpoint" if name.startswith(("se_", "cbam_")) else "auto")
    assert all(unit.fast for unit in model.modules() if isinstance(unit, plugattn.models.ResidualUnit))
    x = torch.randn(3, 3, 32, 32, dtype=torch.double, requires_grad=True)
    for step in range(2):
        outputs = [net(x) for net in (model, reference)]
        grads = [torch.autograd.grad(out.square().sum(), [x, *net.parameters()], create_graph=True)
                 for out, net in zip(outputs, (model, reference))]
        same(outputs[0], outputs[1])
        for ours, theirs in zip(*grads):
            same(ours, theirs)
        second = [torch.autograd.grad(g[0].square().sum(), x)[0] for g in grads]
        same(*second)
    for key, value in model.state_dict().items():
        same(value, reference.state_dict()[key])


def test_checkpointed_attention_keeps_about_what_the_plain_network_keeps():
    x = torch.randn(32, 3, 32, 32)
    step_peak = functools.partial(_step_peak, x=x)
    torch.manual_seed(0)
    plain = step_peak(plugattn.create_model("resnet20").train())
    model = plugattn.fast(plugattn.create_model("cbam_resnet20", reduction=4).train(), method="checkpoint")
    assert step_peak(model) < 1.05 * plain
    with pytest.raises(ValueError, match="method must be one of .*'auto', 'checkpoint'.*got 'magic'"):
        plugattn.fast(model, method="magic")
    family = plugattn.fast(plugattn.create_model("coord_resnet20").train())  # checkpointing: no hand-written path
    assert step_peak(family) < 1.05 * step_peak(plugattn.create_model("resnet20").train()) + 0.02 * plain
    seen = []
    model.layer1[0].attention.register_forward_hook(lambda *args: seen.append(1))
    model(x).sum().backward()
    assert seen == [1]  # a hooked block is not run twice: that unit runs the reference
