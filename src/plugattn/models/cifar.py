"""CIFAR-style networks for 32×32 inputs: He et al.'s ResNet-20…110 (identity shortcuts with zero
padding, "option A"), the pre-activation ResNet-164 (He et al., ECCV 2016) and WRN-16-8 (Zagoruyko &
Komodakis, 2016). Three stages; a 3×3 stem; global average pooling and a linear classifier.

The ResNet-20…110 shortcut is He et al.'s option A by default; ``shortcut="B"`` projects with a 1×1
convolution and BatchNorm where the shape changes (senet.pytorch's CIFAR SE-ResNets)."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from plugattn.blocks._checks import require_choice
from plugattn.models.head import ClassifierHead
from plugattn.models.resnet import conv1x1, conv3x3, initialise_resnet
from plugattn.models.units import AttentionBuilder, PostActivationUnit, ResidualUnit


class PadShortcut(nn.Module):
    """He et al.'s option A: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra = out_planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


SHORTCUTS = ("A", "B")


class CifarBasicBlock(PostActivationUnit):
    """Two 3×3 convolutions, post-activation; option-A (zero-padding) or option-B (1×1 conv + BN projection)
    shortcut where the shape changes (ResNet-20…110)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A") -> None:
        super().__init__(in_planes, planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = PadShortcut(in_planes, planes, stride) if shortcut == "A" else nn.Sequential(
                conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))

    def branch_body(self, x: Tensor) -> Tensor:
        return self.conv2(self.relu(self.bn1(self.conv1(x))))

    def normalize_branch(self, x: Tensor) -> Tensor:
        return self.bn2(x)

    def branch(self, x: Tensor) -> Tensor:
        return self.bn2(self.branch_body(x))


class _PreActivationUnit(ResidualUnit):
    """``branch(relu(bn1(x))) + shortcut``: the shortcut projection, where there is one, reads the
    pre-activated input, as in the reference implementations; no activation after the addition."""


    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        activated = self.relu(self.bn1(x))
        return activated, (x if self.downsample is None else activated)

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)

    def activate(self, summed: Tensor) -> Tensor:
        return summed


class PreActBottleneck(_PreActivationUnit):
    """BN-ReLU-1×1, BN-ReLU-3×3, BN-ReLU-1×1 ×4 (ResNet-164); 1×1 projection when the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__(in_planes, planes * self.expansion)
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, out_planes)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = conv1x1(in_planes, out_planes, stride) if stride != 1 or in_planes != out_planes else None

    def branch(self, x: Tensor) -> Tensor:
        out = self.conv1(x)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))


class WideBasicBlock(_PreActivationUnit):
    """BN-ReLU-3×3, BN-ReLU-(dropout)-3×3 (WRN); 1×1 projection when the shape changes."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = conv1x1(in_planes, planes, stride) if stride != 1 or in_planes != planes else None

    def branch(self, x: Tensor) -> Tensor:
        return self.conv2(self.dropout(self.relu(self.bn2(self.conv1(x)))))


class CifarResNet(ClassifierHead):
    """3×3 stem with ``stem_width`` channels, three stages of ``depth_per_stage`` units of widths
    ``widths``, (for pre-activation nets a final BN-ReLU), global average pooling, linear classifier.

    The layers run in the order they are registered (stem BN and ReLU are identities in pre-activation nets,
    the final ones in post-activation nets), so feature extractors that walk the children see the forward."""

    def __init__(
        self,
        block: type[CifarBasicBlock] | type[PreActBottleneck] | type[WideBasicBlock],
        depth_per_stage: int,
        *,
        widths: Sequence[int] = (16, 32, 64),
        stem_width: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        attention: AttentionBuilder | None = None,
        position: str = "standard",
        stages: Sequence[int] | None = None,
        shortcut: str = "A",
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        pre_activation = issubclass(block, _PreActivationUnit)
        self.shortcut = require_choice("shortcut", shortcut, SHORTCUTS)
        if shortcut != "A" and block is not CifarBasicBlock:
            raise ValueError(f"shortcut={shortcut!r} applies to the ResNet-20…110 units only; {block.__name__} "
                             "always projects with a 1×1 convolution")
        self.conv1 = conv3x3(in_channels, stem_width)
        self.bn1 = nn.Identity() if pre_activation else nn.BatchNorm2d(stem_width)
        self.relu = nn.Identity() if pre_activation else nn.ReLU(inplace=True)
        in_planes = stem_width
        self.feature_info = [dict(num_chs=stem_width, reduction=1, module="relu")]
        for index, planes in enumerate(widths, start=1):
            units = []
            for unit_index in range(depth_per_stage):
                stride = 2 if index > 1 and unit_index == 0 else 1
                unit = block(in_planes, planes, stride, shortcut) if block is CifarBasicBlock else block(in_planes, planes, stride)
                if attention is not None and (stages is None or index in stages):
                    unit.add_attention(attention, position)
                units.append(unit)
                in_planes = planes * block.expansion
            self.add_module(f"layer{index}", nn.Sequential(*units))
            self.feature_info.append(dict(num_chs=in_planes, reduction=2 ** (index - 1), module=f"layer{index}"))
        self.final_bn = nn.BatchNorm2d(in_planes) if pre_activation else nn.Identity()
        self.final_relu = nn.ReLU(inplace=False) if pre_activation else nn.Identity()
        if pre_activation:  # the last stage's maps are only final after the closing BN-ReLU
            self.feature_info[-1] = dict(num_chs=in_planes, reduction=2 ** (len(widths) - 1), module="final_relu")
        self.pre_activation = pre_activation
        self.init_head(in_planes, num_classes, global_pool)
        initialise_resnet(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's maps (after the closing BN-ReLU of pre-activation nets), unpooled."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.final_relu(self.final_bn(x))
