"""ImageNet-style ResNet, ResNeXt and wide ResNet with torchvision's parameter names.

``stride_in_1x1=False`` is ResNet v1.5 (torchvision: the stride-2 of a stage's first bottleneck sits in
the 3×3 conv, so torchvision's ImageNet weights load); ``True`` is ResNet v1 (stride in the first 1×1
conv), the architecture whose multiply-accumulates the SE and CBAM papers report.

``stem_pool`` is the max pool after the 7×7 stem: ``"pad"`` (``MaxPool2d(3, 2, padding=1)``: torchvision,
timm, the official CBAM code, senet.pytorch) or ``"ceil"`` (``MaxPool2d(3, 2, padding=0, ceil_mode=True)``:
Cadene's ``pretrainedmodels`` SENets). Both give 56×56 from 224×224, with different values.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from plugattn.blocks import SpatialGate
from plugattn.blocks._checks import require_choice
from plugattn.models.head import ClassifierHead
from plugattn.models.units import AttentionBuilder, PostActivationUnit, ResidualUnit


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(PostActivationUnit):
    """Two 3×3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False,
    ) -> None:
        super().__init__(inplanes, planes)
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports groups=1 and base_width=64 only, got {groups} and {base_width}")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def branch_body(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.bn1(self.conv1(x))))

    def normalize_branch(self, x: Tensor) -> Tensor:
        return self.bn2(x)

    def branch(self, x: Tensor) -> Tensor:
        return self.bn2(self.branch_body(x))


class Bottleneck(PostActivationUnit):
    """1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand ×4 (ResNet-50/101/152, ResNeXt)."""

    expansion = 4
    final_norm = "bn3"

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
        groups: int = 1, base_width: int = 64, stride_in_1x1: bool = False,
    ) -> None:
        super().__init__(inplanes, planes * self.expansion)
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, 1 if stride_in_1x1 else stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def branch_body(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.conv3(self.relu(self.bn2(self.conv2(out))))

    def normalize_branch(self, x: Tensor) -> Tensor:
        return self.bn3(x)

    def branch(self, x: Tensor) -> Tensor:
        return self.bn3(self.branch_body(x))


STEM_POOLS = {
    "pad": lambda: nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    "ceil": lambda: nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True),
}


class ResNet(ClassifierHead):
    """ResNet for 224×224 inputs: 7×7 stem, max pool, four stages, global average pool, linear classifier.

    ``widths`` are the stages' ``planes`` (64, 128, 256, 512 for the standard nets; the CBAM paper's wide
    ResNet-18 scales them). ``attention`` builds a block per residual unit of the ``stages`` chosen
    (1-based; None = all) at ``position``.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        widths: Sequence[int] = (64, 128, 256, 512),
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        in_channels: int = 3,
        attention: AttentionBuilder | None = None,
        position: str = "standard",
        stages: Sequence[int] | None = None,
        zero_init_residual: bool = False,
        stem_pool: str = "pad",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        self.stem_pool = require_choice("stem_pool", stem_pool, tuple(STEM_POOLS))
        self.stride_in_1x1 = stride_in_1x1
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = STEM_POOLS[stem_pool]()
        for index, (planes, blocks) in enumerate(zip(widths, layers), start=1):
            units = []
            for unit_index in range(blocks):
                stride = 2 if index > 1 and unit_index == 0 else 1
                downsample = None
                if stride != 1 or self.inplanes != planes * block.expansion:
                    downsample = nn.Sequential(
                        conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
                    )
                unit = block(self.inplanes, planes, stride, downsample, groups, width_per_group, stride_in_1x1)
                if attention is not None and (stages is None or index in stages):
                    unit.add_attention(attention, position)
                units.append(unit)
                self.inplanes = planes * block.expansion
            self.add_module(f"layer{index}", nn.Sequential(*units))
        self.feature_info = [dict(num_chs=64, reduction=2, module="relu")] + [
            dict(num_chs=planes * block.expansion, reduction=4 * 2 ** (index - 1), module=f"layer{index}")
            for index, planes in enumerate(widths, start=1)
        ]
        self.init_head(self.inplanes, num_classes, global_pool)
        initialise_resnet(self, zero_init_residual)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's maps, unpooled (N, num_features, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def initialise_resnet(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation (Kaiming fan-out convolutions, unit BatchNorms). Attention blocks
    keep their own initialisation, except that a spatial gate's BatchNorm scale starts at 0 (a flat 0.5
    map), as the official CBAM code initialises it and the official Triplet code its H–W branch (its C–W and H–C
    branches keep 1)."""
    inside_attention = {
        id(module)
        for unit in model.modules()
        if isinstance(unit, ResidualUnit) and unit.attention is not None
        for module in unit.attention.modules()
    }
    for module in model.modules():
        if isinstance(module, SpatialGate) and module.gate.kind == "spatial":  # not Triplet's rotated branches
            nn.init.zeros_(module.spatial.bn.weight)
        if id(module) in inside_attention:
            continue
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
        if zero_init_residual and isinstance(module, (BasicBlock, Bottleneck)):
            nn.init.zeros_((module.bn3 if isinstance(module, Bottleneck) else module.bn2).weight)
