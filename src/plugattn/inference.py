"""Inference-time optimisation of a trained model: fold BatchNorm into the convolution before it, switch to
channels-last memory and compile. Returns a new model; the original (and its state_dict) is untouched."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

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


def fold_batchnorm(model: nn.Module, example: Tensor) -> int:
    """Fold every BatchNorm that directly follows a convolution into it (eval mode); returns how many."""
    model.eval()
    pairs = _candidate_pairs(model)
    folded = 0
    for index in sorted(_feeds(model, pairs, example)):
        parent, conv, norm = pairs[index]
        setattr(parent, conv, fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, norm)))
        setattr(parent, norm, nn.Identity())
        folded += 1
    return folded


def optimize(model: nn.Module, example: Tensor, *, fold: bool = True, channels_last: bool = True,
             compile: bool = True, mode: str | None = None, dynamic: bool | None = False) -> nn.Module:
    """An inference copy of ``model``: BatchNorm folded into convolutions (checked on ``example``), channels-last
    memory format for 4-D inputs and ``torch.compile``. Feed it inputs in the same memory format.
    ``dynamic=False`` compiles a kernel per input shape (fastest for a fixed batch size); ``None`` lets
    ``torch.compile`` switch to shape-generic kernels once a second shape arrives."""
    optimized = copy.deepcopy(model).eval()
    if fold:
        fold_batchnorm(optimized, example)
    if channels_last and example.dim() == 4:
        optimized = optimized.to(memory_format=torch.channels_last)
    return torch.compile(optimized, mode=mode, dynamic=dynamic) if compile else optimized
