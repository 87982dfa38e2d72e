"""The attention blocks (SE, CBAM and their gates), the name → block registry, and the fusion blocks that attend
across modalities (MMTM, SE-sum, gated sum, concatenation + any block)."""

from plugattn.blocks.cbam import CBAM, ORDERS, ChannelGate, ConvBN, SpatialGate
from plugattn.blocks.gate import GATE_FUNCTIONS, GateActivation, find_gates
from plugattn.blocks.identity import INITS, IdentityStart, with_init
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

__all__ = [
    "CBAM",
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
]
