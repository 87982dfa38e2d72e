"""Cost of a module: parameters and multiply-accumulates (the SE/CBAM papers' "FLOPs")."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module) -> int:
    """Number of trainable and frozen parameters (buffers such as BatchNorm statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, *inputs: Tensor) -> int:
    """Multiply-accumulates of one forward pass, counting matrix products and convolutions only —
    the convention of the SE and CBAM papers' GFLOPs. ``torch.utils.flop_counter`` counts 2 FLOPs per MAC."""
    counter = FlopCounterMode(display=False)
    with counter:
        module(*inputs)
    return counter.get_total_flops() // 2
