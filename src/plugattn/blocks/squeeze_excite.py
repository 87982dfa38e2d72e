"""Squeeze-and-Excitation (Hu et al., CVPR 2018): channel attention from one pooled number per channel."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import (
    broadcast_channels,
    check_feature_map,
    factory_kwargs,
    hidden_width,
    require_choice,
    require_positive_int,
)
from plugattn.blocks.fused import GlobalPools, fast_training_applies
from plugattn.blocks.gate import GATE_FUNCTIONS, GateActivation
from plugattn.blocks.pooling import global_pool

SQUEEZES = ("avg", "max")
"""How SE pools each channel: the paper's mean, or the maximum (an ablation)."""


class SqueezeExcite(nn.Module):
    """``out = x * gate(W2 · relu(W1 · pool(x)))`` with ``W1: C -> max(1, C // reduction)``.

    The seed's ``SELayer`` is ``bias=False`` (the default here); the papers' SE-ResNets use biases
    (``bias=True``, which their parameter counts prove). ``squeeze="max"`` and the ``tanh``/``relu``
    gates are the SENet ablations. Accepts any rank ≥ 3: (N,C,L), (N,C,H,W), (N,C,D,H,W).
    The state_dict keys (``fc.0.weight``, ``fc.2.weight``) are those of the seed and senet.pytorch.
    ``divisor=8`` rounds the hidden width to a multiple of 8 as timm's ``SEModule`` does (timm's
    ``seresnet18/34``: 64 channels at r=16 give 8, not 4).
    ``fast=True`` opts in to the guarded training fast path (see :func:`plugattn.fast`).

    :param channels: the input's channel count C.
    :param reduction: ``r``: the hidden width is ``max(1, C // r)`` (rounded up to ``divisor``).
    :param squeeze: how each channel is pooled: ``"avg"`` (the paper) or ``"max"`` (an ablation).
    :param gate: the excitation's activation: ``"sigmoid"`` (the paper), ``"tanh"`` or ``"relu"`` (ablations).
    :param bias: biases in both linear layers (``False``: the seed's SELayer; ``True``: the papers' SE-ResNets).
    :param divisor: round the hidden width to a multiple of this (8: timm's ``SEModule``).
    :param fast: opt in to the guarded training fast path.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a channel count, reduction or divisor below 1, or an unknown squeeze or gate.
    """

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)`` in one pass (``addcmul``); residual units call
    it that way."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        squeeze: str = "avg",
        gate: str = "sigmoid",
        bias: bool = False,
        divisor: int = 1,
        fast: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.reduction = require_positive_int("reduction", reduction)
        self.squeeze = require_choice("squeeze", squeeze, SQUEEZES)
        self.gate_function = require_choice("gate", gate, GATE_FUNCTIONS)
        self.fast = bool(fast)
        self.divisor = require_positive_int("divisor", divisor)
        hidden = hidden_width(channels, reduction, divisor)
        factory = factory_kwargs(device, dtype)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=bias, **factory),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=bias, **factory),
            GateActivation("channel", gate),
        )

    def channel_weights(self, x: Tensor) -> Tensor:
        """The excitation ``s`` (N, C) for input ``x`` (N, C, …)."""
        if not torch.jit.is_scripting() and self.fast:
            return self.fc(self._fast_squeeze(x))
        return self.fc(global_pool(x, self.squeeze))

    @torch.jit.unused
    def _fast_squeeze(self, x: Tensor) -> Tensor:
        if fast_training_applies(self, x):
            return GlobalPools.apply(x, (self.squeeze,))
        return global_pool(x, self.squeeze)

    def accepts_rebuilt_input(self) -> bool:
        """Whether this block's backward stays right when a residual unit rebuilds ``x`` instead of keeping it
        (true on the fast path, whose pooling finds maxima again in the rebuilt input)."""
        return self.fast

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """``x * s``; with ``identity``, ``identity + x * s`` in one pass over memory (how residual units
        fuse the block into their addition).

        :param x: the feature map (N, C, …), any rank ≥ 3, floating point.
        :param identity: a tensor of ``x``'s shape to add to the gated map (a residual unit's shortcut), or None.
        :returns: the gated map, of ``x``'s shape.
        :raises ValueError: a rank below 3 or another channel count than the block's.
        :raises TypeError: an integer tensor.
        """
        check_feature_map(x, "SqueezeExcite", self.channels, 0)
        weights = broadcast_channels(self.channel_weights(x), x)
        if identity is None:
            return x * weights
        return torch.addcmul(identity, x, weights)

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [self.fc[2]]

    def extra_repr(self) -> str:
        fast = ", fast=True" if self.fast else ""
        return (f"channels={self.channels}, reduction={self.reduction}, squeeze={self.squeeze!r}, "
                f"gate={self.gate_function!r}{fast}")
