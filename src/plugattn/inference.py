"""Inference-time optimisation of a trained model: fold BatchNorm into the convolution before it, switch to
channels-last memory and compile. Both functions return a new model; the original (and its state_dict) is
untouched. Attention blocks survive: blocks that :func:`plugattn.attach` applied by a hook on a folded
BatchNorm move, with the hook, to the module that takes the BatchNorm's place."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from plugattn.blocks._checks import has_hooks
from plugattn.compilation import compile as plugattn_compile
from plugattn.compilation import compile_mode

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _candidate_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, norm attribute) for siblings named like ``conv2``/``bn2`` or ``conv``/``bn``,
    and for a convolution directly followed by a BatchNorm inside a Sequential."""
    pairs = []
    for parent in model.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs += [(parent, a, b) for a, b in zip(names, names[1:])
                      if isinstance(children[a], _CONVS) and isinstance(children[b], _NORMS)]
            continue
        for name, child in children.items():
            match = re.fullmatch(r"conv(\d*)", name)
            norm = children.get(f"bn{match.group(1)}") if match else None
            if isinstance(child, _CONVS) and isinstance(norm, _NORMS):
                pairs.append((parent, name, f"bn{match.group(1)}"))
    return pairs


def _feeds(model: nn.Module, pairs: list[tuple[nn.Module, str, str]], example: Tensor) -> set[int]:
    """Indices of the pairs whose BatchNorm really receives its convolution's output (checked in a dry run)."""
    outputs: dict[int, int] = {}
    inputs: dict[int, int] = {}

    def remember(table: dict[int, int], index: int, use_output: bool) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            table.setdefault(index, id(output if use_output else args[0]))

        return hook

    handles = []
    for index, (parent, conv, norm) in enumerate(pairs):
        handles.append(getattr(parent, conv).register_forward_hook(remember(outputs, index, True)))
        handles.append(getattr(parent, norm).register_forward_hook(remember(inputs, index, False)))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return {i for i in outputs if inputs.get(i) == outputs[i]}


def _take_place(norm: nn.Module) -> nn.Identity:
    """The ``nn.Identity`` that replaces a folded BatchNorm, holding its forward hooks and the modules that hang
    off it (attached blocks), with the hooks that applied those blocks re-pointed at their new owner."""
    replacement = nn.Identity()
    for table in ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
        getattr(replacement, table).update(getattr(norm, table))
    for name, child in norm.named_children():
        replacement.add_module(name, child)
    for hook in replacement._forward_hooks.values():
        if getattr(hook, "owner", None) is norm:
            hook.owner = replacement
    return replacement


def fold_batchnorm(model: nn.Module, example: Tensor, *, inplace: bool = False) -> tuple[nn.Module, list[str]]:
    """Fold every BatchNorm that directly follows a convolution into it, in eval mode. Returns the folded
    model — a copy unless ``inplace`` — and the names of the BatchNorms folded. A pair is left as it is when
    the convolution has hooks (they would see the folded output) or the BatchNorm has pre- or backward hooks;
    a BatchNorm's forward hooks (and the attention blocks they apply) move to its replacement.

    :param model: the network.
    :param example: a sample batch: one dry run finds which BatchNorm reads which convolution's output.
    :param inplace: fold ``model`` itself instead of a copy.
    :returns: the folded model and the names of the BatchNorms folded.
    """
    folded_model = model if inplace else copy.deepcopy(model)
    folded_model.eval()
    pairs = _candidate_pairs(folded_model)
    prefix = {id(module): name for name, module in folded_model.named_modules()}
    folded = []
    for index in sorted(_feeds(folded_model, pairs, example)):
        parent, conv, norm = pairs[index]
        conv_module, norm_module = getattr(parent, conv), getattr(parent, norm)
        if has_hooks(conv_module) or has_hooks(norm_module, forward=False):
            continue
        setattr(parent, conv, fuse_conv_bn_eval(conv_module, norm_module))
        setattr(parent, norm, _take_place(norm_module))
        folded.append(f"{prefix[id(parent)]}.{norm}".lstrip("."))
    return folded_model, folded


def optimize(model: nn.Module, example: Tensor, *, fold: bool = True, channels_last: bool = True,
             compile: str | bool = "full", mode: str | None = None, dynamic: bool | None = False) -> nn.Module:
    """An inference copy of ``model``: BatchNorm folded into convolutions (checked on ``example``), channels-last
    memory format for 4-D inputs and compilation — of the whole model (``"full"``) or of its attention only
    (``"regional"``, :func:`plugattn.compile`: seconds instead of minutes). Feed it inputs in the same memory
    format.
    ``dynamic=False`` compiles a kernel per input shape (fastest for a fixed batch size); ``None`` lets
    ``torch.compile`` switch to shape-generic kernels once a second shape arrives.

    :param model: the network (left as it is).
    :param example: a sample batch (the folding's dry run).
    :param fold: fold BatchNorms into convolutions (:func:`fold_batchnorm`).
    :param channels_last: convert to the channels-last memory format (4-D inputs).
    :param compile: ``"full"`` (or ``True``), ``"regional"`` or ``"none"`` (or ``False``).
    :param mode: ``torch.compile``'s mode.
    :param dynamic: ``torch.compile``'s ``dynamic``.
    :returns: the optimised copy.
    :raises ValueError: an unknown compile mode, or ``"regional"`` for a model without attention blocks.
    """
    optimized = copy.deepcopy(model).eval()
    if fold:
        fold_batchnorm(optimized, example, inplace=True)
    if channels_last and example.dim() == 4:
        optimized = optimized.to(memory_format=torch.channels_last)
    how = compile_mode(compile)
    if how == "full":
        return torch.compile(optimized, mode=mode, dynamic=dynamic)
    return plugattn_compile(optimized, how, dynamic=dynamic)
