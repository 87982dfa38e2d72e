"""The final activation of every attention gate, as a module of its own so that the weights a block
produced can be observed with an ordinary forward hook (no cost when nobody listens)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import require_choice

GATE_FUNCTIONS = ("sigmoid", "tanh", "relu")
"""The gates a block's user may choose (SE's ``gate=``)."""
ACTIVATIONS = (*GATE_FUNCTIONS, "softmax", "2sigmoid", "1+tanh")
"""Every gate activation; ``softmax`` normalises a spatial map over its positions (GCNet's attention pooling);
``2sigmoid`` (``2·σ``) and ``1+tanh`` are worth exactly 1 at 0, the gates of the zero starts
(:func:`plugattn.blocks.zero_start`)."""
GATE_KINDS = ("channel", "spatial", "element")
"""What a gate's output is: channel weights (N, C), a spatial map ``(N, 1, *spatial)``, or anything else (a weight per
element, as SimAM's, or a map over rotated axes, as Triplet attention's C–W and H–C branches)."""


class GateActivation(nn.Module):
    """Apply ``function`` to a gate's logits; ``kind`` says what its output is. Holds no parameters: it exists so
    that the weights a block produced can be observed with an ordinary forward hook.

    :param kind: one of :data:`~plugattn.blocks.gate.GATE_KINDS`.
    :param function: one of :data:`~plugattn.blocks.gate.ACTIVATIONS`.
    :raises ValueError: an unknown kind or function.
    """

    def __init__(self, kind: str, function: str = "sigmoid") -> None:
        super().__init__()
        self.kind = require_choice("kind", kind, GATE_KINDS)
        self.function = require_choice("gate", function, ACTIVATIONS)

    def forward(self, logits: Tensor) -> Tensor:
        if self.function == "sigmoid":
            return torch.sigmoid(logits)
        if self.function == "tanh":
            return torch.tanh(logits)
        if self.function == "softmax":
            return torch.softmax(logits.flatten(2), -1).view_as(logits)
        if self.function == "2sigmoid":
            return 2 * torch.sigmoid(logits)
        if self.function == "1+tanh":
            return 1 + torch.tanh(logits)
        return torch.relu(logits)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, function={self.function!r}"


def find_gates(model: nn.Module) -> list[tuple[str, GateActivation]]:
    """Every gate activation inside ``model``.

    :param model: any module.
    :returns: (qualified name, gate) pairs in module order.
    """
    return [(name, module) for name, module in model.named_modules() if isinstance(module, GateActivation)]
