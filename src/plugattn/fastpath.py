"""``plugattn.fast(model)``: opt in to the guarded training fast path.

By default every block and unit runs the reference formulation in training (inference is fused only where
nothing can observe it; see :mod:`plugattn.blocks.fused`). The fast path keeps less for backward: CBAM's
gates through custom autograd functions that rebuild ``x·Mc``, global pools whose backward writes one
buffer, and — in zoo residual units — the final BatchNorm's output rebuilt from its input instead of kept
(:mod:`plugattn.models.recompute`). Each piece engages only where its guards hold (autograd recording, no
tracing / scripting / compile / export / ``torch.func`` / dispatch mode; for the rebuild, exactly
``nn.BatchNorm1d/2d/3d`` and no module hooks) and runs the reference everywhere else; a higher-order
backward differentiates the reference formulation.
"""

from __future__ import annotations

from torch import nn

from plugattn.blocks import CBAM, ChannelGate, SqueezeExcite
from plugattn.models.units import ResidualUnit

FAST_MODULES = (SqueezeExcite, ChannelGate, CBAM, ResidualUnit)
"""Module types with a training fast path."""


def fast(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch the training fast path on (or off) for every plugattn block and zoo residual unit inside ``model``.

    :param model: the network, changed in place.
    :param enabled: on (``True``) or off.
    :returns: ``model``.
    :raises TypeError: a model that is not an ``nn.Module``, or a non-bool ``enabled``.
    :raises ValueError: a model holding no module with a fast path.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    modules = [module for module in model.modules() if isinstance(module, FAST_MODULES)]
    if not modules:
        raise ValueError(
            f"{type(model).__name__} holds no module with a fast path (plugattn's SqueezeExcite, ChannelGate, CBAM "
            "or a zoo residual unit)"
        )
    for module in modules:
        module.fast = enabled
    return model
