"""The model zoo: ImageNet- and CIFAR-style residual networks with attention at any position."""

from plugattn.models.cifar import CifarBasicBlock, CifarResNet, PreActBottleneck, WideBasicBlock
from plugattn.models.resnet import BasicBlock, Bottleneck, ResNet
from plugattn.models.units import POSITIONS, ResidualUnit
from plugattn.models.zoo import (
    MODELS,
    create_model,
    list_models,
    load_backbone_state_dict,
    model_entry,
)

__all__ = [
    "MODELS",
    "POSITIONS",
    "BasicBlock",
    "Bottleneck",
    "CifarBasicBlock",
    "CifarResNet",
    "PreActBottleneck",
    "ResNet",
    "ResidualUnit",
    "WideBasicBlock",
    "create_model",
    "list_models",
    "load_backbone_state_dict",
    "model_entry",
]
