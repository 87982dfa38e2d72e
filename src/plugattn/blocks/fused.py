"""Faster formulations of the blocks, used only where they provably give the reference's result.

Two kinds, each behind its own guard (the reference formulation runs everywhere else):

- **Inference fusion** (on by default): when nothing can observe the difference — autograd records
  nothing, and no tracer, scripting, compiler, exporter, ``torch.func`` transform or dispatch mode (a FLOP
  counter, fake tensors) is active — CBAM's channel→spatial arrangement computes the channel-wise mean of
  ``y = x·Mc`` as a batched matrix product that reads ``x`` once, the channel-wise max over channel groups,
  and scales ``y`` in place (adding the shortcut in the same pass).
- **Training fast path** (opt-in, :func:`plugattn.fast`): custom autograd functions that keep only ``x`` and
  the gates for backward and rebuild the rest, and whose backward finds maxima again in the saved input, so
  that they stay right when a residual unit rebuilds that input from its BatchNorm
  (:mod:`plugattn.models.recompute`). A higher-order backward (``create_graph=True``) differentiates the
  reference formulation instead, so double backward is right too. Outside the guards the reference runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

import torch.nn.functional as F

from plugattn.blocks._checks import broadcast_channels, has_global_module_hooks, has_hooks
from plugattn.blocks.pooling import global_pools


# ---------------------------------------------------------------- guards

def transforms_active() -> bool:
    """Whether anything that must see the plain ops is running: tracing (jit, ONNX), ``torch.compile``,
    ``torch.export``, a ``torch.func`` transform or a dispatch mode (FLOP counting, fake tensors)."""
    return (
        torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.onnx.is_in_onnx_export()
        or torch._C._are_functorch_transforms_active()
        or is_in_torch_dispatch_mode()
    )


def records_autograd(module: nn.Module, *tensors: Tensor | None) -> bool:
    """Whether autograd records an op on any of ``tensors`` or ``module``'s parameters here."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors) or any(p.requires_grad for p in module.parameters())


def inference_fusion_applies(module: nn.Module, *tensors: Tensor | None) -> bool:
    """Inference fusion may run: no autograd recording and no transform (see :func:`transforms_active`)."""
    return not records_autograd(module, *tensors) and not transforms_active()


def fast_training_applies(module: nn.Module, *tensors: Tensor | None) -> bool:
    """The opt-in training fast path may run: ``module.fast`` is set, autograd records, no transform is
    active and the tensors live on a device with real storage."""
    return (
        getattr(module, "fast", False) is True
        and records_autograd(module, *tensors)
        and not transforms_active()
        and all(t is None or t.device.type in ("cpu", "cuda") for t in tensors)
    )


# ---------------------------------------------------------------- inference fusion

def channel_max(y: Tensor) -> Tensor:
    """``y.amax(1, keepdim=True)``; large contiguous maps reduce 16 channel groups first (each step then
    reduces over a long contiguous run, the pattern CPU reductions vectorise). Eager use only: the grouping
    depends on the shape."""
    n, c = y.shape[:2]
    if y.is_contiguous() and c >= 256 and c % 16 == 0 and y.numel() >= 2**20:
        return y.view(n, 16, -1).amax(1).view(n, c // 16, -1).amax(1, keepdim=True).view(n, 1, *y.shape[2:])
    return y.amax(1, keepdim=True)


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off where it exists (cpu, cuda); nothing to switch elsewhere."""
    return torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else contextlib.nullcontext()


def _channel_dot(weights: Tensor, x: Tensor) -> Tensor:
    """``sum_c weights[n, c] · x[n, c, *s]`` as (N, 1, *S): a bmm for contiguous NC… maps."""
    n, c = x.shape[:2]
    weights = weights.to(x.dtype)
    if x.is_contiguous():
        return torch.bmm(weights.view(n, 1, c), x.view(n, c, -1)).view(n, 1, *x.shape[2:])
    return (x * weights.view(n, c, *([1] * (x.dim() - 2)))).sum(1, keepdim=True)


def _spatial_dot(x: Tensor, spatial: Tensor) -> Tensor:
    """``sum_s x[n, c, s] · spatial[n, 0, s]`` as (N, C)."""
    n, c = x.shape[:2]
    spatial = spatial.to(x.dtype)
    if x.is_contiguous():
        return torch.bmm(x.view(n, c, -1), spatial.reshape(n, -1, 1)).view(n, c)
    return (x * spatial).flatten(2).sum(2)


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """``sum_s a[n, c, s] · b[n, c, s]`` as (N, C), without a full-size temporary for contiguous maps."""
    n, c = a.shape[:2]
    if a.is_contiguous() and b.is_contiguous():
        return torch.bmm(a.reshape(n * c, 1, -1), b.reshape(n * c, -1, 1).to(a.dtype)).view(n, c)
    return (a * b).flatten(2).sum(2)


def _pools(x: Tensor, channel: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Channel-wise max and mean of ``y = x·Mc`` (N, 1, *S); the mean from ``x`` where a bmm can."""
    if x.is_contiguous():
        with _no_autocast(x.device.type):  # keep the mean as precise as the reference's
            mean = _channel_dot(channel, x) / x.shape[1]
    else:
        mean = y.mean(1, keepdim=True)
    return channel_max(y), mean.to(y.dtype)


SMALL_MAP = 32 * 32
"""Maps with at most this many positions take :func:`cbam_small_map_inference`: there the block's cost is a dozen
dispatches of tiny operations, not passes over memory."""


def hook_free(block: nn.Module) -> bool:
    """Whether no hook can observe ``block`` or anything inside it (nor a global module hook): what a path that
    skips the submodules' ``__call__`` needs."""
    return not has_global_module_hooks() and not any(has_hooks(module) for module in block.modules())


def gate_conv2d(conv: nn.Module, pooled: Tensor) -> Tensor:
    """The spatial gate's 2→1 convolution of a 2-D map, by shape: oneDNN's kernel costs tens of microseconds of
    set-up per call, so small maps at batch 1 go through the im2col + matrix-product kernel (``thnn_conv2d``, the
    same convolution), everything else through ``F.conv2d``. Eager inference only (the caller's guard)."""
    n, _, h, w = pooled.shape
    if n == 1 and h * w <= SMALL_MAP:
        k = conv.kernel_size
        return torch.ops.aten.thnn_conv2d(pooled, conv.weight, list(k), conv.bias, list(conv.stride),
                                          list(conv.padding))
    return conv._conv_forward(pooled, conv.weight, conv.bias)


def cbam_small_map_inference(block: nn.Module, x: Tensor, identity: Tensor | None) -> Tensor:
    """CBAM's channel→spatial result on a small map with the fewest dispatches: the MLP applied once to the sum of
    its hidden activations (``Σ_p W2·h_p + b2 = W2·Σ_p h_p + P·b2``), the submodules' ``forward`` called directly
    (:func:`hook_free` holds), the 2→1 convolution through :func:`gate_conv2d`, the result written in place. Same
    math as the reference, within float rounding."""
    channel_gate, spatial_gate = block.channel_gate, block.spatial_gate
    first, second = channel_gate.mlp[1], channel_gate.mlp[3]
    pools = channel_gate.pool_types
    hidden = F.linear(global_pools(x, pools), first.weight, first.bias).relu_()
    hidden = hidden.view(len(pools), x.shape[0], -1).sum(0) if len(pools) > 1 else hidden
    bias = None if second.bias is None else second.bias * len(pools)
    channel = channel_gate.gate.forward(F.linear(hidden, second.weight, bias))
    y = x * broadcast_channels(channel, x)
    pooled = torch.cat((y.amax(1, keepdim=True), y.mean(1, keepdim=True)), 1)
    conv_bn = spatial_gate.spatial
    logits = conv_bn.bn.forward(gate_conv2d(conv_bn.conv, pooled) if x.dim() == 4 else conv_bn.conv.forward(pooled))
    spatial = spatial_gate.gate.forward(logits)
    return y.mul_(spatial) if identity is None else torch.addcmul(identity, y, spatial, out=y)


def channel_then_spatial_inference(x: Tensor, channel: Tensor, map_from_pools: Callable[[Tensor], Tensor],
                                   identity: Tensor | None = None) -> Tensor:
    """``y = x·Mc``; ``Ms = map_from_pools([max_c y; mean_c y])``; ``y·Ms`` (``+ identity``) written into ``y``.
    Only where :func:`inference_fusion_applies`."""
    y = x * broadcast_channels(channel, x)
    spatial = map_from_pools(torch.cat(_pools(x, channel, y), 1))
    return y.mul_(spatial) if identity is None else torch.addcmul(identity, y, spatial, out=y)


# ---------------------------------------------------------------- training fast path (opt-in)

def _reference_gradients(function: Callable[..., object], inputs: Sequence[Tensor | None], needs: Sequence[bool],
                         grads: Sequence[Tensor]) -> tuple[Tensor | None, ...]:
    """Gradients of ``function(*inputs)`` recorded for another backward: how the fast functions answer a
    higher-order backward (``create_graph=True``) with the reference formulation's derivatives. Each input
    enters through an alias of its own, so a gradient holds only the paths inside ``function`` (an input that
    also depends on another, as CBAM's gates depend on ``x``, is not counted twice), while the aliases keep
    the result connected to the inputs' history."""
    aliases = [t.view_as(t) if t is not None else None for t in inputs]
    wanted = [t for t, need in zip(aliases, needs) if need]
    with torch.enable_grad():
        outputs = function(*aliases)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    found = iter(torch.autograd.grad(outputs, wanted, grads, create_graph=True, allow_unused=True))
    return tuple(next(found) if need else None for need in needs)


def _gradient_at_maxima(x: Tensor, dims: list[int], maxima: Tensor, grad: Tensor) -> Tensor:
    """``grad`` (kept dims) shared equally among the elements of ``x`` equal to ``maxima`` over ``dims``."""
    at_max = torch.eq(x, maxima, out=torch.empty_like(x))  # 0/1 mask, in x's dtype
    return at_max.mul_(grad / at_max.sum(dims, keepdim=True))


class GlobalPools(torch.autograd.Function):
    """``global_pools`` whose backward writes the gradient of all descriptors into
    one buffer and finds the maxima again in the saved input (so a rebuilt input still routes every gradient)."""

    @staticmethod
    def forward(ctx, x: Tensor, pool_types: tuple[str, ...]) -> Tensor:  # type: ignore[override]
        pooled = global_pools(x, list(pool_types))
        ctx.save_for_backward(x, pooled)
        ctx.pool_types = pool_types
        return pooled

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None]:  # type: ignore[override]
        x, pooled = ctx.saved_tensors
        pool_types = ctx.pool_types
        if torch.is_grad_enabled():
            return *_reference_gradients(lambda t: global_pools(t, list(pool_types)), [x], [True], [grad]), None
        spatial = list(range(2, x.dim()))
        tail = [1] * len(spatial)
        grads = dict(zip(pool_types, (g.view(*g.shape, *tail) for g in grad.chunk(len(pool_types)))))
        results = dict(zip(pool_types, (r.view(*r.shape, *tail) for r in pooled.chunk(len(pool_types)))))
        total: Tensor | None = None
        if "max" in grads:
            total = _gradient_at_maxima(x, spatial, x.amax(spatial, keepdim=True), grads["max"])
        if "lp" in grads:
            norm = results["lp"]
            coefficient = torch.where(norm == 0, 0.0, grads["lp"] / norm).to(x.dtype)
            total = x * coefficient if total is None else total.addcmul_(x, coefficient)
        if "lse" in grads:
            softmax = (x - results["lse"]).exp_().mul_(grads["lse"])
            total = softmax if total is None else total.add_(softmax)
        if "avg" in grads:
            mean_grad = (grads["avg"] / x[0, 0].numel()).to(x.dtype)
            total = mean_grad.expand_as(x) if total is None else total.add_(mean_grad)
        return total, None


def _reference_pools_of_scaled(x: Tensor, channel: Tensor) -> tuple[Tensor, Tensor]:
    y = x * broadcast_channels(channel, x)
    return y.amax(1, keepdim=True), y.mean(1, keepdim=True)


class PoolsOfScaled(torch.autograd.Function):
    """``(max_c y, mean_c y)`` with ``y = x·Mc``; keeps ``x`` and ``Mc``, rebuilds ``y`` in backward (ties
    at the maximum share its gradient, as ``amax``'s backward does)."""

    @staticmethod
    def forward(ctx, x: Tensor, channel: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.save_for_backward(x, channel)
        return _pools(x, channel, x * broadcast_channels(channel, x))

    @staticmethod
    def backward(ctx, grad_max: Tensor, grad_mean: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, channel = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _reference_gradients(_reference_pools_of_scaled, [x, channel], ctx.needs_input_grad,
                                        [grad_max, grad_mean])
        weights = broadcast_channels(channel, x)
        at_max = x * weights
        torch.eq(at_max, channel_max(at_max), out=at_max)  # y, then in its place a 0/1 mask of its maxima
        grad_y = torch.addcmul(grad_mean / x.shape[1], at_max, grad_max / at_max.sum(1, keepdim=True), out=at_max)
        grad_channel = _row_dot(grad_y, x).to(channel.dtype) if ctx.needs_input_grad[1] else None
        return grad_y.mul_(weights) if ctx.needs_input_grad[0] else None, grad_channel


def _reference_scale_twice(x: Tensor, channel: Tensor, spatial: Tensor) -> Tensor:
    return x * broadcast_channels(channel, x) * spatial


class ScaleTwice(torch.autograd.Function):
    """``x·Mc·Ms`` (``+ identity``); keeps ``x``, ``Mc`` and ``Ms``, and shares one ``grad·x`` product
    between the gradients of both gates."""

    @staticmethod
    def forward(ctx, x: Tensor, channel: Tensor, spatial: Tensor, identity: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, channel, spatial)
        scaled = x * broadcast_channels(channel, x)
        return scaled.mul_(spatial) if identity is None else torch.addcmul(identity, scaled, spatial, out=scaled)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, channel, spatial = ctx.saved_tensors
        grad_identity = grad if ctx.needs_input_grad[3] else None  # the shortcut enters linearly
        if torch.is_grad_enabled():
            return *_reference_gradients(_reference_scale_twice, [x, channel, spatial], ctx.needs_input_grad[:3],
                                         [grad]), grad_identity
        grad_x = grad_channel = grad_spatial = None
        buffer = None  # one full-size temporary serves both gate gradients and then grad_x
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            buffer = torch.mul(grad, x, out=torch.empty_like(x, memory_format=torch.contiguous_format))
            if ctx.needs_input_grad[1]:
                grad_channel = _spatial_dot(buffer, spatial).to(channel.dtype)
            if ctx.needs_input_grad[2]:
                grad_spatial = _channel_dot(channel, buffer).to(spatial.dtype)
        if ctx.needs_input_grad[0]:
            grad_x = torch.mul(grad, spatial, out=buffer) if buffer is not None else (grad * spatial).to(x.dtype)
            grad_x.mul_(broadcast_channels(channel, x))
        return grad_x, grad_channel, grad_spatial, grad_identity


def channel_then_spatial_training(x: Tensor, channel: Tensor, map_from_pools: Callable[[Tensor], Tensor],
                                  identity: Tensor | None = None) -> Tensor:
    """CBAM's channel→spatial arrangement through :class:`PoolsOfScaled` and :class:`ScaleTwice`: ``y = x·Mc``
    never outlives the forward pass. Only where :func:`fast_training_applies`."""
    maxima, mean = PoolsOfScaled.apply(x, channel)
    spatial = map_from_pools(torch.cat((maxima, mean), 1))
    return ScaleTwice.apply(x, channel, spatial, identity)
