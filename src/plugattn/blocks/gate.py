"""The final activation of every attention gate, as a module of its own so that the weights a block
produced can be observed with an ordinary forward hook (no cost when nobody listens)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import require_choice

GATE_FUNCTIONS = ("sigmoid", "tanh", "relu")
GATE_KINDS = ("channel", "spatial")


class GateActivation(nn.Module):
    """Apply ``function`` (sigmoid, tanh or relu) to a gate's logits; ``kind`` says whether its output is
    channel weights (N, C) or a spatial map (N, 1, *spatial). Holds no parameters."""

    def __init__(self, kind: str, function: str = "sigmoid") -> None:
        super().__init__()
        self.kind = require_choice("kind", kind, GATE_KINDS)
        self.function = require_choice("gate", function, GATE_FUNCTIONS)

    def forward(self, logits: Tensor) -> Tensor:
        if self.function == "sigmoid":
            return torch.sigmoid(logits)
        if self.function == "tanh":
            return torch.tanh(logits)
        return torch.relu(logits)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, function={self.function!r}"


def find_gates(model: nn.Module) -> list[tuple[str, GateActivation]]:
    """Every gate activation inside ``model``, with its qualified module name, in forward-definition order."""
    return [(name, module) for name, module in model.named_modules() if isinstance(module, GateActivation)]
