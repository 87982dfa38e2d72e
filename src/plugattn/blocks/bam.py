"""BAM — Bottleneck Attention Module (Park, Woo et al., BMVC 2018; official code Jongchan/attention-module
``MODELS/bam.py``, the CBAM authors' repository).

``out = x · (1 + σ(M(x)))`` with two branches: a channel branch ``M_c`` (global average pool → Linear C → C/r →
BatchNorm1d → ReLU → Linear → C, (N, C)) and a spatial branch ``M_s`` (1×1 conv C → C/r → BN → ReLU → two 3×3
convs with dilation 4 → BN → ReLU each → 1×1 conv → 1, (N, 1, *spatial); all convolutions with bias), broadcast to
(N, C, *spatial). The paper combines them by **sum** (its ablation's best; plugattn's default), the official code
by **product** (``combine="product"``: give it to load the official weights, which were trained that way). The
official channel branch pools with a square kernel of the map's height (which, on a map wider than high, averages
only its first H columns); plugattn pools globally. BAM sits between stages (after layer1–3 of a ResNet), not in
every unit: the zoo's ``placement="stage"``. State-dict names are the official ones (``channel_att.gate_c.…``,
``spatial_att.gate_s.…``). 1-D, 2-D and 3-D maps.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import BATCH_NORM, CONV, broadcast_channels, check_feature_map, factory_kwargs, \
    hidden_width, require_choice, require_dims, require_positive_int
from plugattn.blocks.gate import GateActivation
from plugattn.blocks.pooling import global_pool

COMBINES = ("sum", "product")


class BAMChannel(nn.Module):
    """``M_c``: the global mean (N, C) → Linear → BatchNorm1d → ReLU → Linear, as logits (N, C)."""

    def __init__(self, channels: int, hidden: int, factory: dict) -> None:
        super().__init__()
        self.gate_c = nn.Sequential(OrderedDict([
            ("gate_c_fc_0", nn.Linear(channels, hidden, **factory)),
            ("gate_c_bn_1", nn.BatchNorm1d(hidden, **factory)),
            ("gate_c_relu_1", nn.ReLU()),
            ("gate_c_fc_final", nn.Linear(hidden, channels, **factory)),
        ]))

    def forward(self, x: Tensor) -> Tensor:
        return self.gate_c(global_pool(x, "avg"))


class BAMSpatial(nn.Module):
    """``M_s``: 1×1 reduce → BN → ReLU → (3×3 dilated conv → BN → ReLU) × ``convs`` → 1×1 to one map (N, 1, …)."""

    def __init__(self, channels: int, hidden: int, dims: int, convs: int, dilation: int, factory: dict) -> None:
        super().__init__()
        conv, batch_norm = CONV[dims], BATCH_NORM[dims]
        layers: list[tuple[str, nn.Module]] = [
            ("gate_s_conv_reduce0", conv(channels, hidden, 1, **factory)),
            ("gate_s_bn_reduce0", batch_norm(hidden, **factory)),
            ("gate_s_relu_reduce0", nn.ReLU()),
        ]
        for index in range(convs):
            layers += [(f"gate_s_conv_di_{index}", conv(hidden, hidden, 3, padding=dilation, dilation=dilation,
                                                         **factory)),
                       (f"gate_s_bn_di_{index}", batch_norm(hidden, **factory)),
                       (f"gate_s_relu_di_{index}", nn.ReLU())]
        layers.append(("gate_s_conv_final", conv(hidden, 1, 1, **factory)))
        self.gate_s = nn.Sequential(OrderedDict(layers))

    def forward(self, x: Tensor) -> Tensor:
        return self.gate_s(x)


class BAM(nn.Module):
    """``x · (1 + σ(M_c ⊕ M_s))`` with ⊕ the ``combine`` of the branches (see the module's docstring).

    :param channels: the input's channel count C.
    :param reduction: ``r``: both branches' hidden width is ``max(1, C // r)``.
    :param combine: ``"sum"`` (the paper's, the default) or ``"product"`` (the official code's: its weights).
    :param dilation: the spatial branch's dilation (4).
    :param dilated_convs: how many dilated 3×3 convolutions the spatial branch has (2).
    :param dims: 1, 2 or 3 spatial dimensions.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a bad channel count, reduction, combine, dilation, convolution count or dims; in training,
        a batch of one sample (the channel branch's BatchNorm1d cannot normalise it).
    """

    plugattn_block = True

    def __init__(self, channels: int, reduction: int = 16, *, combine: str = "sum", dilation: int = 4,
                 dilated_convs: int = 2, dims: int = 2,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.combine = require_choice("combine", combine, COMBINES)
        self.dims = require_dims(dims)
        hidden = hidden_width(channels, require_positive_int("reduction", reduction))
        factory = factory_kwargs(device, dtype)
        self.channel_att = BAMChannel(channels, hidden, factory)
        self.spatial_att = BAMSpatial(channels, hidden, dims, require_positive_int("dilated_convs", dilated_convs),
                                      require_positive_int("dilation", dilation), factory)
        self.gate = GateActivation("element")

    def attention(self, x: Tensor) -> Tensor:
        """``σ(M_c ⊕ M_s)`` shaped like ``x`` (the output is ``x · (1 + attention)``)."""
        if self.training and x.shape[0] == 1:
            raise ValueError("BAM: a training batch of 1 sample cannot be normalised by the channel branch's "
                             "BatchNorm1d (it needs more than one value per channel); use a batch of at least 2, "
                             "or eval()")
        channel = broadcast_channels(self.channel_att(x), x)
        spatial = self.spatial_att(x)
        logits = channel + spatial if self.combine == "sum" else channel * spatial
        return self.gate(logits)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "BAM", self.channels, self.dims)
        return x * (1 + self.attention(x))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, combine={self.combine!r}, dims={self.dims}"
