"""Residual units with an attention slot at any of SENet's integration positions.

``standard``: end of the residual branch, before the addition (the seed's and both papers' place);
``pre``: start of the residual branch (SE-PRE); ``post``: after the addition and its ReLU (SE-POST);
``identity``: on the identity/shortcut path, in parallel to the branch (SE-Identity).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from plugattn.blocks._checks import require_choice

POSITIONS = ("standard", "pre", "post", "identity")

AttentionBuilder = Callable[[int], nn.Module]
"""Builds the attention block for a feature map with the given number of channels."""


class ResidualUnit(nn.Module):
    """A residual unit ``out = act(branch(x) + shortcut(x))`` with an optional attention block.

    Subclasses build their layers and define :meth:`branch`, :meth:`shortcut` and :meth:`merge` (and
    :meth:`split` when both paths start from a shared pre-activation); this class owns where the
    attention goes, so every unit type supports every position. ``attention`` is None for a plain unit.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.position = "standard"
        self.attention: nn.Module | None = None

    def add_attention(self, build: AttentionBuilder, position: str) -> None:
        """Place ``build(channels)`` at ``position``; ``pre`` sees the unit's input channels, the rest its output."""
        self.position = require_choice("position", position, POSITIONS)
        self.attention = build(self.in_channels if position == "pre" else self.out_channels)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs of the branch and of the shortcut; the same tensor unless the unit pre-activates."""
        return x, x

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def merge(self, residual: Tensor, identity: Tensor) -> Tensor:
        """Combine branch and shortcut: the addition and, for post-activation units, the ReLU."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        branch_input, shortcut_input = self.split(x)
        attention = self.attention
        if attention is None:
            return self.merge(self.branch(branch_input), self.shortcut(shortcut_input))
        if self.position == "standard":
            return self.merge(attention(self.branch(branch_input)), self.shortcut(shortcut_input))
        if self.position == "pre":
            return self.merge(self.branch(attention(branch_input)), self.shortcut(shortcut_input))
        if self.position == "identity":
            return self.merge(self.branch(branch_input), attention(self.shortcut(shortcut_input)))
        return attention(self.merge(self.branch(branch_input), self.shortcut(shortcut_input)))
