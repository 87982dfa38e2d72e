"""Two independent references for each block of the attention family, sharing nothing with plugattn's code:

- ``naive_*``: the papers' formulas written one op at a time, weights passed in explicitly (BatchNorm in eval mode
  as its formula, LayerNorm as its formula);
- ``Official*``: modules re-implemented with the structure and parameter names of the official code (the
  repositories named in each docstring), so their state dicts are what the official checkpoints hold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ---------------------------------------------------------------- formulas


def batch_norm_eval(x: Tensor, bn: dict, eps: float = 1e-5) -> Tensor:
    """``(x − running_mean) / sqrt(running_var + eps) · weight + bias`` along dim 1."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale = bn["weight"].view(shape) / torch.sqrt(bn["running_var"].view(shape) + eps)
    return (x - bn["running_mean"].view(shape)) * scale + bn["bias"].view(shape)


def naive_eca(x: Tensor, kernel: Tensor) -> Tensor:
    """Each channel's weight from its k neighbours' means, zero outside the channel range."""
    means = x.flatten(2).mean(2)
    k = kernel.numel()
    padded = F.pad(means, ((k - 1) // 2, (k - 1) // 2))
    logits = sum(kernel.flatten()[j] * padded[:, j:j + means.shape[1]] for j in range(k))
    return x * torch.sigmoid(logits).view(*means.shape, *(1,) * (x.dim() - 2))


def naive_simam(x: Tensor, e_lambda: float) -> Tensor:
    flat = x.flatten(2)
    variance = flat.var(2, unbiased=True).view(*x.shape[:2], *(1,) * (x.dim() - 2))
    energy = (x - flat.mean(2).view_as(variance)) ** 2 / (4 * (variance + e_lambda)) + 0.5
    return x * torch.sigmoid(energy)


def _layer_norm(z: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    mean = z.mean(1, keepdim=True)
    variance = ((z - mean) ** 2).mean(1, keepdim=True)
    return (z - mean) / torch.sqrt(variance + eps) * weight.flatten() + bias.flatten()


def _transform(context: Tensor, p: dict, prefix: str) -> Tensor:
    w1, w2 = p[f"{prefix}.0.weight"].flatten(1), p[f"{prefix}.3.weight"].flatten(1)
    hidden = context @ w1.T + p[f"{prefix}.0.bias"]
    hidden = torch.relu(_layer_norm(hidden, p[f"{prefix}.1.weight"], p[f"{prefix}.1.bias"]))
    return hidden @ w2.T + p[f"{prefix}.3.bias"]


def naive_global_context(x: Tensor, p: dict, pooling: str, fusion: tuple[str, ...]) -> Tensor:
    flat = x.flatten(2)
    if pooling == "att":
        logits = torch.einsum("c,ncs->ns", p["conv_mask.weight"].flatten(), flat) + p["conv_mask.bias"]
        context = torch.einsum("ncs,ns->nc", flat, torch.softmax(logits, 1))
    else:
        context = flat.mean(2)
    shape = (*x.shape[:2], *(1,) * (x.dim() - 2))
    out = x
    if "mul" in fusion:
        out = out * torch.sigmoid(_transform(context, p, "channel_mul_conv")).view(shape)
    if "add" in fusion:
        out = out + _transform(context, p, "channel_add_conv").view(shape)
    return out


def naive_scse(x: Tensor, p: dict, combine: str) -> Tensor:
    means = x.flatten(2).mean(2)
    hidden = torch.relu(means @ p["cSE.fc1.weight"].T + p["cSE.fc1.bias"])
    channel = torch.sigmoid(hidden @ p["cSE.fc2.weight"].T + p["cSE.fc2.bias"])
    spatial = torch.sigmoid(torch.einsum("c,nc...->n...", p["sSE.conv.weight"].flatten(), x) + p["sSE.conv.bias"])
    by_channel = x * channel.view(*channel.shape, *(1,) * (x.dim() - 2))
    by_position = x * spatial.unsqueeze(1)
    return torch.maximum(by_channel, by_position) if combine == "max" else by_channel + by_position


def naive_coordinate(x: Tensor, p: dict, names: tuple[str, ...] = ("conv_h", "conv_w")) -> Tensor:
    """A profile per spatial axis (the mean over the others), one gate per axis: ``x · a_1 · a_2 (· a_3)``."""
    axes = range(2, x.dim())
    profiles = [x.mean(tuple(other for other in axes if other != axis)) for axis in axes]
    z = torch.einsum("mc,ncl->nml", p["conv1.weight"].flatten(1), torch.cat(profiles, 2)) + p["conv1.bias"].view(1, -1, 1)
    z = batch_norm_eval(z, {k[4:]: v for k, v in p.items() if k.startswith("bn1.")})
    z = z * torch.clamp(z + 3, 0, 6) / 6
    out, start = x, 0
    for index, (name, profile) in enumerate(zip(names, profiles)):
        part = z[..., start:start + profile.shape[-1]]
        start += profile.shape[-1]
        gate = torch.sigmoid(torch.einsum("cm,nml->ncl", p[f"{name}.weight"].flatten(1), part) +
                             p[f"{name}.bias"].view(1, -1, 1))
        shape = [*x.shape[:2]] + [1] * (x.dim() - 2)
        shape[2 + index] = profile.shape[-1]
        out = out * gate.view(shape)
    return out


def _z_pool_gate(t: Tensor, p: dict, prefix: str) -> Tensor:
    pooled = torch.stack([t.max(1).values, t.mean(1)], 1)
    logits = F.conv2d(pooled, p[f"{prefix}.conv.weight"], padding=p[f"{prefix}.conv.weight"].shape[-1] // 2)
    return t * torch.sigmoid(batch_norm_eval(logits, {k[len(prefix) + 4:]: v for k, v in p.items()
                                                       if k.startswith(f"{prefix}.bn.")}))


def naive_triplet(x: Tensor, p: dict, spatial: bool = True) -> Tensor:
    """Branches over the C–W, H–C and H–W planes (plugattn's key names), averaged."""
    cw = _z_pool_gate(x.permute(0, 2, 1, 3), p, "cw.spatial").permute(0, 2, 1, 3)
    hc = _z_pool_gate(x.permute(0, 3, 2, 1), p, "hc.spatial").permute(0, 3, 2, 1)
    if not spatial:
        return (cw + hc) / 2
    return (cw + hc + _z_pool_gate(x, p, "hw.spatial")) / 3


def naive_bam(x: Tensor, p: dict, combine: str) -> Tensor:
    """2-D, dilation 4, two dilated convolutions."""
    c = "channel_att.gate_c."
    hidden = x.mean((2, 3)) @ p[f"{c}gate_c_fc_0.weight"].T + p[f"{c}gate_c_fc_0.bias"]
    hidden = torch.relu(batch_norm_eval(hidden, {k[len(c) + 12:]: v for k, v in p.items()
                                                 if k.startswith(f"{c}gate_c_bn_1.")}))
    channel = (hidden @ p[f"{c}gate_c_fc_final.weight"].T + p[f"{c}gate_c_fc_final.bias"])[..., None, None]
    s = "spatial_att.gate_s."

    def conv_bn_relu(z: Tensor, conv: str, bn: str, dilation: int) -> Tensor:
        z = F.conv2d(z, p[f"{s}{conv}.weight"], p[f"{s}{conv}.bias"], padding=dilation if dilation > 1 else 0,
                     dilation=dilation)
        return torch.relu(batch_norm_eval(z, {k[len(s) + len(bn) + 1:]: v for k, v in p.items()
                                              if k.startswith(f"{s}{bn}.")}))

    z = conv_bn_relu(x, "gate_s_conv_reduce0", "gate_s_bn_reduce0", 1)
    z = conv_bn_relu(z, "gate_s_conv_di_0", "gate_s_bn_di_0", 4)
    z = conv_bn_relu(z, "gate_s_conv_di_1", "gate_s_bn_di_1", 4)
    spatial = F.conv2d(z, p[f"{s}gate_s_conv_final.weight"], p[f"{s}gate_s_conv_final.bias"])
    logits = channel + spatial if combine == "sum" else channel * spatial
    return x * (1 + torch.sigmoid(logits))


# ---------------------------------------------------------------- the official code's structure


class OfficialECA(nn.Module):
    """BangguWu/ECANet ``eca_module.eca_layer``."""

    def __init__(self, k_size: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y).expand_as(x)


class OfficialSimAM(nn.Module):
    """ZjjConan/SimAM ``simam_module``."""

    def __init__(self, e_lambda: float = 1e-4) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.size()
        n = w * h - 1
        d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(y)


class OfficialContextBlock(nn.Module):
    """xvjiarui/GCNet ``mmdet/ops/gcb/context_block.ContextBlock``."""

    def __init__(self, inplanes: int, ratio: float, pooling_type: str = "att",
                 fusion_types: tuple[str, ...] = ("channel_add",)) -> None:
        super().__init__()
        self.planes = int(inplanes * ratio)
        self.pooling_type = pooling_type
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
        make = lambda: nn.Sequential(nn.Conv2d(inplanes, self.planes, 1), nn.LayerNorm([self.planes, 1, 1]),  # noqa: E731
                                     nn.ReLU(inplace=True), nn.Conv2d(self.planes, inplanes, 1))
        self.channel_add_conv = make() if "channel_add" in fusion_types else None
        self.channel_mul_conv = make() if "channel_mul" in fusion_types else None

    def forward(self, x: Tensor) -> Tensor:
        batch, channel, height, width = x.size()
        if self.pooling_type == "att":
            input_x = x.view(batch, channel, height * width).unsqueeze(1)
            mask = torch.softmax(self.conv_mask(x).view(batch, 1, height * width), dim=2).unsqueeze(-1)
            context = torch.matmul(input_x, mask).view(batch, channel, 1, 1)
        else:
            context = F.adaptive_avg_pool2d(x, 1)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


class _AiMedChannelSE(nn.Module):
    def __init__(self, num_channels: int, reduction_ratio: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(num_channels, num_channels // reduction_ratio, bias=True)
        self.fc2 = nn.Linear(num_channels // reduction_ratio, num_channels, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        squeezed = x.view(b, c, -1).mean(dim=2)
        return torch.mul(x, torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed)))).view(b, c, 1, 1))


class _AiMedSpatialSE(nn.Module):
    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.mul(x, torch.sigmoid(self.conv(x)))


class OfficialSCSE(nn.Module):
    """ai-med ``squeeze_and_excitation.ChannelSpatialSELayer`` (max of the two, reduction 2)."""

    def __init__(self, num_channels: int, reduction_ratio: int = 2) -> None:
        super().__init__()
        self.cSE = _AiMedChannelSE(num_channels, reduction_ratio)
        self.sSE = _AiMedSpatialSE(num_channels)

    def forward(self, x: Tensor) -> Tensor:
        return torch.max(self.cSE(x), self.sSE(x))


class SmpSCSE(nn.Module):
    """segmentation_models.pytorch ``SCSEModule`` (sum of the two, reduction 16, 1×1 convolutions)."""

    def __init__(self, in_channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.cSE = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, in_channels // reduction, 1),
                                 nn.ReLU(inplace=True), nn.Conv2d(in_channels // reduction, in_channels, 1),
                                 nn.Sigmoid())
        self.sSE = nn.Sequential(nn.Conv2d(in_channels, 1, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.cSE(x) + x * self.sSE(x)


class _HSwish(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * F.relu6(x + 3) / 6


class OfficialCoordAtt(nn.Module):
    """houqb/CoordAttention ``coordatt.CoordAtt`` (``output_names=("conv_h", "conv_w")``) or ``mbv2_ca.CoordAtt``
    (``("conv2", "conv3")``)."""

    def __init__(self, inp: int, reduction: int = 32, output_names: tuple[str, str] = ("conv_h", "conv_w")) -> None:
        super().__init__()
        mip = max(8, inp // reduction)
        self.names = output_names
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = _HSwish()
        for name in output_names:
            setattr(self, name, nn.Conv2d(mip, inp, kernel_size=1, stride=1, padding=0))

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.size()
        x_h = F.adaptive_avg_pool2d(x, (None, 1))
        x_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)
        y = self.act(self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2))))
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = getattr(self, self.names[0])(x_h).sigmoid()
        a_w = getattr(self, self.names[1])(x_w).sigmoid()
        return x * a_w * a_h


class _BasicConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, stride=1, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class _AttentionGate(nn.Module):
    def __init__(self, inner: str) -> None:
        super().__init__()
        setattr(self, inner, _BasicConv())
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(getattr(self, self.inner)(pooled))


class OfficialTriplet(nn.Module):
    """landskape-ai/triplet-attention: ``layout="current"`` (``triplet_attention.py``: cw/hc/hw, ``conv.conv``) or
    ``"models"`` (``MODELS/triplet_attention.py``: ChannelGateH/ChannelGateW/SpatialGate, ``spatial.conv``)."""

    def __init__(self, layout: str = "current") -> None:
        super().__init__()
        self.names = ("cw", "hc", "hw") if layout == "current" else ("ChannelGateH", "ChannelGateW", "SpatialGate")
        inner = "conv" if layout == "current" else "spatial"
        for name in self.names:
            setattr(self, name, _AttentionGate(inner))

    def forward(self, x: Tensor) -> Tensor:
        first, second, third = (getattr(self, name) for name in self.names)
        out1 = first(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3).contiguous()
        out2 = second(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1).contiguous()
        return 1 / 3 * (third(x) + out1 + out2)


class OfficialBAM(nn.Module):
    """Jongchan/attention-module ``MODELS/bam.BAM`` (product of the branches; the channel branch pools with a
    square window of the map's height)."""

    def __init__(self, gate_channel: int, reduction_ratio: int = 16) -> None:
        super().__init__()
        hidden = gate_channel // reduction_ratio
        self.channel_att = nn.Module()
        self.channel_att.gate_c = nn.Sequential()
        self.channel_att.gate_c.add_module("flatten", nn.Flatten())
        self.channel_att.gate_c.add_module("gate_c_fc_0", nn.Linear(gate_channel, hidden))
        self.channel_att.gate_c.add_module("gate_c_bn_1", nn.BatchNorm1d(hidden))
        self.channel_att.gate_c.add_module("gate_c_relu_1", nn.ReLU())
        self.channel_att.gate_c.add_module("gate_c_fc_final", nn.Linear(hidden, gate_channel))
        self.spatial_att = nn.Module()
        gate = nn.Sequential()
        gate.add_module("gate_s_conv_reduce0", nn.Conv2d(gate_channel, hidden, kernel_size=1))
        gate.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        gate.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(2):
            gate.add_module(f"gate_s_conv_di_{i}", nn.Conv2d(hidden, hidden, kernel_size=3, padding=4, dilation=4))
            gate.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            gate.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        gate.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1))
        self.spatial_att.gate_s = gate

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.avg_pool2d(x, x.size(2), stride=x.size(2))
        channel = self.channel_att.gate_c(pooled).unsqueeze(2).unsqueeze(3).expand_as(x)
        spatial = self.spatial_att.gate_s(x).expand_as(x)
        return (1 + torch.sigmoid(channel * spatial)) * x


def randomise(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Every parameter and BatchNorm statistic drawn at random (variances positive), so no term is trivially 0 or 1."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator, dtype=torch.float64) * 0.5
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            tensor.copy_(values.to(tensor.dtype))
    return module


def kernel_size_by_hand(channels: int) -> int:
    """The ECA paper's rule as its text states it, computed the long way."""
    t = math.floor(abs((math.log(channels) / math.log(2) + 1) / 2))
    return t + 1 - t % 2
