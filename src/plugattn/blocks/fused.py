"""The fast path of CBAM's channel→spatial arrangement: fewer passes over the feature map and less
memory kept for backward, with the same math as the reference path.

Reference CBAM reads or writes the (N, C, *S) map about eight times and autograd keeps two full-size
tensors (``x`` and ``y = x·Mc``). Here:

- the channel-wise *mean* of ``y`` is a batched matrix-vector product ``Mc·x / C`` that reads ``x`` once
  and never needs ``y`` (for contiguous NC… layouts);
- the channel-wise *max* of ``y`` uses ``torch.max`` (whose backward keeps indices, not ``y``);
- the final ``y·Ms`` is an autograd function that keeps only ``x``, ``Mc`` and ``Ms`` (``x`` is already
  kept by ``y = x·Mc``) and recomputes what its backward needs; without autograd it scales ``y`` in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off where it exists (cpu, cuda); nothing to switch elsewhere (e.g. meta tensors)."""
    return torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else contextlib.nullcontext()


def _channel_dot(weights: Tensor, x: Tensor) -> Tensor:
    """``sum_c weights[n, c] · x[n, c, *s]`` as (N, 1, *S): a bmm for contiguous NC… maps."""
    n, c = x.shape[:2]
    if x.is_contiguous():
        return torch.bmm(weights.view(n, 1, c).to(x.dtype), x.view(n, c, -1)).view(n, 1, *x.shape[2:])
    return (x * weights.view(n, c, *([1] * (x.dim() - 2)))).sum(1, keepdim=True)


class _ScaleBySpatialMap(torch.autograd.Function):
    """``out = y · Ms (+ identity)`` with ``y = x · Mc`` computed outside; backward recomputes from ``x``
    instead of keeping ``y``."""

    @staticmethod
    def forward(ctx, y: Tensor, spatial: Tensor, x: Tensor, channel: Tensor, identity: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, channel, spatial)
        return y * spatial if identity is None else torch.addcmul(identity, y, spatial)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, channel, spatial = ctx.saved_tensors
        grad_y = grad * spatial if ctx.needs_input_grad[0] else None
        grad_spatial = _channel_dot(channel, (grad * x).contiguous()) if ctx.needs_input_grad[1] else None
        return grad_y, grad_spatial, None, None, grad if ctx.needs_input_grad[4] else None


def channel_then_spatial(x: Tensor, channel: Tensor, map_from_pools: Callable[[Tensor], Tensor],
                         identity: Tensor | None = None) -> Tensor:
    """``y = x · Mc``; ``Ms = map_from_pools([max_c y; mean_c y])``; ``out = y · Ms`` (``+ identity`` when
    given, in the same pass) — the fast way."""
    shape = (*channel.shape, *([1] * (x.dim() - 2)))
    y = x * channel.view(shape)
    channel_max = torch.max(y, 1, keepdim=True)[0]
    if x.is_contiguous():
        with _no_autocast(x.device.type):  # keep the mean as precise as the reference's
            channel_mean = _channel_dot(channel.to(x.dtype), x) / x.shape[1]
    else:
        channel_mean = y.mean(1, keepdim=True)
    spatial = map_from_pools(torch.cat((channel_max, channel_mean.to(channel_max.dtype)), 1))
    needs_grad = x.requires_grad or channel.requires_grad or spatial.requires_grad
    if torch.is_grad_enabled() and (needs_grad or (identity is not None and identity.requires_grad)):
        return _ScaleBySpatialMap.apply(y, spatial, x, channel, identity)
    if identity is None:
        return y.mul_(spatial)
    return torch.addcmul(identity, y, spatial, out=y)
