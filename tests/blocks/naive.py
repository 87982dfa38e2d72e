"""Independent, deliberately naive references written from the papers' formulas and the seed's code
(one op at a time, 2-D pooling functions where the seed used them). Weights are passed in explicitly,
so the references share nothing with plugattn's implementation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_AVG = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}
_MAX = {3: F.max_pool1d, 4: F.max_pool2d, 5: F.max_pool3d}
_LP = {3: F.lp_pool1d, 4: F.lp_pool2d, 5: F.lp_pool3d}
_CONV = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}


def _window(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape[2:])


def logsumexp_nd(x: Tensor) -> Tensor:
    """The official CBAM code's ``logsumexp_2d``: shift by the max, exponentiate, sum, log."""
    flat = x.view(x.size(0), x.size(1), -1)
    shift, _ = torch.max(flat, dim=2, keepdim=True)
    return shift + (flat - shift).exp().sum(dim=2, keepdim=True).log()


def pool(x: Tensor, pool_type: str) -> Tensor:
    """(N, C, *S) -> (N, C) the way the seed's ChannelGate pools (whole-map windows)."""
    window = _window(x)
    if pool_type == "avg":
        out = _AVG[x.dim()](x, window, stride=window)
    elif pool_type == "max":
        out = _MAX[x.dim()](x, window, stride=window)
    elif pool_type == "lp":
        kernel = window[0] if x.dim() == 3 else window  # lp_pool1d takes an int
        out = _LP[x.dim()](x, 2, kernel, stride=kernel)
    elif pool_type == "lse":
        out = logsumexp_nd(x)
    else:
        raise AssertionError(pool_type)
    return out.reshape(x.size(0), x.size(1))


def mlp(z: Tensor, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None) -> Tensor:
    return F.linear(F.relu(F.linear(z, w1, b1)), w2, b2)


def expand(weights: Tensor, x: Tensor) -> Tensor:
    return weights.view(*weights.shape, *([1] * (x.dim() - 2))).expand_as(x)


def squeeze_excite(x: Tensor, w1, b1, w2, b2, squeeze: str = "avg", gate: str = "sigmoid") -> Tensor:
    s = mlp(pool(x, squeeze), w1, b1, w2, b2)
    s = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[gate](s)
    return x * expand(s, x)


def channel_attention(x: Tensor, w1, b1, w2, b2, pool_types) -> Tensor:
    total = None
    for pool_type in pool_types:
        raw = mlp(pool(x, pool_type), w1, b1, w2, b2)
        total = raw if total is None else total + raw
    return torch.sigmoid(total)


def spatial_attention(x: Tensor, conv_weight: Tensor, bn: nn.BatchNorm2d | nn.Module) -> Tensor:
    compressed = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
    k = conv_weight.shape[-1]
    conv = _CONV[x.dim()](compressed, conv_weight, None, stride=1, padding=(k - 1) // 2)
    normed = F.batch_norm(
        conv, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias, bn.training, 0.0, bn.eps
    )
    return torch.sigmoid(normed)


def cbam(x: Tensor, block, order: str = "channel-spatial") -> Tensor:
    """CBAM from the formulas, reading the weights out of a plugattn CBAM ``block``."""
    fc = block.channel_gate.mlp

    def channel(t: Tensor) -> Tensor:
        weights = channel_attention(t, fc[1].weight, fc[1].bias, fc[3].weight, fc[3].bias, block.channel_gate.pool_types)
        return expand(weights, t)

    if block.spatial_gate is None:
        return x * channel(x)

    def spatial(t: Tensor) -> Tensor:
        return spatial_attention(t, block.spatial_gate.spatial.conv.weight, block.spatial_gate.spatial.bn)

    if order == "channel-spatial":
        y = x * channel(x)
        return y * spatial(y)
    if order == "spatial-channel":
        y = x * spatial(x)
        return y * channel(y)
    return x * channel(x) * spatial(x)


class SeedSELayer(nn.Module):
    """The seed's SELayer, as printed there (2-D, no biases), to check that its checkpoints load."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)
