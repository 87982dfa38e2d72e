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

__version__ = "0.1.0"

__all__ = [
    "CBAM",
    "ChannelGate",
    "SpatialGate",
    "SqueezeExcite",
    "__version__",
    "attention_options",
    "create_attention",
    "list_attention",
    "register_attention",
]
