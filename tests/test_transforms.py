"""The PyTorch contract: every standard transform works on plugattn blocks, zoo models and attached
torchvision models, and agrees with the eager reference (≤ 1e-5 fp32 unless the transform changes precision).

Subjects: blocks (SE, CBAM in its three arrangements), a zoo model (CBAM-ResNet-20 / SE-ResNet-20) and a
torchvision ResNet-18 with CBAM attached by hooks. Transforms: autograd to the second order, torch.func
(grad, vmap, jacrev) over functional_call, jit.trace, jit.script, torch.export with a dynamic batch, ONNX
(dynamo and legacy) checked in ONNX Runtime at the models' natural size, torch.compile (train and eval),
bf16/fp16 autocast, channels-last, forward hooks. Gradients under hooks and BatchNorm subclasses are checked
against finite differences in float64, on the default path and with the opt-in fast path switched on.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.func import functional_call, grad, jacrev, vmap

import plugattn
from plugattn import CBAM, SqueezeExcite, attach, create_model
from tests.conftest import trained_like

FAMILY_OPTIONS = {"bam": dict(reduction=4), "gc": dict(ratio=1 / 4, fusion=("add", "mul")), "scse": {}, "eca": {},
                  "coord": {}, "simam": {}, "triplet": {}}
BLOCK_MAKERS = {
    "se": lambda: SqueezeExcite(16, 4, bias=True),
    "cbam": lambda: CBAM(16, 4),
    "cbam-spatial-channel": lambda: CBAM(16, 4, order="spatial-channel"),
    "cbam-parallel": lambda: CBAM(16, 4, order="parallel", pool_types=("avg", "max", "lp", "lse")),
    **{name: (lambda name=name: plugattn.create_attention(name, 16, **FAMILY_OPTIONS[name])) for name in FAMILY_OPTIONS},
}
REPRESENTATIVES = ("se", "cbam", "coord", "gc")
"""The blocks whose whole matrix ``make test`` runs: SE, CBAM and two of the family (BatchNorm, permutes and
h-swish; softmax pooling, ``bmm`` and LayerNorm); the others' are marked slow (``make test-all``)."""
BLOCKS = [name if name in REPRESENTATIVES else pytest.param(name, marks=pytest.mark.slow) for name in BLOCK_MAKERS]


def _block(name: str, train: bool = True) -> nn.Module:
    torch.manual_seed(0)
    block = BLOCK_MAKERS[name]()
    with torch.no_grad():  # zero starts (CBAM's spatial BatchNorm, GC's last convolutions) would hide a branch
        for key, tensor in block.state_dict().items():
            if key.endswith(("spatial.bn.weight", "_conv.3.weight", "_conv.3.bias")):
                tensor.uniform_(0.5, 1.5)
    return block.train(train)


def _zoo(name: str = "cbam_resnet20", train: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return trained_like(create_model(name, reduction=4, num_classes=5)).train(train)


def _attached(train: bool = False) -> nn.Module:
    torch.manual_seed(0)
    model = attach(torchvision.models.resnet18(num_classes=5), "cbam", reduction=8)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
    return model.train(train)


SUBJECTS = {
    "block-cbam": (lambda train=False: _block("cbam", train), (3, 16, 10, 12)),
    "block-se": (lambda train=False: _block("se", train), (3, 16, 10, 12)),
    "block-coord": (lambda train=False: _block("coord", train), (3, 16, 10, 12)),
    "block-gc": (lambda train=False: _block("gc", train), (3, 16, 10, 12)),
    "zoo-cbam_resnet20": (lambda train=False: _zoo("cbam_resnet20", train), (3, 3, 32, 32)),
    "zoo-se_resnet20": (lambda train=False: _zoo("se_resnet20", train), (3, 3, 32, 32)),
    "attached-resnet18": (_attached, (2, 3, 64, 64)),
}


def _close(actual, expected, tolerance=1e-5):
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=tolerance * scale, rtol=tolerance)


def _train_step_agrees(compiled, model, reference, x):
    """One training forward and backward of ``compiled`` (wrapping ``model``) against the eager ``reference``."""
    out, expected = compiled(x), reference(x)
    _close(out, expected, 1e-4)
    out.square().sum().backward()
    expected.square().sum().backward()
    _gradients_close(model, reference)


def _gradients_close(model, reference, tolerance=1e-3):
    """Every parameter's gradient, at the scale of all of them: some are 0 in exact arithmetic (GC's mask bias:
    softmax ignores a shift), and what rounding leaves there depends on the thread count."""
    scale = max(q.grad.abs().max().item() for q in reference.parameters())
    for (key, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=tolerance * scale, rtol=tolerance, msg=lambda m: f"{key}: {m}")


def _input(shape, seed=1):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- autograd, double backward included


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_blocks_gradients_and_second_derivatives_match_finite_differences(name, train):
    block = _block(name, train).double()
    x = _input((2, 16, 4, 5)).double().requires_grad_()
    identity = _input((2, 16, 4, 5), seed=2).double().requires_grad_()
    assert torch.autograd.gradcheck(block, (x,))
    assert torch.autograd.gradgradcheck(block, (x,))
    if getattr(block, "fuses_addition", False):
        assert torch.autograd.gradgradcheck(lambda a, b: block(a, b), (x, identity))


@pytest.mark.parametrize("name", ["zoo-cbam_resnet20", "attached-resnet18"])
def test_models_second_derivatives_match_finite_differences(name):
    build, _ = SUBJECTS[name]
    model = build(True).double()
    x = _input((2, 3, 16, 16)).double().requires_grad_()
    assert torch.autograd.gradgradcheck(model, (x,), fast_mode=True)


def test_gradient_penalty_runs_through_zoo_and_attached_models():
    for build in (lambda: _zoo(train=True), lambda: _attached(True)):
        model = build()
        x = _input((2, 3, 32, 32)).requires_grad_()
        (grad_x,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x, create_graph=True)
        grad_x.pow(2).sum().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------- torch.func


@pytest.mark.parametrize("name", SUBJECTS)
def test_torch_func_grad_and_vmap_agree_with_autograd(name):
    build, shape = SUBJECTS[name]
    model = build(False)
    x = _input(shape)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(parameters, inputs):
        return functional_call(model, parameters, (inputs,)).square().mean()

    grads = grad(loss)(params, x)
    model.zero_grad()
    loss(dict(model.named_parameters()), x).backward()
    for key, value in model.named_parameters():
        _close(grads[key], value.grad)
    per_sample = vmap(lambda sample: functional_call(model, params, (sample[None],))[0])(x)
    with torch.no_grad():
        _close(per_sample, model(x))


@pytest.mark.parametrize("name", BLOCKS)
def test_jacrev_of_blocks_equals_autograd_jacobian(name):
    block = _block(name, False)
    x = _input((1, 16, 3, 4))
    jacobian = jacrev(block)(x)
    expected = torch.autograd.functional.jacobian(block, x)
    _close(jacobian, expected)


# ---------------------------------------------------------------- tracing, scripting, export


@pytest.mark.parametrize("name", SUBJECTS)
def test_jit_trace_without_no_grad_agrees(name):
    build, shape = SUBJECTS[name]
    model = build(False)
    x = _input(shape)
    traced = torch.jit.trace(model, x)  # grad enabled: the trace must pass its own sanity check
    other = _input(shape, seed=5)
    _close(traced(other), model(other))


@pytest.mark.parametrize("name", [*BLOCKS, "zoo-cbam_resnet20", "zoo-se_resnet20"])
def test_jit_script_agrees(name):
    model = _block(name, False) if name in BLOCK_MAKERS else SUBJECTS[name][0](False)
    shape = (3, 16, 10, 12) if name in BLOCK_MAKERS else (3, 3, 32, 32)
    scripted = torch.jit.script(model)
    x = _input(shape)
    _close(scripted(x), model(x))


def test_jit_script_of_attached_models_names_trace_and_export():
    with pytest.raises(RuntimeError, match=r"layer1\.0.*torch\.jit\.trace.*torch\.export"):
        torch.jit.script(_attached())


@pytest.mark.parametrize("name", SUBJECTS)
def test_torch_export_with_dynamic_batch_agrees(name):
    build, shape = SUBJECTS[name]
    model = build(False)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (_input(shape),), dynamic_shapes=({0: batch},))
    for size in (1, 5):
        x = _input((size, *shape[1:]), seed=size)
        with torch.no_grad():
            _close(program.module()(x), model(x))


@pytest.mark.parametrize(("name", "dynamo"), [("cbam_resnet50", True), pytest.param("se_resnet50", True, marks=pytest.mark.slow),
                                              ("cbam_resnet20", False),
                                              ("attached-resnet18", True), ("attached-resnet18", False)])
def test_onnx_export_at_the_natural_size_runs_in_onnx_runtime(name, dynamo, tmp_path):
    from plugattn.export import export_onnx

    if name == "attached-resnet18":
        model, shape = _attached(), (3, 224, 224)
    else:
        torch.manual_seed(0)
        model, shape = create_model(name), plugattn.models.model_entry(name).input_size
    report = export_onnx(model, tmp_path / f"{name}.onnx", shape, verify_batches=(1, 3), dynamo=dynamo)
    assert max(report.max_abs_difference.values()) < 1e-4, report.max_abs_difference


@pytest.mark.parametrize("name", BLOCK_MAKERS)
def test_every_block_exports_to_onnx_and_runs_in_onnx_runtime(name, tmp_path):
    from plugattn.export import export_onnx

    report = export_onnx(_block(name, False), tmp_path / f"{name}.onnx", (16, 10, 12), verify_batches=(1, 3),
                         dynamo=False)
    assert max(report.max_abs_difference.values()) < 1e-5, report.max_abs_difference


# ---------------------------------------------------------------- compile, precision, layout


@pytest.mark.parametrize("name", ["block-cbam", "block-coord", "block-gc", "zoo-cbam_resnet20",
                                  pytest.param("attached-resnet18", marks=pytest.mark.slow)])  # regional covers it
def test_torch_compile_train_and_eval_agree(name):
    build, shape = SUBJECTS[name]
    model = build(True)
    reference = copy.deepcopy(model)
    compiled = torch.compile(model)
    x = _input(shape)
    _train_step_agrees(compiled, model, reference, x)
    model.eval(), reference.eval()
    with torch.no_grad():
        _close(compiled(x), reference(x), 1e-4)


@pytest.mark.parametrize(("name", "units", "backend"), [
    ("zoo-cbam_resnet20", False, "inductor"),
    ("attached-resnet18", False, "aot_eager"),  # the graphs captured through attach's hooks, AOT autograd's split
    pytest.param("zoo-cbam_resnet20", True, "inductor", marks=pytest.mark.slow),
    pytest.param("attached-resnet18", False, "inductor", marks=pytest.mark.slow),
])
def test_regional_compile_train_and_eval_agree(name, units, backend):
    """plugattn.compile: the attention blocks (or their units) compiled in place, the rest eager; outputs,
    gradients and BatchNorm running statistics as the eager reference's, in training and evaluation."""
    build, shape = SUBJECTS[name]
    model = build(True)
    reference = copy.deepcopy(model)
    compiled = plugattn.compile(model, "regional", units=units, backend=backend)
    assert compiled is model and model.state_dict().keys() == reference.state_dict().keys()
    x = _input(shape)
    _train_step_agrees(compiled, model, reference, x)
    for (key, tensor), other in zip(model.state_dict().items(), reference.state_dict().values()):
        if "running" in key:
            _close(tensor, other, 1e-5)
    model.eval(), reference.eval()
    with torch.no_grad():
        _close(compiled(x[:1]), reference(x[:1]), 1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["block-cbam", "block-coord", "block-gc", "zoo-cbam_resnet20", "attached-resnet18"])
def test_autocast_agrees_with_float32(name, dtype):
    build, shape = SUBJECTS[name]
    model = build(True)
    x = _input(shape)
    with torch.autocast("cpu", dtype=dtype):
        out = model(x)
    reference = copy.deepcopy(model)(x)
    torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.1)
    weight = next(model.parameters())
    (out.float().square().mean()).backward()
    assert torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["block-cbam", "block-coord", "block-gc", "zoo-cbam_resnet20", "attached-resnet18"])
def test_channels_last_agrees_with_contiguous(name):
    build, shape = SUBJECTS[name]
    model = build(True)
    reference = copy.deepcopy(model)
    x = _input(shape)
    out = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    expected = reference(x)
    _close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    _gradients_close(model, reference, 1e-4)


# ---------------------------------------------------------------- hooks and BatchNorm subclasses


def test_observing_hooks_on_every_module_change_nothing():
    model = _zoo(train=True)
    reference = copy.deepcopy(model)
    calls = []
    for module in model.modules():
        module.register_forward_hook(lambda m, a, o: calls.append(type(m).__name__))
    x = _input((3, 3, 32, 32))
    out, expected = model(x), reference(x)
    _close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        _close(p.grad, q.grad)
    assert calls.count("CBAM") == 9 and calls.count("GateActivation") == 18


class LocalHalfBatchNorm(nn.BatchNorm2d):
    """A BatchNorm subclass whose statistics are not the batch's (as SyncBatchNorm's are global): it
    normalises with the statistics of the first half of the batch."""

    def forward(self, x):
        half = x[: max(1, x.shape[0] // 2)]
        var, mean = torch.var_mean(half, dim=(0, 2, 3), correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def _swap_final_norms(model: nn.Module, cls: type[nn.BatchNorm2d]) -> nn.Module:
    for unit in model.modules():
        if isinstance(unit, plugattn.models.ResidualUnit):
            old = getattr(unit, unit.final_norm)
            new = cls(old.num_features).double()
            new.load_state_dict(old.state_dict())
            setattr(unit, unit.final_norm, new)
    return model


def _double_scale_output(module, args, output):
    return output * 2


GRADIENT_CASES = {
    "plain": lambda m: m,
    "observing-hook-on-final-bn": lambda m: (m.layer2[0].bn2.register_forward_hook(lambda *a: None), m)[1],
    "modifying-hook-on-final-bn": lambda m: (m.layer3[1].bn2.register_forward_hook(_double_scale_output), m)[1],
    "attach-at-a-unit-bn": lambda m: attach(m, "se", ["layer3.0.bn2", "layer1.1.bn2"], reduction=4),
    "bn-subclass": lambda m: _swap_final_norms(m, LocalHalfBatchNorm),
    "sync-batchnorm": lambda m: nn.SyncBatchNorm.convert_sync_batchnorm(m),
}


@pytest.mark.parametrize("fast", [None, "auto", "checkpoint"], ids=["default", "fast", "checkpoint"])
@pytest.mark.parametrize("case", GRADIENT_CASES)
@pytest.mark.parametrize("name", ["cbam_resnet20", "se_resnet20"])
def test_gradients_match_finite_differences_under_hooks_and_norm_subclasses(name, case, fast):
    """Float64 finite differences against autograd, for the input and for a final BatchNorm's and an attention
    block's parameters; both opt-in memory paths (the hand-written one and activation checkpointing) must be right
    or fall back wherever their guards fail."""
    model = GRADIENT_CASES[case](_zoo(name, train=True).double())
    if fast is not None:
        plugattn.fast(model, method=fast)
    x = _input((2, 3, 8, 8)).double().requires_grad_()
    names = ["layer3.1.bn2.weight", "layer2.0.attention.fc.0.weight" if name.startswith("se")
             else "layer2.0.attention.channel_gate.mlp.1.weight"]
    base = dict(model.named_parameters())
    tensors = [base[key].detach().clone().requires_grad_() for key in names]

    def function(inputs, *weights):
        return functional_call(model, dict(zip(names, weights)), (inputs,), strict=False)

    assert torch.autograd.gradcheck(function, (x, *tensors), fast_mode=True, atol=1e-6)


def test_fast_path_engages_only_where_its_guards_hold():
    """The BatchNorm-output rebuild saves the block input as a recipe: fewer saved bytes with exact BatchNorms
    and no hooks; as many as the default path with a hook on the norm or a BatchNorm subclass."""
    def saved_bytes(model):
        seen = {}

        def pack(tensor):
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(_input((4, 3, 32, 32)))
        return sum(seen.values())

    default = saved_bytes(_zoo("se_resnet20", train=True))
    assert saved_bytes(plugattn.fast(_zoo("se_resnet20", train=True))) < 0.9 * default
    hooked = plugattn.fast(_zoo("se_resnet20", train=True))
    for unit in hooked.modules():
        if isinstance(unit, plugattn.models.ResidualUnit):
            unit.bn2.register_forward_hook(lambda *a: None)
    assert saved_bytes(hooked) == pytest.approx(default, rel=0.01)
    subclass = plugattn.fast(nn.SyncBatchNorm.convert_sync_batchnorm(_zoo("se_resnet20", train=True)))
    assert saved_bytes(subclass) == pytest.approx(default, rel=0.01)
