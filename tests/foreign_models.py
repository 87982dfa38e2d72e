"""Independent re-implementations of the foreign architectures whose weights plugattn loads, written from the
structure of each project's published model code (module names, strides, stems, shortcuts, SE widths) —
not from plugattn's models or its key mapping. Their state dicts are what those projects' checkpoints hold."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every floating tensor of the state dict random (BatchNorm statistics included), eval mode; scaled so that
    activations stay of order one through a deep net (a float32 comparison then measures the architecture,
    not the amplified rounding of exploding activations)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(noise.abs() * 0.2 + 0.9)
            elif name.endswith("running_mean") or (tensor.dim() == 1 and name.endswith("bias")):
                tensor.copy_(noise * 0.1)
            elif tensor.dim() == 1:
                tensor.copy_(noise * 0.1 + 0.5)
            else:
                tensor.copy_(noise * math.sqrt(1.0 / max(1, tensor[0].numel())))
    return model.eval()


# ---------------------------------------------------------------- Cadene/pretrained-models.pytorch, senet.py


class CadeneSEModule(nn.Module):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class CadeneBottleneck(nn.Module):
    """SEResNetBottleneck (``resnext=False``: stride in conv1) or SEResNeXtBottleneck (stride in conv2, width
    ``floor(planes * base_width / 64) * groups``)."""

    expansion = 4

    def __init__(self, inplanes, planes, groups, reduction, stride=1, downsample=None, resnext=False, base_width=4):
        super().__init__()
        width = math.floor(planes * (base_width / 64)) * groups if resnext else planes
        self.conv1 = nn.Conv2d(inplanes, width, kernel_size=1, bias=False, stride=1 if resnext else stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride if resnext else 1, padding=1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.se_module = CadeneSEModule(planes * 4, reduction=reduction)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se_module(self.bn3(self.conv3(out)))
        return self.relu(out + residual)


class CadeneSENet(nn.Module):
    """SENet(block, layers, groups, reduction=16, inplanes=64, input_3x3=False, downsample_kernel_size=1,
    downsample_padding=0): ``se_resnet50`` (groups 1) and ``se_resnext50_32x4d`` (groups 32)."""

    def __init__(self, layers=(3, 4, 6, 3), groups=1, resnext=False, reduction=16, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.layer0 = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("bn1", nn.BatchNorm2d(64)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ]))
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
            stride = 1 if index == 1 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride,
                                                     padding=0, bias=False), nn.BatchNorm2d(planes * 4))
            units = [CadeneBottleneck(self.inplanes, planes, groups, reduction, stride, downsample, resnext)]
            self.inplanes = planes * 4
            units += [CadeneBottleneck(self.inplanes, planes, groups, reduction, resnext=resnext) for _ in range(1, blocks)]
            self.add_module(f"layer{index}", nn.Sequential(*units))
        self.avg_pool = nn.AvgPool2d(7, stride=1)
        self.last_linear = nn.Linear(512 * 4, num_classes)

    def forward(self, x):
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.layer0(x)))))
        return self.last_linear(self.avg_pool(x).view(x.size(0), -1))


# ---------------------------------------------------------------- Jongchan/attention-module (CBAM, BAM)


class OfficialBasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, padding):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=1, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class OfficialChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max")):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(gate_channels, gate_channels // reduction_ratio), nn.ReLU(),
                                 nn.Linear(gate_channels // reduction_ratio, gate_channels))
        self.pool_types = pool_types

    def forward(self, x):
        total = None
        for pool_type in self.pool_types:
            window = (x.size(2), x.size(3))
            pooled = F.avg_pool2d(x, window, stride=window) if pool_type == "avg" else F.max_pool2d(x, window, stride=window)
            raw = self.mlp(pooled)
            total = raw if total is None else total + raw
        return x * torch.sigmoid(total).unsqueeze(2).unsqueeze(3).expand_as(x)


class OfficialSpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = OfficialBasicConv(2, 1, 7, padding=3)

    def forward(self, x):
        compressed = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(self.spatial(compressed))


class OfficialCBAM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16):
        super().__init__()
        self.ChannelGate = OfficialChannelGate(gate_channels, reduction_ratio)
        self.SpatialGate = OfficialSpatialGate()

    def forward(self, x):
        return self.SpatialGate(self.ChannelGate(x))


class OfficialBottleneck(nn.Module):
    """MODELS/model_resnet.py Bottleneck (the stride sits in conv2: ResNet v1.5), with the attention of the official
    code named ``attention`` after bn3: CBAM (``cbam``), ECANet's ``eca_layer`` (``eca``, kernel ``k``) or Triplet
    attention's ``MODELS/triplet_attention.py`` (``triplet_attention``)."""

    def __init__(self, inplanes, planes, stride=1, downsample=None, attention="CBAM", k=3):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.name = {"CBAM": "cbam", "ECA": "eca", "Triplet": "triplet_attention"}.get(attention)
        if attention == "CBAM":
            self.cbam = OfficialCBAM(planes * 4, 16)
        elif attention in ("ECA", "Triplet"):
            from tests.blocks.family_references import OfficialECA, OfficialTriplet

            setattr(self, self.name, OfficialECA(k) if attention == "ECA" else OfficialTriplet("models"))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.name is not None:
            out = getattr(self, self.name)(out)
        return self.relu(out + residual)


class OfficialResidualNet(nn.Module):
    """ResidualNet('ImageNet', 50, num_classes, att_type): 7×7 stem, MaxPool2d(3, 2, 1), Bottleneck units, with a
    CBAM (``"CBAM"``), an ECA (``"ECA"``, ECANet's ``eca_resnet50``: k = 3, 5, 5, 7 per stage) or a Triplet
    attention (``"Triplet"``) in every unit, or a BAM after each of layer1–3 (``"BAM"``: ``bam1``…``bam3``).
    ECANet's and Triplet attention's ResNets are this network with their block (their files differ only in names)."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes=1000, att_type="CBAM"):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        unit_attention = None if att_type == "BAM" else att_type
        for index, (planes, blocks, k) in enumerate(zip((64, 128, 256, 512), layers, (3, 5, 5, 7)), start=1):
            stride = 1 if index == 1 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes * 4:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                                           nn.BatchNorm2d(planes * 4))
            units = [OfficialBottleneck(self.inplanes, planes, stride, downsample, unit_attention, k)]
            self.inplanes = planes * 4
            units += [OfficialBottleneck(self.inplanes, planes, attention=unit_attention, k=k) for _ in range(1, blocks)]
            self.add_module(f"layer{index}", nn.Sequential(*units))
        self.bams = att_type == "BAM"
        if self.bams:
            from tests.blocks.family_references import OfficialBAM

            self.bam1, self.bam2, self.bam3 = OfficialBAM(256), OfficialBAM(512), OfficialBAM(1024)
        self.avgpool = nn.AvgPool2d(7)
        self.fc = nn.Linear(512 * 4, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in (1, 2, 3):
            x = getattr(self, f"layer{index}")(x)
            if self.bams:
                x = getattr(self, f"bam{index}")(x)
        x = self.layer4(x)
        return self.fc(self.avgpool(x).view(x.size(0), -1))


# ---------------------------------------------------------------- moskomule/senet.pytorch, CIFAR SE-ResNets


class SenetSELayer(nn.Module):
    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        return x * self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1).expand_as(x)


class SenetCifarBlock(nn.Module):
    """CifarSEBasicBlock: a 1×1 conv + BN projection wherever the channel count changes."""

    def __init__(self, inplanes, planes, stride=1, reduction=16):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SenetSELayer(planes, reduction)
        self.downsample = None
        if inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + residual)


class SenetCifarResNet(nn.Module):
    """CifarSEResNet(CifarSEBasicBlock, n_size): se_resnet20 is n_size 3."""

    def __init__(self, n_size=3, num_classes=10, reduction=16):
        super().__init__()
        self.inplane = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        for index, (planes, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            units = []
            for unit_stride in [stride] + [1] * (n_size - 1):
                units.append(SenetCifarBlock(self.inplane, planes, unit_stride, reduction))
                self.inplane = planes
            self.add_module(f"layer{index}", nn.Sequential(*units))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).view(x.size(0), -1))


def senet_imagenet_se_resnet50() -> nn.Module:
    """senet.pytorch's ``se_resnet50``: torchvision's ResNet with SEBottleneck units (stride in conv2) whose
    ``se`` is the bias-free SELayer."""
    import torchvision

    model = torchvision.models.resnet50()
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for unit in stage:
            unit.se = SenetSELayer(unit.bn3.num_features, 16)
            unit.forward = _se_bottleneck_forward.__get__(unit)
    return model


def _se_bottleneck_forward(self, x):
    residual = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.se(self.bn3(self.conv3(out)))
    return self.relu(out + residual)


# ---------------------------------------------------------------- houqb/CoordAttention mbv2_ca.py, rewritten from its structure


class OfficialCoordAtt(nn.Module):
    """Coordinate attention as mbv2_ca.py builds it: conv1/bn1 shared, conv2 (H) and conv3 (W), h-swish."""

    def __init__(self, channels, groups=32):
        super().__init__()
        hidden = max(8, channels // groups)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 1)
        self.conv3 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x):
        h, w = x.shape[2:]
        pooled = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2)
        y = self.bn1(self.conv1(pooled))
        y = y * torch.clamp(y + 3, 0, 6) / 6
        along_h, along_w = y[:, :, :h], y[:, :, h:].transpose(2, 3)
        return x * torch.sigmoid(self.conv3(along_w)) * torch.sigmoid(self.conv2(along_h))


class OfficialInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expansion):
        super().__init__()
        hidden = round(inp * expansion)
        self.residual = stride == 1 and inp == oup
        depthwise = [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                     nn.ReLU6()]
        linear = [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        if expansion == 1:
            self.conv = nn.Sequential(*depthwise, *linear)
        else:
            expand = [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
            self.conv = nn.Sequential(*expand, *depthwise, OfficialCoordAtt(hidden), *linear)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class OfficialMobileNetV2CA(nn.Module):
    """MBV2_CA of mbv2_ca.py (width 1.0): features (stem + 17 inverted residuals), conv (1×1 to 1280), classifier."""

    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        channels = 32
        for expansion, width, repeats, stride in self.SETTINGS:
            for index in range(repeats):
                layers.append(OfficialInvertedResidual(channels, width, stride if index == 0 else 1, expansion))
                channels = width
        self.features = nn.Sequential(*layers)
        self.conv = nn.Sequential(nn.Conv2d(channels, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.conv(self.features(x)).mean((2, 3)))
