"""Checks shared by the attention blocks — bad arguments and bad inputs fail loudly, naming what was
expected and what came, instead of producing a silently wrong shape — and the small helpers they share
(layers by number of spatial dimensions, broadcasting, factory arguments)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
"""The convolution for 1-D, 2-D and 3-D maps."""
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
"""The BatchNorm for 1-D, 2-D and 3-D maps."""


def require_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int ≥ 1, else raise a TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int (>= 1), got {value}")
    return value


def require_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a ValueError listing them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def require_choices(name: str, values: object, choices: Sequence[str]) -> tuple[str, ...]:
    """Return a non-empty, repeat-free tuple of names from ``choices``; a lone string counts as one name."""
    if isinstance(values, str):
        values = (values,)
    if not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a sequence of names from {list(choices)}, got {values!r}")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must name at least one of {list(choices)}; got an empty sequence")
    for value in values:
        require_choice(f"each entry of {name}", value, choices)
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} must not repeat a name; got {list(values)} ({repeated} repeated)")
    return values


def require_kernel_size(value: object) -> int:
    """Return an odd kernel size ≥ 1 (odd so that 'same' padding (k-1)/2 keeps the spatial size)."""
    require_positive_int("kernel_size", value)
    if value % 2 == 0:  # type: ignore[operator]
        raise ValueError(f"kernel_size must be odd so that padding (k-1)/2 keeps the size; got {value}")
    return value  # type: ignore[return-value]


def require_dims(value: object) -> int:
    """Return the number of spatial dimensions: 1 (N,C,L), 2 (N,C,H,W) or 3 (N,C,D,H,W)."""
    require_positive_int("dims", value)
    if value not in (1, 2, 3):
        raise ValueError(f"dims must be 1 (N,C,L), 2 (N,C,H,W) or 3 (N,C,D,H,W); got {value}")
    return value  # type: ignore[return-value]


def hidden_width(channels: int, reduction: int, divisor: int = 1) -> int:
    """Bottleneck width ``channels // reduction``, but never 0 (the seed's code would build a 0-wide layer).
    With ``divisor`` > 1 the width is ``channels / reduction`` rounded to the nearest multiple of ``divisor``,
    at least ``divisor`` (timm's ``make_divisible(..., round_limit=0)``, which its SE modules use)."""
    if divisor == 1:
        return max(1, channels // reduction)
    return max(divisor, int(channels / reduction + divisor / 2) // divisor * divisor)


def check_feature_map(x: Tensor, block: str, channels: int, dims: int) -> None:
    """Raise on a non-float tensor, a rank other than ``dims + 2`` (any rank ≥ 3 when ``dims`` is 0)
    or a channel count other than ``channels`` (any when ``channels`` is -1). TorchScript-compatible."""
    if not x.is_floating_point():
        raise TypeError(f"{block}: input must be a floating-point tensor, got dtype {x.dtype}")
    if dims == 0:
        if x.dim() < 3:
            raise ValueError(
                f"{block}: input must have rank >= 3 (N, C, *spatial), got rank {x.dim()} with shape {list(x.shape)}"
            )
    elif x.dim() != dims + 2:
        raise ValueError(
            f"{block}: built for dims={dims}, so input must have rank {dims + 2}, "
            f"got rank {x.dim()} with shape {list(x.shape)}"
        )
    if channels != -1 and x.shape[1] != channels:
        raise ValueError(
            f"{block}: built for {channels} channels, got input with {x.shape[1]} channels (shape {list(x.shape)})"
        )


def broadcast_channels(weights: Tensor, like: Tensor) -> Tensor:
    """Reshape per-channel weights (N, C) to (N, C, 1, ..., 1) so they broadcast over ``like``'s spatial dims."""
    for _ in range(like.dim() - 2):
        weights = weights.unsqueeze(-1)
    return weights


def factory_kwargs(device: torch.device | str | None, dtype: torch.dtype | None) -> dict:
    """The ``device``/``dtype`` pair that torch layer constructors take."""
    return {"device": device, "dtype": dtype}


def factory_like(*modules: "torch.nn.Module") -> dict:
    """``device``/``dtype`` of the first parameter of the first of ``modules`` that has one ({} when none has),
    so that a module built to join them lives where they live."""
    for module in modules:
        reference = next(module.parameters(), None)
        if reference is not None:
            return {"device": reference.device, "dtype": reference.dtype}
    return {}


def has_global_module_hooks() -> bool:
    """Whether the process has registered module hooks that apply to every module."""
    from torch.nn.modules import module as module_hooks

    return any((module_hooks._global_forward_hooks, module_hooks._global_forward_pre_hooks,
                module_hooks._global_backward_hooks, module_hooks._global_backward_pre_hooks))


def has_hooks(module: "torch.nn.Module", *, forward: bool = True) -> bool:
    """Whether ``module`` has forward pre-hooks or backward hooks (and, with ``forward``, forward hooks)."""
    return bool(module._forward_pre_hooks or module._backward_hooks or module._backward_pre_hooks
                or (forward and module._forward_hooks))
