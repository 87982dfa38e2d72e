"""Insert without forgetting: a block that starts as the exact identity.

``IdentityStart(block)`` computes ``x + α·(block(x) − x)`` with a learnable scalar ``α`` that starts at 0, so a
network that receives it computes exactly what it computed before; as ``α`` moves to 1 the block becomes
the papers' formulation. This is a deviation from the papers (which insert the block as it is: a sigmoid
gate near 0.5 halves the features of a trained network at step 0), selected with ``init="identity"``.
``α`` receives a gradient from the first step (``block(x) − x`` is not zero), the block's own parameters
from the step after.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import factory_like, require_choice

INITS = ("paper", "identity")


class IdentityStart(nn.Module):
    """``x + α·(block(x) − x)``, ``α`` a learnable scalar starting at 0 (``block`` under ``.block``)."""

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)``, as the blocks it wraps do."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        if not isinstance(block, nn.Module):
            raise TypeError(f"block must be an nn.Module, got {type(block).__name__}")
        self.block = block
        self.alpha = nn.Parameter(torch.zeros((), **factory_like(block)))

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        out = torch.lerp(x, self.block(x), self.alpha.to(x.dtype))
        return out if identity is None else identity + out

    def extra_repr(self) -> str:
        return "x + alpha * (block(x) - x), alpha starts at 0"


def with_init(block: nn.Module, init: str) -> nn.Module:
    """``block`` as built (``init="paper"``) or wrapped in :class:`IdentityStart` (``init="identity"``)."""
    require_choice("init", init, INITS)
    return IdentityStart(block) if init == "identity" else block
