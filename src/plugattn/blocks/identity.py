"""Insert without forgetting: blocks that start as the exact identity, in several ways.

A trained network that receives a block as the papers build it loses much of what it knew (a sigmoid gate
near 0.5 halves its features at step 0). Every start below leaves the network computing exactly what it
computed before; they differ in how the block then learns:

- ``identity`` — :class:`IdentityStart`: ``x + α·(block(x) − x)`` with a learnable scalar ``α`` from 0. The
  block's own parameters receive gradients scaled by ``α``, so they stay close to their random start until
  ``α`` has grown.
- ``identity-boost`` — the same blend with ``α = 10·a`` (``a`` learnt from 0): ``α`` moves 10× faster under
  Adam and 100× under SGD (the gradient and the step both scale), as if it had its own learning rate, in any
  training loop.
- ``zero-sigmoid`` / ``zero-tanh`` — :func:`zero_start`: the layers that produce the gates' logits start at
  zero and the gates become ``2·σ`` / ``1 + tanh``, worth exactly 1 at 0 (as GCNet's additive transform and
  ReZero start from zero). Those layers learn from the first step at the full rate and can amplify as well as
  attenuate; the layers before them learn from the second.

``paper`` keeps the block as the paper builds it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import factory_like, require_choice
from plugattn.blocks.gate import find_gates

INITS = ("paper", "identity", "identity-boost", "zero-sigmoid", "zero-tanh")
"""How an inserted block starts (see the module's docstring); all but ``paper`` start as the exact identity."""
BLEND_INITS = ("paper", "identity")
"""The starts the fusion blocks take (they build their own identity start)."""
ZERO_GATES = {"zero-sigmoid": "2sigmoid", "zero-tanh": "1+tanh"}
"""Each zero start's gate function: worth exactly 1 where its logit is 0."""
BOOST = 10.0
"""``identity-boost``'s gain: ``α = BOOST·a``."""
INSERTION_INIT = "identity-boost"
"""How a block inserted into a trained network starts unless told: of the identity starts, the one whose gates
learned most and whose fine-tuning scored best on validation data (``benchmarks/attention_family.py``)."""
LEGACY_INSERTION_INIT = "identity"
"""The insertion default before :data:`INSERTION_INIT`: what an unset ``init`` in an older checkpoint meant."""


class IdentityStart(nn.Module):
    """``x + α·(block(x) − x)``, ``α = gain·alpha`` with the learnable scalar ``alpha`` starting at 0 (``block``
    under ``.block``). ``gain`` > 1 makes ``α`` learn faster without touching the optimiser.

    A block that is already the identity as built (``block.starts_as_identity()``: GC with additive fusion, whose
    last convolution starts at zero) starts with ``α = 1`` instead: the blend is then exact as well, and neither
    ``α`` nor the block is stuck — at ``α = 0`` with ``block(x) = x`` both would receive zero gradients forever.
    (Only the starting value differs; a checkpoint's stored ``alpha`` is used as it is.)

    :param block: the attention block to start as the identity.
    :param gain: the factor between the learnt ``alpha`` and the blend ``α`` (1: ``identity``; 10:
        ``identity-boost``).
    :raises TypeError: a block that is not an ``nn.Module``.
    :raises ValueError: a gain that is not a number > 0.
    """

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)``, as the blocks it wraps do."""

    def __init__(self, block: nn.Module, gain: float = 1.0) -> None:
        super().__init__()
        if not isinstance(block, nn.Module):
            raise TypeError(f"block must be an nn.Module, got {type(block).__name__}")
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not gain > 0:
            raise ValueError(f"gain must be a number > 0, got {gain!r}")
        self.block = block
        self.gain = float(gain)
        declared = getattr(block, "starts_as_identity", None)
        start = 1.0 / self.gain if callable(declared) and declared() else 0.0
        self.alpha = nn.Parameter(torch.full((), start, **factory_like(block)))

    def blend(self) -> Tensor:
        """The effective ``α``."""
        return self.alpha * self.gain if self.gain != 1.0 else self.alpha

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        out = torch.lerp(x, self.block(x), self.blend().to(x.dtype))
        return out if identity is None else identity + out

    def extra_repr(self) -> str:
        start = 1 if getattr(self.block, "starts_as_identity", lambda: False)() else 0
        gain = "" if self.gain == 1.0 else f" (alpha = {self.gain:g} * a, a learnt from {start / self.gain:g})"
        return f"x + alpha * (block(x) - x), alpha starts at {start}{gain}"


def zero_start(block: nn.Module, gate: str = "2sigmoid") -> nn.Module:
    """Make ``block`` start as the exact identity by zeroing the layers that produce its gates' logits
    (``block.gate_logit_layers()``) and turning its sigmoid gates into ``gate``.

    :param block: an attention block that declares ``gate_logit_layers()``.
    :param gate: ``"2sigmoid"`` or ``"1+tanh"``, both worth exactly 1 at 0.
    :returns: ``block``, changed in place.
    :raises ValueError: an unknown gate, or a block that cannot start this way (parameter-free SimAM; BAM's
        ``1 + σ`` residual gate; non-sigmoid gates), naming the way out.
    """
    require_choice("gate", gate, tuple(ZERO_GATES.values()))
    declared = getattr(block, "gate_logit_layers", None)
    layers = declared() if callable(declared) else None
    name = type(block).__name__
    if layers is None:
        raise ValueError(f"{name} cannot start from zeroed gate logits (no layer of it produces gate logits that "
                         f"can be zero at the identity); use init='identity' or 'identity-boost'")
    gates = [module for _, module in find_gates(block) if module.function != "softmax"]
    wrong = sorted({module.function for module in gates if module.function != "sigmoid"})
    if wrong:
        raise ValueError(f"a zero start replaces sigmoid gates by one worth 1 at 0; {name} has {wrong} gates")
    with torch.no_grad():
        for layer in layers:
            for parameter in layer.parameters():
                parameter.zero_()
    for module in gates:
        module.function = gate
    return block


def with_init(block: nn.Module, init: str) -> nn.Module:
    """``block`` started as ``init`` says (see the module's docstring).

    :param block: an attention block.
    :param init: one of :data:`INITS`.
    :returns: ``block`` itself (``paper``; zero starts change it in place) or an :class:`IdentityStart` around it.
    :raises ValueError: an unknown start, or a zero start the block cannot take.
    """
    require_choice("init", init, INITS)
    if init == "identity":
        return IdentityStart(block)
    if init == "identity-boost":
        return IdentityStart(block, gain=BOOST)
    if init in ZERO_GATES:
        return zero_start(block, ZERO_GATES[init])
    return block
