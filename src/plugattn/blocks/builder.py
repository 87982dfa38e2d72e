"""Blocks for a network: a registry name, the papers' defaults and an initialisation turned into one
``build(channels, dims)`` function that the zoo and :func:`plugattn.attach` share."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from plugattn.blocks._checks import require_choice
from plugattn.blocks.identity import INITS, with_init
from plugattn.blocks.registry import attention_options, create_attention

PAPER_BLOCK_DEFAULTS: dict[str, dict[str, object]] = {"se": {"bias": True}}
"""Options the papers' networks use where the block's own default follows the seed (SE with biases)."""


def attention_builder(
    attention: str, reduction: int | None, block_options: Mapping[str, object], init: str = "paper"
) -> Callable[..., nn.Module]:
    """A function ``(channels, dims=None) -> block`` for the registry name ``attention``, with the papers'
    defaults applied and ``reduction`` where the block takes one (None: the block's own default); ``dims``
    reaches blocks that take it unless the caller fixed it in ``block_options``.
    ``init`` says how each block starts (:data:`~plugattn.blocks.INITS`; ``"identity"`` wraps it in
    :class:`~plugattn.blocks.IdentityStart`)."""
    require_choice("init", init, INITS)
    options = {**PAPER_BLOCK_DEFAULTS.get(attention, {}), **block_options}
    accepted = attention_options(attention)
    if reduction is not None and (accepted is None or "reduction" in accepted):
        options["reduction"] = reduction
    with_init(create_attention(attention, 64, **options), init)  # fail on bad options now, not deep in the network
    takes_dims = (accepted is None or "dims" in accepted) and "dims" not in options

    def build(channels: int, dims: int | None = None) -> nn.Module:
        extra = {"dims": dims} if takes_dims and dims is not None else {}
        return with_init(create_attention(attention, channels, **options, **extra), init)

    return build
