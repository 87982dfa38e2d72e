"""Keep less for backward: a BatchNorm's output that later layers save is stored as a recipe instead.

In a residual unit the attention block reads ``x = bn(z)``, and autograd would keep ``x`` for the block's
backward while the BatchNorm already keeps ``z``. ``x`` is an affine function of ``z`` per channel, so
inside :func:`recompute_batchnorm_output` every saved reference to ``x`` is replaced by ``(z, scale,
shift)`` and rebuilt in one pass when backward needs it. The attention then costs almost no activation
memory in training; the price is one pass in backward (and, where the BatchNorm's autograd node does
not expose its batch statistics, one pass over ``z`` in forward to compute them again).

This is part of the opt-in training fast path (:func:`plugattn.fast`). It runs only where
:func:`rebuild_is_safe` holds: the norm is exactly ``nn.BatchNorm1d/2d/3d`` (a subclass such as
SyncBatchNorm computes other statistics) and no hook can see or change the tensors involved. A
higher-order backward (``create_graph=True``) rebuilds ``x`` through ``F.batch_norm`` with autograd,
so its derivatives are the reference's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn.blocks._checks import has_global_module_hooks, has_hooks

EXACT_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def rebuild_is_safe(norm: nn.Module, *others: nn.Module | None) -> bool:
    """Whether ``norm``'s output may be rebuilt from its input: ``norm`` is exactly a BatchNorm1d/2d/3d, and
    neither it, nor any of ``others`` (the unit, the attention block), nor the process has hooks on modules."""
    if type(norm) not in EXACT_BATCH_NORMS or has_global_module_hooks():
        return False
    return not any(has_hooks(module) for module in (norm, *others) if module is not None)


def _batch_statistics(output: Tensor, z: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Mean and 1/std of ``z`` per channel as the BatchNorm that made ``output`` computed them: read from its
    autograd node where it kept them (CPU's native kernel), computed again otherwise."""
    node = output.grad_fn
    if type(node).__name__ == "NativeBatchNormBackward0" and node._saved_training and node._saved_result1.numel():
        return node._saved_result1.float(), node._saved_result2.float()
    var, mean = torch.var_mean(z.float(), dim=[0, *range(2, z.dim())], correction=0)
    return mean, torch.rsqrt(var + eps)


def batchnorm_affine(norm: nn.modules.batchnorm._BatchNorm, z: Tensor, output: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` with ``output == norm(z) == z * scale + shift`` for the statistics
    ``norm`` used (the batch's in training or without running statistics, the running ones otherwise)."""
    if norm.training or norm.running_mean is None or norm.running_var is None:
        mean, scale = _batch_statistics(output, z, norm.eps)
    else:
        mean, scale = norm.running_mean.float(), torch.rsqrt(norm.running_var.float() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.float()
    shift = -mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias.float()
    tail = [1] * (z.dim() - 2)
    return scale.view(-1, *tail), shift.view(-1, *tail)


class _Recipe:
    """How to rebuild ``output`` from ``source``; shared by every saved reference to ``output``'s storage,
    with the rebuilt tensor cached between the unpacks of one backward pass."""

    def __init__(self, output: Tensor, source: Tensor, norm: nn.modules.batchnorm._BatchNorm) -> None:
        self.storage = output.untyped_storage().data_ptr()
        self.size, self.stride, self.offset = output.size(), output.stride(), output.storage_offset()
        self.dtype, self.device = output.dtype, output.device
        with torch.no_grad():
            self.scale, self.shift = batchnorm_affine(norm, source, output)
        self.source = source  # with its autograd history, for a higher-order backward
        self.norm = norm
        self.batch_statistics = norm.training or norm.running_mean is None or norm.running_var is None
        self.pending = 0
        self.rebuilt: Tensor | None = None

    def pack(self, tensor: Tensor) -> object:
        if tensor.device != self.device or tensor.untyped_storage().data_ptr() != self.storage:
            return tensor
        self.pending += 1
        return (self, tensor.size(), tensor.stride(), tensor.storage_offset() - self.offset)

    def rebuild(self) -> Tensor:
        if torch.is_grad_enabled():  # a higher-order backward: rebuild with autograd, as the norm computed it
            self.pending -= 1
            return self._differentiable()
        if self.rebuilt is None:
            self.rebuilt = torch.empty_strided(self.size, self.stride, dtype=self.dtype, device=self.device)
            with torch.no_grad():
                torch.addcmul(self.shift, self.source, self.scale, out=self.rebuilt)
        rebuilt = self.rebuilt
        self.pending -= 1
        if self.pending <= 0:
            self.rebuilt = None
        return rebuilt

    def _differentiable(self) -> Tensor:
        norm, batch = self.norm, self.batch_statistics
        normed = F.batch_norm(self.source, None if batch else norm.running_mean, None if batch else norm.running_var,
                              norm.weight, norm.bias, batch, 0.0, norm.eps)
        return torch.empty_strided(self.size, self.stride, dtype=self.dtype, device=self.device).copy_(normed)


def _unpack(packed: object) -> Tensor:
    if isinstance(packed, Tensor):
        return packed
    recipe, size, stride, offset = packed  # type: ignore[misc]
    return recipe.rebuild().as_strided(size, stride, offset)


@contextlib.contextmanager
def recompute_batchnorm_output(output: Tensor, source: Tensor, norm: nn.Module) -> Iterator[None]:
    """While inside, autograd saves ``output`` (``norm(source)``, just computed) as a recipe over ``source``.
    The caller checks :func:`rebuild_is_safe` and the fast path's guards; this does nothing without autograd."""
    if not (torch.is_grad_enabled() and output.requires_grad):
        yield
        return
    recipe = _Recipe(output, source, norm)
    with torch.autograd.graph.saved_tensors_hooks(recipe.pack, _unpack):
        yield
