"""Global pooling of every channel over all spatial positions, for any rank ≥ 3 (1-D, 2-D, 3-D maps),
and the maxima that the attention gates take: fast forward, and a backward that finds the maxima again
in the tensor it saved, so that it stays right when that tensor is rebuilt rather than kept."""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor

POOL_TYPES = ("avg", "max", "lp", "lse")
"""avg: mean; max: maximum; lp: power-2 pooling as ``F.lp_pool2d(x, 2, (H, W))`` computes it, the square root
of the *sum* of squares; lse: log-sum-exp, computed stably (max-shifted)."""


def channel_max(y: Tensor) -> Tensor:
    """``y.amax(1, keepdim=True)`` for (N, C, *S) maps; in eager mode large contiguous maps reduce 16 channel
    groups first (each step then reduces over a long contiguous run, the pattern CPU reductions vectorise;
    ``torch.compile`` generates a better kernel for the plain reduction)."""
    n, c = y.shape[:2]
    if y.is_contiguous() and c >= 256 and c % 16 == 0 and y.numel() >= 2**20 and not torch.compiler.is_compiling():
        return y.view(n, 16, -1).amax(1).view(n, c // 16, -1).amax(1, keepdim=True).view(n, 1, *y.shape[2:])
    return y.amax(1, keepdim=True)


def _amax(x: Tensor, dims: List[int]) -> Tensor:
    """``x.amax(dims, keepdim=True)``, through :func:`channel_max` for the channel axis."""
    return channel_max(x) if dims == [1] else x.amax(dims, keepdim=True)


def _gradient_at_maxima(x: Tensor, dims: List[int], grad: Tensor) -> Tensor:
    """``grad`` (kept dims) shared equally among the maxima of ``x`` over ``dims``, found again in ``x``."""
    at_max = torch.eq(x, _amax(x, dims), out=torch.empty_like(x))  # 0/1 mask, in x's dtype
    return at_max.mul_(grad / at_max.sum(dims, keepdim=True))


class _MaxFoundAgain(torch.autograd.Function):
    """``amax`` (dims kept) whose backward locates the maxima in the saved input instead of comparing it with
    the saved output: exact ties share the gradient as ``amax``'s do, and an input that was rebuilt (see
    :mod:`plugattn.models.recompute`) with last-bit differences still routes every gradient somewhere."""

    @staticmethod
    def forward(ctx, x: Tensor, dims: List[int]) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.dims = dims
        return _amax(x, dims)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return _gradient_at_maxima(x, ctx.dims, grad), None


def _records(x: Tensor) -> bool:
    """Whether autograd records an op on ``x`` here, outside ``torch.compile`` (which traces the plain ops and
    fuses them itself)."""
    return torch.is_grad_enabled() and x.requires_grad and not torch.compiler.is_compiling()


@torch.jit.unused
def _maximum_eager(x: Tensor, dims: List[int]) -> Tensor:
    if _records(x):
        return _MaxFoundAgain.apply(x, dims)
    return _amax(x, dims)


def maximum(x: Tensor, dims: List[int]) -> Tensor:
    """``x.amax(dims, keepdim=True)``: grouped over channels where faster, and through :class:`_MaxFoundAgain`
    when autograd records it."""
    if torch.jit.is_scripting():
        return x.amax(dims, True)
    return _maximum_eager(x, dims)


def _pool(x: Tensor, pool_type: str) -> Tensor:
    spatial = list(range(2, x.dim()))
    if pool_type == "avg":
        return x.mean(spatial)
    if pool_type == "max":
        return x.amax(spatial)
    if pool_type == "lp":
        return torch.linalg.vector_norm(x, 2.0, spatial)
    if pool_type == "lse":
        return torch.logsumexp(x.flatten(2), 2)
    raise ValueError(f"pool_type must be one of 'avg', 'max', 'lp', 'lse'; got '{pool_type}'")


class _GlobalPools(torch.autograd.Function):
    """Every pooled descriptor of ``x`` stacked (P·N, C), with a backward that writes the gradient of all of
    them into one buffer (``avg`` alone needs none: its gradient is a broadcast view) and finds the maxima
    again in the saved input, as :class:`_MaxFoundAgain` does."""

    @staticmethod
    def forward(ctx, x: Tensor, pool_types: tuple[str, ...]) -> Tensor:  # type: ignore[override]
        pooled = torch.cat([_pool(x, pool_type) for pool_type in pool_types], 0)
        ctx.save_for_backward(x, pooled)
        ctx.pool_types = pool_types
        return pooled

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        x, pooled = ctx.saved_tensors
        spatial = list(range(2, x.dim()))
        tail = [1] * len(spatial)
        grads = dict(zip(ctx.pool_types, (g.view(*g.shape, *tail) for g in grad.chunk(len(ctx.pool_types)))))
        results = dict(zip(ctx.pool_types, (r.view(*r.shape, *tail) for r in pooled.chunk(len(ctx.pool_types)))))
        total: Tensor | None = None
        if "max" in grads:
            total = _gradient_at_maxima(x, spatial, grads["max"])
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


@torch.jit.unused
def _global_pools_eager(x: Tensor, pool_types: List[str]) -> Tensor:
    if _records(x):
        return _GlobalPools.apply(x, tuple(pool_types))
    return torch.cat([_pool(x, pool_type) for pool_type in pool_types], 0)


def global_pools(x: Tensor, pool_types: List[str]) -> Tensor:
    """Pool (N, C, *spatial) with each of ``pool_types`` and stack the results: (P·N, C)."""
    if torch.jit.is_scripting():
        return torch.cat([_pool(x, pool_type) for pool_type in pool_types], 0)
    return _global_pools_eager(x, pool_types)


def global_pool(x: Tensor, pool_type: str) -> Tensor:
    """Pool (N, C, *spatial) to (N, C) with one of :data:`POOL_TYPES`."""
    return global_pools(x, [pool_type])
