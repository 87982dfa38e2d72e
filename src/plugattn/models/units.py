"""Residual units with an attention slot at any of SENet's integration positions.

``standard``: end of the residual branch, before the addition (the seed's and both papers' place);
``pre``: start of the residual branch (SE-PRE); ``post``: after the addition and its ReLU (SE-POST);
``identity``: on the identity/shortcut path, in parallel to the branch (SE-Identity); ``prenorm``: inside the
branch, before its final BatchNorm (after the last convolution: where SimAM's official ResNets put it;
post-activation units only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from plugattn.blocks._checks import has_global_module_hooks, has_hooks, require_choice
from plugattn.blocks.fused import fast_training_applies
from plugattn.models.recompute import recompute_batchnorm_output, rebuild_is_safe

POSITIONS = ("standard", "pre", "post", "identity", "prenorm")
OFFICIAL_POSITIONS = {"simam": "prenorm"}
"""Blocks whose official networks put them elsewhere than ``standard`` (the default position of the rest)."""


def default_position(attention: str | None, available: Collection[str] = POSITIONS) -> str:
    """Where ``attention`` goes in a residual unit when no position is given: its official networks' place where
    ``available`` (the positions the model's units offer) has it, else ``standard``."""
    official = OFFICIAL_POSITIONS.get(attention or "", "standard")
    return official if official in available else "standard"

AttentionBuilder = Callable[[int], nn.Module]
"""Builds the attention block for a feature map with the given number of channels."""


class ResidualUnit(nn.Module):
    """A residual unit ``out = act(branch(x) + shortcut(x))`` with an optional attention block.

    Subclasses build their layers and define :meth:`branch`, :meth:`shortcut` and :meth:`merge` (and
    :meth:`split` when both paths start from a shared pre-activation); this class owns where the
    attention goes, so every unit type supports every position. ``attention`` is None for a plain unit.
    """

    has_final_norm = False
    """Whether the branch ends in a BatchNorm that :meth:`~plugattn.models.units.ResidualUnit.normalize_branch` applies (the ``prenorm`` position)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.position = "standard"
        self.attention: nn.Module | None = None
        self.gated_add = False
        self.fast = False
        self.fast_method = "auto"

    @classmethod
    def available_positions(cls) -> tuple[str, ...]:
        """The positions this unit type offers: ``prenorm`` only where the branch ends in a BatchNorm."""
        return POSITIONS if cls.has_final_norm else tuple(p for p in POSITIONS if p != "prenorm")

    def add_attention(self, build: AttentionBuilder, position: str) -> None:
        """Place ``build(channels)`` at ``position``; ``pre`` sees the unit's input channels, the rest its output."""
        self.set_attention(build(self.in_channels if position == "pre" else self.out_channels), position)

    def set_attention(self, block: nn.Module | None, position: str = "standard") -> None:
        """Put ``block`` (None: no attention) at ``position``; at ``standard``, blocks whose ``forward(x, identity)``
        adds the shortcut themselves (``fuses_addition``) are called that way, saving one pass over memory."""
        self.position = require_choice("position", position, POSITIONS)
        if position not in self.available_positions():
            raise ValueError(f"position 'prenorm' (before the residual branch's final BatchNorm) needs a post-activation "
                             f"unit; {type(self).__name__}'s branch does not end in a BatchNorm")
        self.attention = block
        self.gated_add = position == "standard" and getattr(block, "fuses_addition", False) is True

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs of the branch and of the shortcut; the same tensor unless the unit pre-activates."""
        return x, x

    def branch(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def branch_body(self, x: Tensor) -> Tensor:
        """The residual branch up to, not including, its final BatchNorm (units with ``has_final_norm``)."""
        raise NotImplementedError

    def normalize_branch(self, x: Tensor) -> Tensor:
        """The branch's final BatchNorm (units with ``has_final_norm``)."""
        raise NotImplementedError

    def shortcut(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def activate(self, summed: Tensor) -> Tensor:
        """What follows the addition: the ReLU of post-activation units, nothing for pre-activation ones."""
        raise NotImplementedError

    def merge(self, residual: Tensor, identity: Tensor) -> Tensor:
        """Combine branch and shortcut: the addition, then :meth:`activate`."""
        return self.activate(residual + identity)

    def forward(self, x: Tensor) -> Tensor:
        branch_input, shortcut_input = self.split(x)
        attention = self.attention
        if attention is None:
            return self.merge(self.branch(branch_input), self.shortcut(shortcut_input))
        if self.position == "standard":
            if not torch.jit.is_scripting() and (self.gated_add or self.fast):
                return self._gated_add(branch_input, shortcut_input)
            return self.merge(attention(self.branch(branch_input)), self.shortcut(shortcut_input))
        if self.position == "pre":
            return self.merge(self.branch(attention(branch_input)), self.shortcut(shortcut_input))
        if self.position == "identity":
            return self.merge(self.branch(branch_input), attention(self.shortcut(shortcut_input)))
        if self.position == "prenorm":
            branch = self.normalize_branch(attention(self.branch_body(branch_input)))
            return self.merge(branch, self.shortcut(shortcut_input))
        return attention(self.merge(self.branch(branch_input), self.shortcut(shortcut_input)))

    @torch.jit.unused
    def _gated_add(self, branch_input: Tensor, shortcut_input: Tensor) -> Tensor:
        """``activate(attention(branch, shortcut))``: the block adds the shortcut in its last pass (blocks that
        cannot: ``activate(attention(branch) + shortcut)``). Called through the block's ``__call__``, so its hooks,
        profilers and FLOP counters see it as usual."""
        if self.gated_add:
            return self.activate(self.attention(self.branch(branch_input), self.shortcut(shortcut_input)))
        return self.merge(self.attention(self.branch(branch_input)), self.shortcut(shortcut_input))


class PostActivationUnit(ResidualUnit):
    """The original ResNet unit: ``relu(final_norm(branch_body(x)) + downsample(x))``; subclasses set
    ``relu``, ``downsample``, the BatchNorm that ends the branch (named by ``final_norm``) and ``branch_body``."""

    final_norm = "bn2"
    has_final_norm = True

    @torch.jit.unused
    def _gated_add(self, branch_input: Tensor, shortcut_input: Tensor) -> Tensor:
        """As for every unit; on the opt-in training memory path (``fast``, see :func:`plugattn.fast`), where its
        guards hold, the attention does not keep its own copy of the final BatchNorm's output for backward: blocks
        with hand-written backward functions (SE, CBAM; ``accepts_rebuilt_input``) get it rebuilt from that norm's
        input (see :mod:`plugattn.models.recompute`), every other block — or every block, with ``fast_method =
        "checkpoint"`` — runs with that norm under activation checkpointing (:meth:`_checkpointed_add`)."""
        norm = getattr(self, self.final_norm)
        attention = self.attention
        if not (self.fast and fast_training_applies(self, branch_input)):
            return super()._gated_add(branch_input, shortcut_input)
        accepts = getattr(attention, "accepts_rebuilt_input", None)
        if self.fast_method == "checkpoint" or not (callable(accepts) and accepts()):
            if self._checkpoint_applies(norm):
                return self.activate(self._checkpointed_add(self.branch_body(branch_input),
                                                            self.shortcut(shortcut_input), norm))
            return super()._gated_add(branch_input, shortcut_input)
        if not rebuild_is_safe(norm, self, attention):
            return super()._gated_add(branch_input, shortcut_input)
        body = self.branch_body(branch_input)
        branch = norm(body)
        identity = self.shortcut(shortcut_input)
        with recompute_batchnorm_output(branch, body, norm):
            gated = self.attention(branch, identity)
        return self.activate(gated)

    def _checkpoint_applies(self, norm: nn.Module) -> bool:
        """Checkpointing runs the region twice: besides the fast path's guards (autograd recording, no tracer,
        compiler, exporter or ``torch.func`` transform), no module hook may see the second run (on the norm, the
        unit, anything in the attention, or the process)."""
        return not has_global_module_hooks() and not any(has_hooks(module) for module in
                                                         (norm, self, *self.attention.modules()))

    def _checkpointed_add(self, body: Tensor, identity: Tensor, norm: nn.Module) -> Tensor:
        """``identity + attention(norm(body))`` with the attention of the normalised map under non-reentrant
        ``torch.utils.checkpoint``: backward keeps the region's input ``body`` (which the norm keeps anyway) and
        recomputes the normalised map and everything the attention saved. The shortcut is added outside the region,
        which would otherwise keep it for the recomputation. The recomputation leaves every running statistic in
        the region (the norm's, and those of BatchNorms inside the attention, as CBAM's spatial gate) as the first
        run left them, so they are updated once per step, as without checkpointing."""
        runs = [0]
        norms = [module for module in (norm, *self.attention.modules()) if isinstance(module, _BatchNorm)]

        def region(z: Tensor) -> Tensor:
            runs[0] += 1
            with _statistics_kept(norms) if runs[0] > 1 else contextlib.nullcontext():
                return self.attention(norm(z))

        return identity + checkpoint(region, body, use_reentrant=False)

    def shortcut(self, x: Tensor) -> Tensor:
        return x if self.downsample is None else self.downsample(x)

    def activate(self, summed: Tensor) -> Tensor:
        return self.relu(summed)


@contextlib.contextmanager
def _statistics_kept(norms: list[nn.Module]) -> Iterator[None]:
    """Run the BatchNorms ``norms`` (any ``_BatchNorm``, SyncBatchNorm included) without their running statistics
    changing: they are restored afterwards. In training their outputs use the batch's statistics, so they are the
    first run's."""
    saved = [(buffer, buffer.clone()) for norm in norms for buffer in norm.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
