"""plugattn: plug-and-play channel and spatial attention (Squeeze-and-Excitation, CBAM and the family after them:
BAM, ECA, Coordinate Attention, SimAM, Triplet, GC, scSE) for PyTorch.

``import plugattn`` loads the library only (blocks, insertion, models, interop, profiling, inspection); the
application — training, data, sweeps, pictures, the CLI — lives in its own modules (``plugattn.training``,
``plugattn.visualisation``, …) and needs the extras named in the README."""

from plugattn.blocks import (
    BAM,
    CBAM,
    ECA,
    SCSE,
    ChannelGate,
    CoordinateAttention,
    GlobalContext,
    SimAM,
    SpatialGate,
    SqueezeExcite,
    TripletAttention,
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
    stage_ends,
    without_attention,
)
from plugattn.export import export_onnx, script_model
from plugattn.interop import LoadReport, convert_state_dict, detect_layout, load_pretrained
from plugattn.inspection import AttentionCapture, capture
from plugattn.models import create_model, list_models, load_backbone_state_dict
from plugattn.inference import fold_batchnorm, optimize
from plugattn.fastpath import fast
from plugattn.compilation import compile
from plugattn.profiling import ProfileReport, count_macs, count_parameters, peak_memory, profile

__version__ = "0.2.0"
"""The version: its one source (the package metadata and the documentation read it)."""

__all__ = [
    "AttentionCapture",
    "BAM",
    "CBAM",
    "ChannelGate",
    "CoordinateAttention",
    "ECA",
    "GlobalContext",
    "SCSE",
    "SimAM",
    "TripletAttention",
    "InsertionPoint",
    "LoadReport",
    "SpatialGate",
    "ProfileReport",
    "SqueezeExcite",
    "__version__",
    "attach",
    "attached_blocks",
    "attention_options",
    "capture",
    "compile",
    "convert_state_dict",
    "count_macs",
    "count_parameters",
    "create_attention",
    "create_model",
    "detach",
    "detect_layout",
    "export_onnx",
    "fast",
    "fold_batchnorm",
    "insertion_points",
    "list_attention",
    "list_models",
    "load_pretrained",
    "load_backbone_state_dict",
    "optimize",
    "peak_memory",
    "profile",
    "register_attention",
    "register_residual_unit",
    "stage_ends",
    "script_model",
    "without_attention",
]
