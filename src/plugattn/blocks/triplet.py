"""Triplet Attention (Misra et al., WACV 2021; official code landskape-ai/triplet-attention ``triplet_attention.py``).

Three branches, each CBAM's spatial gate (Z-pool [max; mean] over the first axis → 7×7 convolution without bias →
BatchNorm with eps 1e-5, momentum 0.01 → σ) applied to a rotation of the map: ``cw`` with C and H swapped (a map
over C–W), ``hc`` with C and W swapped (over H–C), ``hw`` on the map as it is (over H–W); the three gated maps are
averaged (``spatial=False``: the first two only, the official ``no_spatial``). 3 × 100 parameters whatever C. The
released code exists under two key layouts — ``cw``/``hc``/``hw`` with ``conv.conv``/``conv.bn`` (the current
file) and ``ChannelGateH``/``ChannelGateW``/``SpatialGate`` with ``spatial.conv``/``spatial.bn``
(``MODELS/triplet_attention.py``); plugattn's names are ``cw``/``hc``/``hw`` with ``spatial.conv``/``spatial.bn``
and :mod:`plugattn.interop` maps both. The official ResNets start the ``hw`` branch's BatchNorm weight at 0 (the zoo
does). 2-D maps only: the rotations need two spatial axes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import check_feature_map, factory_kwargs, require_kernel_size, require_positive_int
from plugattn.blocks.cbam import SpatialGate
from plugattn.blocks.gate import GateActivation


class TripletAttention(nn.Module):
    """The mean of CBAM spatial gates over the C–W, H–C and H–W planes (see the module's docstring).

    :param channels: the input's channel count C (checked on input; the gates' parameters do not depend on it).
    :param kernel_size: each branch's (odd) kernel size (7).
    :param spatial: keep the H–W branch (``False``: the official ``no_spatial``).
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a channel count below 1, an even or non-positive kernel size.
    """

    plugattn_block = True

    def __init__(self, channels: int, kernel_size: int = 7, *, spatial: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.kernel_size = require_kernel_size(kernel_size)
        factory = factory_kwargs(device, dtype)
        self.cw = SpatialGate(kernel_size, **factory)
        self.hc = SpatialGate(kernel_size, **factory)
        for rotated in (self.cw, self.hc):  # their maps lie over rotated axes: not spatial maps of x
            rotated.gate = GateActivation("element")
        self.hw = SpatialGate(kernel_size, **factory) if spatial else None

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "TripletAttention", self.channels, 2)
        rotated_h = x.transpose(1, 2)  # (N, H, C, W): the C–W gate comes back as (N, C, 1, W)
        cw = self.cw.spatial_map(rotated_h).transpose(1, 2)
        rotated_w = x.transpose(1, 3)  # (N, W, H, C): the H–C gate comes back as (N, C, H, 1)
        hc = self.hc.spatial_map(rotated_w).transpose(1, 3)
        hw = self.hw
        if hw is None:  # the mean of the gated maps is x times the mean of the gates: one pass over x
            return x * ((cw + hc) / 2)
        return x * ((cw + hc + hw.spatial_map(x)) / 3)

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [gate.spatial.bn for gate in (self.cw, self.hc, self.hw) if gate is not None]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, spatial={self.hw is not None}"
