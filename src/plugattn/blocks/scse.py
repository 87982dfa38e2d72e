"""scSE — concurrent spatial and channel squeeze & excitation (Roy et al., MICCAI 2018).

``cSE``: SE without a bottleneck below ``channels // reduction`` (global mean → Linear → ReLU → Linear → σ, biases);
``sSE``: a 1×1 convolution C → 1 with bias → σ, a weight per position. The authors' code (ai-med
``squeeze_and_excitation.py``, ``ChannelSpatialSELayer``/``…3D``) combines ``x·cSE`` and ``x·sSE`` by their
element-wise **max** with reduction 2 (plugattn's default: the authors'); segmentation_models.pytorch's
``SCSEModule`` **adds** them with reduction 16 (``combine="add", reduction=16``). State-dict names are the authors'
(``cSE.fc1``, ``cSE.fc2``, ``sSE.conv``). 1-D, 2-D and 3-D maps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import CONV, broadcast_channels, check_feature_map, factory_kwargs, hidden_width, \
    require_choice, require_dims, require_positive_int
from plugattn.blocks.gate import GateActivation
from plugattn.blocks.pooling import global_pool

COMBINES = ("max", "add")


class ChannelSE(nn.Module):
    """The channel branch: ``σ(fc2(relu(fc1(mean(x)))))`` (N, C)."""

    def __init__(self, channels: int, reduction: int, factory: dict) -> None:
        super().__init__()
        hidden = hidden_width(channels, require_positive_int("reduction", reduction))
        self.fc1 = nn.Linear(channels, hidden, **factory)
        self.fc2 = nn.Linear(hidden, channels, **factory)
        self.gate = GateActivation("channel")

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(self.fc2(torch.relu(self.fc1(global_pool(x, "avg")))))


class SpatialSE(nn.Module):
    """The spatial branch: ``σ(conv_1×1(x))`` (N, 1, *spatial)."""

    def __init__(self, channels: int, dims: int, factory: dict) -> None:
        super().__init__()
        self.conv = CONV[dims](channels, 1, 1, **factory)
        self.gate = GateActivation("spatial")

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(self.conv(x))


class SCSE(nn.Module):
    """``combine(x·cSE(x), x·sSE(x))`` with ``combine`` ``max`` (the authors') or ``add`` (smp's).

    :param channels: the input's channel count C.
    :param reduction: the channel branch's hidden width is ``max(1, C // reduction)`` (2, the authors'; smp: 16).
    :param combine: ``"max"`` (the authors') or ``"add"`` (segmentation_models.pytorch's).
    :param dims: 1, 2 or 3 spatial dimensions.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a bad channel count, reduction, combine or dims.
    """

    plugattn_block = True

    def __init__(self, channels: int, reduction: int = 2, *, combine: str = "max", dims: int = 2,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.combine = require_choice("combine", combine, COMBINES)
        self.dims = require_dims(dims)
        factory = factory_kwargs(device, dtype)
        self.cSE = ChannelSE(channels, reduction, factory)
        self.sSE = SpatialSE(channels, dims, factory)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "SCSE", self.channels, self.dims)
        channel = x * broadcast_channels(self.cSE(x), x)
        spatial = x * self.sSE(x)
        return torch.maximum(channel, spatial) if self.combine == "max" else channel + spatial

    def gate_logit_layers(self) -> list[nn.Module] | None:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`);
        None with ``combine="add"``, whose two gates worth 1 would double ``x``."""
        return [self.cSE.fc2, self.sSE.conv] if self.combine == "max" else None

    def extra_repr(self) -> str:
        return f"channels={self.channels}, combine={self.combine!r}, dims={self.dims}"
