"""Compile the attention, not the whole network: ``plugattn.compile(model)``.

``torch.compile`` of a whole ResNet-50 takes minutes and turns every layer into generated code; the attention
blocks — a dozen small operations each, which is where the eager overhead lies — are a few small graphs.
Regional compilation compiles each attention block in place (``nn.Module.compile``), or with ``units=True`` each
residual unit that holds one, and leaves everything else eager. Blocks of one class and shape share their
compiled code; ``dynamic=None`` lets a second batch size switch a region to shape-generic code instead of
compiling it again for every size. Where the compiler cannot run (no C++ compiler for inductor on CPU, an
unsupported operation), the region warns once, naming the error, and runs eagerly: never a wrong answer, never a
crash in the middle of training.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from plugattn.blocks import find_attention_blocks

COMPILE_MODES = ("none", "regional", "full")
"""``none``: eager; ``regional``: the attention blocks (or their units) compiled in place, the rest eager;
``full``: ``torch.compile`` of the whole model."""


def compile_mode(value: object) -> str:
    """A compile setting as one of :data:`COMPILE_MODES`: ``True`` (what ``--compile`` and checkpoints stored before
    the modes existed) means ``full``, ``False`` and None mean ``none``.

    :param value: a mode name, a bool or None.
    :returns: the mode.
    :raises ValueError: anything else.
    """
    if value is True:
        return "full"
    if value is False or value is None:
        return "none"
    if isinstance(value, str) and value in COMPILE_MODES:
        return value
    raise ValueError(f"compile must be one of {list(COMPILE_MODES)} (or a bool: True is 'full'); got {value!r}")


class _EagerFallback:
    """A dynamo backend that compiles with ``backend`` and, where that fails, warns and runs the captured graph
    eagerly (the same operations the module would run without compilation). One instance per backend is shared
    by every region (:func:`_fallback`): dynamo reuses a compiled graph only for the same backend object, so a
    backend per block would compile every block again and soon exhaust its recompilation limit."""

    def __init__(self, backend: str | Callable[..., Any]) -> None:
        self.backend = torch._dynamo.lookup_backend(backend) if isinstance(backend, str) else backend

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
        try:
            return self.backend(graph, example_inputs)
        except Exception as error:  # noqa: BLE001 — any compiler failure falls back to the eager graph
            first_line = str(error).splitlines()[0] if str(error) else ""
            warnings.warn(f"plugattn.compile: a region could not be compiled ({type(error).__name__}: {first_line}); "
                          "it runs eagerly", stacklevel=2)
            return graph.forward


_FALLBACKS: dict[object, _EagerFallback] = {}


def _fallback(backend: str | Callable[..., Any]) -> _EagerFallback:
    """The shared fallback wrapper of ``backend``."""
    if backend not in _FALLBACKS:
        _FALLBACKS[backend] = _EagerFallback(backend)
    return _FALLBACKS[backend]


def compiled_regions(model: nn.Module, *, units: bool = False) -> list[tuple[str, nn.Module]]:
    """The modules regional compilation compiles: every outermost attention block, or with ``units`` the module
    directly holding each block (a residual unit; the block itself where it is the model's child).

    :param model: the network.
    :param units: the blocks' parent modules instead of the blocks.
    :returns: (qualified name, module) pairs, outermost first, each once.
    """
    blocks = find_attention_blocks(model)
    if not units:
        return blocks
    modules = dict(model.named_modules())
    regions: dict[str, nn.Module] = {}
    for name, block in blocks:
        parent = name.rpartition(".")[0]
        owner = name if parent == "" else parent
        regions.setdefault(owner, modules[owner] if owner else block)
    return list(regions.items())


def compile(model: nn.Module, mode: str | bool = "regional", *, units: bool = False, dynamic: bool | None = None,
            backend: str | Callable[..., Any] = "inductor", fullgraph: bool = False) -> nn.Module:
    """Compile ``model``'s attention regionally (in place), or the whole model.

    :param model: the network (zoo, attached or your own blocks).
    :param mode: ``"regional"``, ``"full"`` or ``"none"`` (:data:`COMPILE_MODES`; ``True`` means ``"full"``).
    :param units: regional only: compile each residual unit holding a block rather than the block alone (more of
        the network compiled, more compile time; the unit's addition and activation fuse with the block).
    :param dynamic: ``torch.compile``'s ``dynamic`` (None: static shapes until a second shape arrives).
    :param backend: the ``torch.compile`` backend.
    :param fullgraph: refuse graph breaks inside a region.
    :returns: ``model`` itself (regional, none) or its ``torch.compile`` wrapper (full).
    :raises TypeError: a model that is not an ``nn.Module``.
    :raises ValueError: an unknown mode, or ``regional`` on a model without attention blocks.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    mode = compile_mode(mode)
    if mode == "none":
        return model
    if mode == "full":
        return torch.compile(model, dynamic=dynamic, fullgraph=fullgraph, backend=_fallback(backend))
    regions = compiled_regions(model, units=units)
    if not regions:
        raise ValueError(f"{type(model).__name__} holds no attention blocks to compile regionally; attach some, or "
                         "compile the whole model with mode='full'")
    limit = max(RECOMPILE_LIMIT_PER_REGION * len(regions), torch._dynamo.config.recompile_limit)
    for _, region in regions:
        compiled = torch.compile(region._call_impl, dynamic=dynamic, fullgraph=fullgraph, backend=_fallback(backend))
        region._compiled_call_impl = _Region(compiled, limit)  # what nn.Module.compile sets, and __call__ runs
    return model


RECOMPILE_LIMIT_PER_REGION = 4
"""Graphs one region may need: its shape in training, in evaluation without and with autograd, and one spare."""


class _Region:
    """A region's compiled call. Blocks of one class share dynamo's cache of compiled graphs, one per shape and
    mode (ResNet-50's 16 CBAM blocks: 4 shapes × train/eval), more than dynamo's default limit of 8 per function,
    after which it would silently run them eagerly; the limit is raised for the region's calls only
    (``torch._dynamo.config.patch``), never for the rest of the process."""

    def __init__(self, compiled: Callable[..., Any], limit: int) -> None:
        self.compiled = compiled
        self.limit = limit

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(recompile_limit=self.limit):
            return self.compiled(*args, **kwargs)


def uncompile(model: nn.Module) -> nn.Module:
    """Undo regional compilation in place: every module runs eagerly again.

    :param model: the network.
    :returns: ``model``.
    """
    for module in model.modules():
        if getattr(module, "_compiled_call_impl", None) is not None:
            module._compiled_call_impl = None
    return model
