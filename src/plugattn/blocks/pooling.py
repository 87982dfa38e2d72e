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
    """``y.amax(1, keepdim=True)`` for (N, C, *S) maps; large contiguous maps reduce 16 channel groups
    first (each step then reduces over a long contiguous run, the pattern CPU reductions vectorise)."""
    n, c = y.shape[:2]
    if y.is_contiguous() and c >= 256 and c % 16 == 0 and y.numel() >= 2**20:
        return y.view(n, 16, -1).amax(1).view(n, c // 16, -1).amax(1, keepdim=True).view(n, 1, *y.shape[2:])
    return y.amax(1, keepdim=True)


def _amax(x: Tensor, dims: List[int], keepdim: bool) -> Tensor:
    if dims == [1]:
        found = channel_max(x)
        return found if keepdim else found.squeeze(1)
    return x.amax(dims, keepdim)


class _MaxFoundAgain(torch.autograd.Function):
    """``amax`` whose backward locates the maxima in the saved input instead of comparing it with the
    saved output: exact ties share the gradient as ``amax``'s do, and an input that was rebuilt (see
    :mod:`plugattn.models.recompute`) with last-bit differences still routes every gradient somewhere."""

    @staticmethod
    def forward(ctx, x: Tensor, dims: List[int], keepdim: bool) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim = dims, keepdim
        return _amax(x, dims, keepdim)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        at_max = x == _amax(x, ctx.dims, True)
        if not ctx.keepdim:
            for dim in sorted(ctx.dims):
                grad = grad.unsqueeze(dim)
        return at_max * (grad / at_max.sum(ctx.dims, keepdim=True)), None, None


@torch.jit.unused
def _maximum_eager(x: Tensor, dims: List[int], keepdim: bool) -> Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxFoundAgain.apply(x, dims, keepdim)
    return _amax(x, dims, keepdim)


def maximum(x: Tensor, dims: List[int], keepdim: bool = False) -> Tensor:
    """``x.amax(dims, keepdim)``: grouped over channels where faster, and through :class:`_MaxFoundAgain`
    when autograd records it."""
    if torch.jit.is_scripting():
        return x.amax(dims, keepdim)
    return _maximum_eager(x, dims, keepdim)


def global_pool(x: Tensor, pool_type: str) -> Tensor:
    """Pool (N, C, *spatial) to (N, C) with one of :data:`POOL_TYPES`."""
    spatial = list(range(2, x.dim()))
    if pool_type == "avg":
        return x.mean(spatial)
    if pool_type == "max":
        return maximum(x, spatial)
    if pool_type == "lp":
        return torch.linalg.vector_norm(x, 2.0, spatial)
    if pool_type == "lse":
        return torch.logsumexp(x.flatten(2), 2)
    raise ValueError(f"pool_type must be one of 'avg', 'max', 'lp', 'lse'; got '{pool_type}'")
