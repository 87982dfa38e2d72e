"""GC — the global context block of GCNet (Cao et al., ICCV-W 2019 / TPAMI; official code xvjiarui/GCNet
``mmdet/ops/gcb/context_block.py``, mmcv's ``ContextBlock``).

Context modelling: one attention map over all positions (a 1×1 convolution C → 1, softmax over positions), the
context vector the map's weighted sum of ``x`` (``pooling="att"``; ``"avg"``: the plain mean). Transform: 1×1 conv
C → int(C·ratio) (ratio 1/16 by default, at least one channel; 1/4 is the paper's other setting) → LayerNorm → ReLU → 1×1 conv back to C. Fusion: added to every position (``"add"``, the paper's
default) and/or multiplied through a sigmoid (``"mul"``). The last convolution of each transform starts at zero
(the official ``last_zero_init``), so an ``add`` block starts as the identity. State-dict names are the
official ones (``conv_mask``, ``channel_add_conv.0/1/3``, ``channel_mul_conv.0/1/3``). 1-D, 2-D and 3-D maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import CONV, broadcast_channels, check_feature_map, factory_kwargs, require_choice, \
    require_choices, require_dims, require_positive_int
from plugattn.blocks.gate import GateActivation
from plugattn.blocks.pooling import global_pool

POOLINGS = ("att", "avg")
FUSIONS = ("add", "mul")


def _transform(channels: int, hidden: int, dims: int, factory: dict) -> nn.Sequential:
    conv = CONV[dims]
    layers = nn.Sequential(conv(channels, hidden, 1, **factory), nn.LayerNorm([hidden] + [1] * dims, **factory),
                           nn.ReLU(inplace=True), conv(hidden, channels, 1, **factory))
    nn.init.zeros_(layers[3].weight)
    nn.init.zeros_(layers[3].bias)
    return layers


class GlobalContext(nn.Module):
    """GCNet's context block (see the module's docstring): ``x + T_add(ctx)`` and/or ``x · σ(T_mul(ctx))``.

    :param channels: the input's channel count C.
    :param ratio: the transform's hidden width is ``int(C · ratio)``; None: 1/16 with at least one channel.
    :param pooling: ``"att"`` (softmax attention pooling, the paper) or ``"avg"`` (the plain mean).
    :param fusion: ``("add",)`` (the paper's default), ``("mul",)`` or both.
    :param dims: 1, 2 or 3 spatial dimensions.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a bad channel count, pooling, fusion or dims; a ratio ≤ 0 or one that gives 0 hidden channels.
    """

    plugattn_block = True

    def __init__(self, channels: int, ratio: float | None = None, *, pooling: str = "att",
                 fusion: Sequence[str] = ("add",), dims: int = 2,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        if ratio is None:  # the paper's 1/16, never below one hidden channel (a narrow map still gets a block)
            self.hidden = max(1, channels // 16)
        elif isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise ValueError(f"ratio must be a number > 0 (hidden channels = int(channels * ratio)), got {ratio!r}")
        else:
            self.hidden = int(channels * ratio)
        if self.hidden < 1:
            raise ValueError(f"ratio {ratio} gives int({channels} * {ratio}) = 0 hidden channels; use a ratio of at "
                             f"least 1/{channels}, or none (the paper's 1/16, at least one channel)")
        self.pooling = require_choice("pooling", pooling, POOLINGS)
        self.fusion = require_choices("fusion", fusion, FUSIONS)
        self.dims = require_dims(dims)
        factory = factory_kwargs(device, dtype)
        if pooling == "att":
            self.conv_mask = CONV[dims](channels, 1, 1, **factory)
            nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(self.conv_mask.bias)
            self.mask = GateActivation("spatial", "softmax")
        else:
            self.conv_mask = None
            self.mask = None
        self.channel_add_conv = _transform(channels, self.hidden, dims, factory) if "add" in self.fusion else None
        self.channel_mul_conv = _transform(channels, self.hidden, dims, factory) if "mul" in self.fusion else None
        self.gate = GateActivation("channel") if "mul" in self.fusion else None

    def context(self, x: Tensor) -> Tensor:
        """The context vector (N, C, 1, …, 1)."""
        if self.conv_mask is None or self.mask is None:
            return broadcast_channels(global_pool(x, "avg"), x)
        weights = self.mask(self.conv_mask(x))  # (N, 1, *spatial), summing to 1 over the positions
        return broadcast_channels(torch.bmm(x.flatten(2), weights.flatten(2).transpose(1, 2)).squeeze(2), x)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "GlobalContext", self.channels, self.dims)
        context = self.context(x)
        out = x
        if self.channel_mul_conv is not None and self.gate is not None:
            out = out * broadcast_channels(self.gate(self.channel_mul_conv(context).flatten(1)), x)
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out

    def starts_as_identity(self) -> bool:
        """Whether the block as built is the exact identity: additive fusion only (its last convolution starts at
        zero; a multiplicative transform's σ(0) halves the map)."""
        return self.channel_mul_conv is None

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [] if self.channel_mul_conv is None else [self.channel_mul_conv[3]]  # the additive one starts at 0

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, hidden={self.hidden}, pooling={self.pooling!r}, "
                f"fusion={list(self.fusion)}, dims={self.dims}")
