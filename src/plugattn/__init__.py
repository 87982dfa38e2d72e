"""plugattn: plug-and-play channel and spatial attention (Squeeze-and-Excitation, CBAM) for PyTorch."""

from plugattn.blocks import (
    CBAM,
    ChannelGate,
    SpatialGate,
    SqueezeExcite,
    attention_options,
    create_attention,
    list_attention,
    register_attention,
)
from plugattn.insertion import (
    InsertionPoint,
    attach,
    attached_blocks,
    detach,
    insertion_points,
    register_residual_unit,
)
from plugattn.inspection import AttentionCapture, capture, visualise
from plugattn.models import create_model, list_models, load_backbone_state_dict, without_attention
from plugattn.profiling import ProfileReport, count_macs, count_parameters, profile

__version__ = "0.1.0"

__all__ = [
    "AttentionCapture",
    "CBAM",
    "ChannelGate",
    "InsertionPoint",
    "SpatialGate",
    "ProfileReport",
    "SqueezeExcite",
    "__version__",
    "attach",
    "attached_blocks",
    "attention_options",
    "capture",
    "count_macs",
    "count_parameters",
    "create_attention",
    "create_model",
    "detach",
    "insertion_points",
    "list_attention",
    "list_models",
    "load_backbone_state_dict",
    "profile",
    "register_attention",
    "register_residual_unit",
    "visualise",
    "without_attention",
]
