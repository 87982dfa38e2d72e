"""``plugattn.fast(model)``: opt in to the guarded training memory path.

By default every block and unit runs the reference formulation in training (inference takes its fused paths only
where nothing can observe them; see :mod:`plugattn.blocks.fused`). The memory path keeps less for backward, by the
fastest mechanism each block has:

- SE and CBAM have hand-written autograd functions that keep only ``x`` and the gates (CBAM's ``x·Mc`` is rebuilt in
  backward), global pools whose backward writes one buffer, and — in zoo residual units — the final BatchNorm's
  output rebuilt from its input instead of kept (:mod:`plugattn.models.recompute`);
- every other block in a zoo residual unit (the family: ECA, SimAM, coordinate attention, GC, …), or every block
  with ``method="checkpoint"``, runs with the unit's final BatchNorm under PyTorch's non-reentrant activation
  checkpointing (``torch.utils.checkpoint``), every running statistic updated once.

Each engages only where its guards hold (autograd recording; no tracing, scripting, compile, export,
``torch.func`` or dispatch mode; no module hooks that would see a rebuilt tensor or a second run; for the rebuild,
exactly ``nn.BatchNorm1d/2d/3d``) and runs the reference everywhere else; a higher-order backward differentiates
the reference formulation (the hand-written functions) or the recomputed region (checkpointing).
"""

from __future__ import annotations

from torch import nn

from plugattn.blocks import CBAM, ChannelGate, SqueezeExcite
from plugattn.blocks._checks import require_choice
from plugattn.models.units import ResidualUnit

FAST_MODULES = (SqueezeExcite, ChannelGate, CBAM, ResidualUnit)
"""Module types with a training memory path."""
FAST_METHODS = ("auto", "checkpoint")
"""``auto``: SE and CBAM's hand-written functions, checkpointing for the rest; ``checkpoint``: checkpointing for
every block in a zoo unit."""


def fast(model: nn.Module, enabled: bool = True, *, method: str = "auto") -> nn.Module:
    """Switch the training memory path on (or off) for every plugattn block and zoo residual unit inside ``model``.

    :param model: the network, changed in place.
    :param enabled: on (``True``) or off.
    :param method: ``"auto"`` or ``"checkpoint"`` (:data:`FAST_METHODS`).
    :returns: ``model``.
    :raises TypeError: a model that is not an ``nn.Module``, or a non-bool ``enabled``.
    :raises ValueError: a model holding no module with a memory path, or an unknown method.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    require_choice("method", method, FAST_METHODS)
    modules = [module for module in model.modules() if isinstance(module, FAST_MODULES)]
    if not modules:
        raise ValueError(
            f"{type(model).__name__} holds no module with a memory path (plugattn's SqueezeExcite, ChannelGate, CBAM "
            "or a zoo residual unit)"
        )
    for module in modules:
        module.fast = enabled
        if isinstance(module, ResidualUnit):
            module.fast_method = method
    return model
