"""The attention blocks (SE, CBAM and their gates; BAM, ECA, Coordinate Attention, SimAM, Triplet, GC, scSE), the
name → block registry, and the fusion blocks that attend
across modalities (MMTM, SE-sum, gated sum, concatenation + any block)."""

from plugattn.blocks.bam import BAM
from plugattn.blocks.cbam import CBAM, ORDERS, ChannelGate, ConvBN, SpatialGate
from plugattn.blocks.coordinate import CoordinateAttention
from plugattn.blocks.eca import ECA, eca_kernel_size
from plugattn.blocks.global_context import GlobalContext
from plugattn.blocks.scse import SCSE
from plugattn.blocks.simam import SimAM
from plugattn.blocks.triplet import TripletAttention
from plugattn.blocks.gate import GATE_FUNCTIONS, GateActivation, find_gates
from plugattn.blocks.identity import INITS, INSERTION_INIT, LEGACY_INSERTION_INIT, IdentityStart, with_init, zero_start
from plugattn.blocks.pooling import POOL_TYPES, global_pool
from plugattn.blocks.registry import (
    attention_options,
    create_attention,
    find_attention_blocks,
    is_attention_block,
    list_attention,
    register_attention,
)
from plugattn.blocks.squeeze_excite import SQUEEZES, SqueezeExcite
from plugattn.blocks.fusion import FUSIONS, MMTM, ConcatFusion, GatedSum, SESum, create_fusion, list_fusions

BLOCK_CLASSES = (SqueezeExcite, ChannelGate, SpatialGate, CBAM, BAM, ECA, CoordinateAttention, GlobalContext, SCSE,
                 SimAM, TripletAttention)
"""plugattn's attention block classes (what timm's FX tracing keeps as leaves)."""

__all__ = [
    "BLOCK_CLASSES",
    "BAM",
    "CBAM",
    "CoordinateAttention",
    "ECA",
    "GlobalContext",
    "SCSE",
    "SimAM",
    "TripletAttention",
    "eca_kernel_size",
    "FUSIONS",
    "MMTM",
    "ConcatFusion",
    "GatedSum",
    "SESum",
    "create_fusion",
    "list_fusions",
    "GATE_FUNCTIONS",
    "ORDERS",
    "POOL_TYPES",
    "SQUEEZES",
    "ChannelGate",
    "ConvBN",
    "GateActivation",
    "INITS",
    "INSERTION_INIT",
    "LEGACY_INSERTION_INIT",
    "IdentityStart",
    "SpatialGate",
    "SqueezeExcite",
    "attention_options",
    "create_attention",
    "find_attention_blocks",
    "find_gates",
    "global_pool",
    "is_attention_block",
    "list_attention",
    "register_attention",
    "with_init",
    "zero_start",
]
