"""Keep less for backward: a BatchNorm's output that later layers save is stored as a recipe instead.

In a residual unit the attention block reads ``x = bn(z)``, and autograd would keep ``x`` for the block's
backward while the BatchNorm already keeps ``z``. ``x`` is an affine function of ``z`` per channel, so
inside :func:`recompute_batchnorm_output` every saved reference to ``x`` is replaced by ``(z, scale,
shift)`` and rebuilt in one pass when backward needs it. The attention then costs almost no activation
memory in training; the price is one pass in backward (and, where the BatchNorm's autograd node does
not expose its batch statistics, one pass over ``z`` in forward to compute them again).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn


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

    def __init__(self, output: Tensor, source: Tensor, scale: Tensor, shift: Tensor) -> None:
        self.storage = output.untyped_storage().data_ptr()
        self.size, self.stride, self.offset = output.size(), output.stride(), output.storage_offset()
        self.dtype, self.device = output.dtype, output.device
        self.source, self.scale, self.shift = source, scale, shift
        self.pending = 0
        self.rebuilt: Tensor | None = None

    def pack(self, tensor: Tensor) -> object:
        if tensor.device != self.device or tensor.untyped_storage().data_ptr() != self.storage:
            return tensor
        self.pending += 1
        return (self, tensor.size(), tensor.stride(), tensor.storage_offset() - self.offset)

    def rebuild(self) -> Tensor:
        if self.rebuilt is None:
            self.rebuilt = torch.empty_strided(self.size, self.stride, dtype=self.dtype, device=self.device)
            with torch.no_grad():
                torch.addcmul(self.shift, self.source, self.scale, out=self.rebuilt)
        rebuilt = self.rebuilt
        self.pending -= 1
        if self.pending <= 0:
            self.rebuilt = None
        return rebuilt


def _unpack(packed: object) -> Tensor:
    if isinstance(packed, Tensor):
        return packed
    recipe, size, stride, offset = packed  # type: ignore[misc]
    return recipe.rebuild().as_strided(size, stride, offset)


@contextlib.contextmanager
def recompute_batchnorm_output(output: Tensor, source: Tensor, norm: nn.Module) -> Iterator[None]:
    """While inside, autograd saves ``output`` (``norm(source)``, just computed) as a recipe over ``source``.
    Does nothing where it does not apply: no autograd, a norm that is not a BatchNorm, tensors without
    real storage, or inside ``torch.compile`` (which traces saved tensors its own way)."""
    applies = (
        torch.is_grad_enabled()
        and output.requires_grad
        and isinstance(norm, nn.modules.batchnorm._BatchNorm)
        and output.device.type in ("cpu", "cuda")
        and not torch.compiler.is_compiling()
    )
    if not applies:
        yield
        return
    with torch.no_grad():
        scale, shift = batchnorm_affine(norm, source, output)
    recipe = _Recipe(output, source.detach(), scale, shift)
    with torch.autograd.graph.saved_tensors_hooks(recipe.pack, _unpack):
        yield
