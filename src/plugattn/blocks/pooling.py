"""Global pooling of every channel over all spatial positions, for any rank ≥ 3 (1-D, 2-D, 3-D maps):
plain differentiable PyTorch ops, which every transform (autograd to any order, torch.func, tracing,
scripting, export, compile) understands."""

from __future__ import annotations

from typing import List

import torch
from torch import Tensor

POOL_TYPES = ("avg", "max", "lp", "lse")
"""avg: mean; max: maximum; lp: power-2 pooling as ``F.lp_pool2d(x, 2, (H, W))`` computes it, the square root
of the *sum* of squares; lse: log-sum-exp, computed stably (max-shifted)."""


def global_pool(x: Tensor, pool_type: str) -> Tensor:
    """Pool every channel of ``x`` over all its positions.

    :param x: a map ``(N, C, *spatial)``.
    :param pool_type: one of :data:`POOL_TYPES`.
    :returns: (N, C).
    :raises ValueError: an unknown pool type.
    """
    spatial = list(range(2, x.dim()))
    if pool_type == "avg":
        return x.mean(spatial)
    if pool_type == "max":
        return x.amax(spatial)
    if pool_type == "lp":
        return torch.linalg.vector_norm(x, 2.0, spatial)
    if pool_type == "lse":
        return torch.logsumexp(x.flatten(2), 2)
    raise ValueError(f"pool_type must be one of 'avg', 'max', 'lp', 'lse'; got '{pool_type}'")


def global_pools(x: Tensor, pool_types: List[str]) -> Tensor:
    """Pool ``(N, C, *spatial)`` with each of ``pool_types`` and stack the results: (P·N, C)."""
    return torch.cat([global_pool(x, pool_type) for pool_type in pool_types], 0)
