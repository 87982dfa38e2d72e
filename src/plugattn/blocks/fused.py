"""The fast path of CBAM's channel→spatial arrangement: fewer passes over the feature map and nothing of
its size kept for backward but the input, with the same math as the reference path.

Reference CBAM reads or writes the (N, C, *S) map about eight times and autograd keeps two full-size
tensors (``x`` and ``y = x·Mc``). Here, with ``Mc`` the channel weights and ``Ms`` the spatial map:

- the channel-wise *mean* of ``y`` is a batched matrix-vector product ``Mc·x / C`` that reads ``x`` once
  (for contiguous NC… layouts); the channel-wise *max* of ``y`` is a grouped ``amax``
  (:func:`~plugattn.blocks.pooling.channel_max`);
- under autograd both pools are one function (:class:`_PoolsOfScaled`) that keeps only ``x`` and ``Mc``
  and rebuilds ``y`` in backward, and ``x·Mc·Ms (+ identity)`` is another (:class:`_ScaleTwice`) that
  keeps ``x``, ``Mc`` and ``Ms``; ``y`` never outlives the forward pass;
- without autograd, ``y`` is scaled by ``Ms`` in place (or added to the shortcut in the same pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import Tensor

from plugattn.blocks._checks import broadcast_channels
from plugattn.blocks.pooling import channel_max


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off where it exists (cpu, cuda); nothing to switch elsewhere (e.g. meta tensors)."""
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


class _PoolsOfScaled(torch.autograd.Function):
    """``(max_c y, mean_c y)`` with ``y = x·Mc``; keeps ``x`` and ``Mc``, rebuilds ``y`` in backward (ties
    at the maximum share its gradient, as ``amax``'s backward does)."""

    @staticmethod
    def forward(ctx, x: Tensor, channel: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        ctx.save_for_backward(x, channel)
        return _pools(x, channel, x * broadcast_channels(channel, x))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_max: Tensor, grad_mean: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        x, channel = ctx.saved_tensors
        weights = broadcast_channels(channel, x)
        at_max = x * weights
        torch.eq(at_max, channel_max(at_max), out=at_max)  # y, then in its place a 0/1 mask of its maxima
        grad_y = torch.addcmul(grad_mean / x.shape[1], at_max, grad_max / at_max.sum(1, keepdim=True), out=at_max)
        grad_channel = _row_dot(grad_y, x).to(channel.dtype) if ctx.needs_input_grad[1] else None
        return grad_y.mul_(weights) if ctx.needs_input_grad[0] else None, grad_channel


class _ScaleTwice(torch.autograd.Function):
    """``x·Mc·Ms`` (``+ identity``); keeps ``x``, ``Mc`` and ``Ms``, and shares one ``grad·x`` product
    between the gradients of both gates."""

    @staticmethod
    def forward(ctx, x: Tensor, channel: Tensor, spatial: Tensor, identity: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, channel, spatial)
        scaled = x * broadcast_channels(channel, x)
        return scaled.mul_(spatial) if identity is None else torch.addcmul(identity, scaled, spatial, out=scaled)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, channel, spatial = ctx.saved_tensors
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
        return grad_x, grad_channel, grad_spatial, grad if ctx.needs_input_grad[3] else None


def channel_then_spatial(x: Tensor, channel: Tensor, map_from_pools: Callable[[Tensor], Tensor],
                         identity: Tensor | None = None) -> Tensor:
    """``y = x · Mc``; ``Ms = map_from_pools([max_c y; mean_c y])``; ``out = y · Ms`` (``+ identity`` when
    given, in the same pass) — the fast way."""
    recording = torch.is_grad_enabled() and (x.requires_grad or channel.requires_grad)
    if recording:
        maxima, mean = _PoolsOfScaled.apply(x, channel)
        spatial = map_from_pools(torch.cat((maxima, mean), 1))
        return _ScaleTwice.apply(x, channel, spatial, identity)
    y = x * broadcast_channels(channel, x)
    spatial = map_from_pools(torch.cat(_pools(x, channel, y), 1))
    if torch.is_grad_enabled() and (spatial.requires_grad or (identity is not None and identity.requires_grad)):
        return _ScaleTwice.apply(x, channel, spatial, identity)
    return y.mul_(spatial) if identity is None else torch.addcmul(identity, y, spatial, out=y)
