"""Coordinate Attention (Hou et al., CVPR 2021; official code houqb/CoordAttention ``coordatt.py``).

The map is pooled along each spatial axis separately — a profile (N, C, H) averaged over W and (N, C, W) averaged
over H — the profiles concatenated along their length, one shared 1×1 convolution (C → max(8, C // reduction),
with bias) → BatchNorm → h-swish, split back, one 1×1 convolution per axis (→ C, with bias) → σ, and
``out = x · a_h · a_w``: a channel gate that knows *where* along each axis. The official files name the two output
convolutions ``conv_h``/``conv_w`` (``coordatt.py``, plugattn's names) and ``conv2``/``conv3`` (``mbv2_ca.py``).
plugattn also takes 3-D maps (N, C, D, H, W): one profile per axis (D, H, W), ``x · a_d · a_h · a_w`` (the same
construction, one more axis; ``conv_d`` is the extra convolution). 1-D maps have no second axis to be
coordinate-aware of: refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn.blocks._checks import check_feature_map, factory_kwargs, require_positive_int
from plugattn.blocks.gate import GateActivation


class CoordinateAttention(nn.Module):
    """``x · Π_axis σ(conv_axis(split(h_swish(BN(conv1(cat(profiles)))))))`` (see the module's docstring).

    :param channels: the input's channel count C.
    :param reduction: the hidden width is ``max(min_hidden, C // reduction)`` (32).
    :param min_hidden: the least hidden width (8, the official code's).
    :param dims: 2 (N, C, H, W) or 3 (N, C, D, H, W).
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a bad channel count, reduction or minimum width, or dims 1 (no second axis).
    """

    plugattn_block = True

    def __init__(self, channels: int, reduction: int = 32, *, min_hidden: int = 8, dims: int = 2,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.reduction = require_positive_int("reduction", reduction)
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 (N,C,H,W) or 3 (N,C,D,H,W) for coordinate attention (it pools along "
                             f"each spatial axis separately; a 1-D map has only one); got {dims!r}")
        self.dims = dims
        self.hidden = max(require_positive_int("min_hidden", min_hidden), channels // reduction)
        factory = factory_kwargs(device, dtype)
        self.conv1 = nn.Conv2d(channels, self.hidden, 1, **factory)
        self.bn1 = nn.BatchNorm2d(self.hidden, **factory)
        self.conv_d = nn.Conv2d(self.hidden, channels, 1, **factory) if dims == 3 else None
        self.conv_h = nn.Conv2d(self.hidden, channels, 1, **factory)
        self.conv_w = nn.Conv2d(self.hidden, channels, 1, **factory)
        self.gate = GateActivation("element")

    def axis_weights(self, x: Tensor) -> list[Tensor]:
        """One gate per spatial axis (D, H, W order), each (N, C, …) with size 1 along the other axes."""
        profiles: list[Tensor] = []  # each (N, C, L_axis): the mean over the other spatial axes
        sizes: list[int] = []
        for axis in range(2, x.dim()):
            others: list[int] = []
            for other in range(2, x.dim()):
                if other != axis:
                    others.append(other)
            profiles.append(x.mean(others))
            sizes.append(x.shape[axis])
        parts = F.hardswish(self.bn1(self.conv1(torch.cat(profiles, 2).unsqueeze(-1)))).split(sizes, 2)
        conv_d = self.conv_d
        if conv_d is None:
            logits = [self.conv_h(parts[0]), self.conv_w(parts[1])]
        else:
            logits = [conv_d(parts[0]), self.conv_h(parts[1]), self.conv_w(parts[2])]
        weights: list[Tensor] = []
        for index, logit in enumerate(logits):
            shape = [x.shape[0], x.shape[1]] + [1] * len(sizes)
            shape[2 + index] = sizes[index]
            weights.append(self.gate(logit.reshape(shape)))  # the gate as it multiplies x
        return weights

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "CoordinateAttention", self.channels, self.dims)
        out = x
        for weights in self.axis_weights(x):
            out = out * weights
        return out

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [conv for conv in (self.conv_d, self.conv_h, self.conv_w) if conv is not None]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, dims={self.dims}"
