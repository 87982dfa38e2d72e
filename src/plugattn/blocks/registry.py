"""Build attention blocks from a name and options: ``create_attention("cbam", 256, reduction=8)``.

A dict maps each name to a factory ``factory(channels, **options) -> nn.Module``; users add their own
with :func:`register_attention`. Later parts of plugattn (the zoo, ``attach``, sweeps) build blocks only
through this registry, so a registered block works everywhere.

Blocks are marked, not recognised by type: plugattn's block classes carry ``plugattn_block = True`` and
:func:`create_attention` sets the same attribute on each module it returns, so a user's factory that
returns, say, an ``nn.Sequential`` marks that one instance and never every ``Sequential`` in the process.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable

import torch
from torch import nn

from plugattn.blocks._checks import require_positive_int
from plugattn.blocks.bam import BAM
from plugattn.blocks.cbam import CBAM, ChannelGate, SpatialGate
from plugattn.blocks.coordinate import CoordinateAttention
from plugattn.blocks.eca import ECA
from plugattn.blocks.global_context import GlobalContext
from plugattn.blocks.scse import SCSE
from plugattn.blocks.simam import SimAM
from plugattn.blocks.squeeze_excite import SqueezeExcite
from plugattn.blocks.triplet import TripletAttention

AttentionFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, AttentionFactory] = {}
MARKER = "plugattn_block"


def register_attention(
    name: str, factory: AttentionFactory | None = None, *, overwrite: bool = False
) -> AttentionFactory | Callable[[AttentionFactory], AttentionFactory]:
    """Register ``factory(channels, **options)`` under ``name``, so that :func:`create_attention`, ``attach``, the
    zoo, recipes and the CLI build it by name; usable as a decorator (``@register_attention("mine")``).

    :param name: the registry name.
    :param factory: a callable returning an ``nn.Module`` for a channel count and keyword options; None: return a
        decorator that registers the function it decorates.
    :param overwrite: replace a block already registered under ``name``.
    :returns: ``factory`` (or the decorator).
    :raises TypeError: an empty or non-string name, or a factory that is not callable.
    :raises ValueError: ``name`` already registered and ``overwrite`` not given.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")

    def add(fn: AttentionFactory) -> AttentionFactory:
        if not callable(fn):
            raise TypeError(f"factory for attention {name!r} must be callable, got {fn!r}")
        if name in _REGISTRY and not overwrite:
            raise ValueError(f"attention {name!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[name] = fn
        return fn

    return add if factory is None else add(factory)


def list_attention() -> list[str]:
    """Names accepted by :func:`create_attention`.

    :returns: the registered names, sorted.
    """
    return sorted(_REGISTRY)


def attention_options(name: str) -> set[str] | None:
    """Keyword options the block registered as ``name`` takes besides ``channels``.

    :param name: a registry name.
    :returns: the option names, or None when the factory takes any (``**options``).
    :raises ValueError: an unregistered name (the error proposes close matches).
    """
    parameters = inspect.signature(_lookup(name)).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "channels"}


def _lookup(name: str) -> AttentionFactory:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"attention must be one of {list_attention()}; got {name!r}{hint}")
    return _REGISTRY[name]


def create_attention(name: str, channels: int, **options: object) -> nn.Module:
    """Build the block registered as ``name`` for a feature map with ``channels`` channels, marked as an attention
    block (:func:`is_attention_block`).

    :param name: a registry name (:func:`list_attention`).
    :param channels: the feature map's channel count.
    :param options: the block's keyword options (:func:`attention_options`).
    :returns: the block.
    :raises ValueError: an unregistered name (the error proposes close matches), or options the block refuses.
    :raises TypeError: an option the block does not take, or a factory that returns no ``nn.Module``.
    """
    factory = _lookup(name)
    accepted = attention_options(name)
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise TypeError(f"attention {name!r} does not take option(s) {unknown}; it takes {sorted(accepted)}")
    block = factory(channels, **options)
    if not isinstance(block, nn.Module):
        raise TypeError(f"the factory of attention {name!r} must return an nn.Module, got {type(block).__name__}")
    setattr(block, MARKER, True)
    return block


def is_attention_block(module: nn.Module) -> bool:
    """Whether ``module`` is marked as an attention block: plugattn's block classes and every module that
    :func:`create_attention` built (marked, not recognised by type).

    :param module: any module.
    :returns: True for a marked block.
    """
    return getattr(module, MARKER, False) is True


def find_attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost attention blocks inside ``model`` (a CBAM, not also its gates).

    :param model: any module.
    :returns: (qualified name, block) pairs in module order.
    """
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if is_attention_block(module) and not any(name.startswith(f"{outer}.") or outer == "" for outer, _ in found):
            found.append((name, module))
    return found


def _spatial_gate(
    channels: int,
    *,
    kernel_size: int = 7,
    dims: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> SpatialGate:
    """The spatial gate works for any channel count; ``channels`` is still checked for consistency."""
    require_positive_int("channels", channels)
    return SpatialGate(kernel_size, dims=dims, device=device, dtype=dtype)


register_attention("se", SqueezeExcite)
register_attention("channel", ChannelGate)
register_attention("spatial", _spatial_gate)
register_attention("cbam", CBAM)
register_attention("cbam-channel", functools.partial(CBAM, spatial=False))
register_attention("bam", BAM)
register_attention("eca", ECA)
register_attention("coord", CoordinateAttention)
register_attention("simam", SimAM)
register_attention("triplet", TripletAttention)
register_attention("gc", GlobalContext)
register_attention("scse", SCSE)
