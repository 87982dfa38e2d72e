"""ECA — Efficient Channel Attention (Wang et al., CVPR 2020; official code BangguWu/ECANet ``eca_module.py``).

``out = x · σ(conv1d_k(GAP(x)))``: the pooled channel descriptor (N, C) is read as a 1-D signal along the
channels and filtered by one k-tap kernel without bias (zero padding), so each channel's weight comes from its k
neighbours — no bottleneck, k parameters whatever C. The paper chooses k from C:
``t = int(|(log2(C) + b) / γ|)``, k = t when t is odd, else t + 1 (γ = 2, b = 1): the official code's rule, which
breaks the ties of an even t upwards (C = 128 gives t = 4, so k = 5; C = 2048 gives t = 6, so k = 7). The released
ECA-ResNets give k per stage instead (ResNet-50: 3, 5, 5, 7); the zoo passes those. Any rank ≥ 3.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import broadcast_channels, check_feature_map, factory_kwargs, require_kernel_size, \
    require_positive_int
from plugattn.blocks.gate import GateActivation
from plugattn.blocks.pooling import global_pool


def eca_kernel_size(channels: int, gamma: float = 2, beta: float = 1) -> int:
    """The paper's adaptive kernel size for ``channels`` (odd; an even ``t`` rounds up, as the official code does).

    :param channels: the channel count C.
    :param gamma: γ in ``t = int(|(log2(C) + b) / γ|)``.
    :param beta: b in the same rule.
    :returns: k, odd: t when t is odd, else t + 1.
    :raises ValueError: a channel count below 1 or γ ≤ 0.
    """
    require_positive_int("channels", channels)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"gamma must be a number > 0, got {gamma!r}")
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """``x · σ(conv1d_k(GAP(x)))`` with ``kernel_size`` k (None: :func:`eca_kernel_size` of ``channels``, with
    ``gamma`` and ``beta``). The state dict is the official one (``conv.weight``, shape (1, 1, k)).

    :param channels: the input's channel count C.
    :param kernel_size: k, odd; None: the paper's rule from C.
    :param gamma: γ of the rule (2).
    :param beta: b of the rule (1).
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a channel count below 1, an even or non-positive kernel size, γ ≤ 0.
    """

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)`` in one pass (``addcmul``)."""

    def __init__(self, channels: int, kernel_size: Optional[int] = None, *, gamma: float = 2, beta: float = 1,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, gamma, beta)
        self.kernel_size = require_kernel_size(kernel_size)
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False,
                              **factory_kwargs(device, dtype))
        self.gate = GateActivation("channel")

    def channel_weights(self, x: Tensor) -> Tensor:
        """The gate (N, C) for input ``x``."""
        return self.gate(self.conv(global_pool(x, "avg").unsqueeze(1)).squeeze(1))

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        check_feature_map(x, "ECA", self.channels, 0)
        weights = broadcast_channels(self.channel_weights(x), x)
        return x * weights if identity is None else torch.addcmul(identity, x, weights)

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [self.conv]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
