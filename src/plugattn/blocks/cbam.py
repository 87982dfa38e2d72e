"""CBAM (Woo et al., ECCV 2018): a channel gate ("what") and a spatial gate ("where").

Submodule layout follows the official code (``mlp.1``/``mlp.3`` linears, ``spatial.conv`` and
``spatial.bn``), so its checkpoints map onto these modules key for key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import (
    BATCH_NORM,
    CONV,
    broadcast_channels,
    check_feature_map,
    factory_kwargs,
    hidden_width,
    require_choice,
    require_choices,
    require_dims,
    require_kernel_size,
    require_positive_int,
)
from plugattn.blocks.fused import (
    SMALL_MAP,
    GlobalPools,
    cbam_small_map_inference,
    channel_then_spatial_inference,
    channel_then_spatial_training,
    fast_training_applies,
    hook_free,
    inference_fusion_applies,
)
from plugattn.blocks.gate import GateActivation
from plugattn.blocks.pooling import POOL_TYPES, global_pools

ORDERS = ("channel-spatial", "spatial-channel", "parallel")
"""CBAM's arrangements of its two gates: the paper's sequential channel-then-spatial, the reverse, or both from
the same input."""


def _scaled(x: Tensor, weights: Tensor, identity: Optional[Tensor]) -> Tensor:
    """``x · weights``, plus ``identity`` in the same pass when given."""
    return x * weights if identity is None else torch.addcmul(identity, x, weights)


class ChannelGate(nn.Module):
    """``out = x * sigmoid(sum_p MLP(pool_p(x)))``: one MLP shared by every pooled descriptor.

    ``pool_types`` is any non-empty subset, in any order, of ``avg``, ``max``, ``lp`` (square root of
    the sum of squares, as ``F.lp_pool2d`` with p=2) and ``lse`` (stable log-sum-exp). The hidden
    width is ``max(1, channels // reduction)``. Accepts any rank ≥ 3. ``fast=True`` opts in to the guarded
    training fast path (see :func:`plugattn.fast`).

    :param channels: the input's channel count C.
    :param reduction: ``r``: the MLP's hidden width is ``max(1, C // r)``.
    :param pool_types: the pooled descriptors, in order (each goes through the shared MLP; their logits are summed).
    :param bias: biases in the MLP (the official code's).
    :param fast: opt in to the guarded training fast path.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a channel count or reduction below 1, an empty or unknown pool type.
    """

    plugattn_block = True

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        pool_types: Sequence[str] = ("avg", "max"),
        bias: bool = True,
        fast: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.reduction = require_positive_int("reduction", reduction)
        self.pool_types = list(require_choices("pool_types", pool_types, POOL_TYPES))
        self.fast = bool(fast)
        hidden = hidden_width(channels, reduction)
        factory = factory_kwargs(device, dtype)
        self.mlp = nn.Sequential(
            nn.Flatten(),  # index 0 keeps the official key layout (mlp.1, mlp.3)
            nn.Linear(channels, hidden, bias=bias, **factory),
            nn.ReLU(),
            nn.Linear(hidden, channels, bias=bias, **factory),
        )
        self.gate = GateActivation("channel")

    def channel_weights(self, x: Tensor) -> Tensor:
        """Channel attention ``M_c`` (N, C) in (0, 1) for ``x`` (N, C, …); all descriptors go through the MLP as one
        batch."""
        if not torch.jit.is_scripting() and self.fast:
            descriptors = self._fast_pools(x)
        else:
            descriptors = global_pools(x, self.pool_types)
        logits = self.mlp(descriptors).unflatten(0, (len(self.pool_types), x.shape[0])).sum(0)
        return self.gate(logits)

    @torch.jit.unused
    def _fast_pools(self, x: Tensor) -> Tensor:
        if fast_training_applies(self, x):
            return GlobalPools.apply(x, tuple(self.pool_types))
        return global_pools(x, self.pool_types)

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "ChannelGate", self.channels, 0)
        return x * broadcast_channels(self.channel_weights(x), x)

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [self.mlp[3]]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, reduction={self.reduction}, pool_types={self.pool_types}"


class ConvBN(nn.Module):
    """Convolution without bias followed by BatchNorm (eps 1e-5, momentum 0.01 as in the official CBAM code).

    :param in_channels: the convolution's input channels.
    :param out_channels: its output channels.
    :param kernel_size: its (odd) kernel size, padded to keep the spatial size.
    :param dims: 1, 2 or 3 spatial dimensions.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = factory_kwargs(device, dtype)
        self.conv = CONV[dims](
            in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2, bias=False, **factory
        )
        self.bn = BATCH_NORM[dims](out_channels, eps=1e-5, momentum=0.01, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class SpatialGate(nn.Module):
    """``out = x * sigmoid(BN(conv_k([max_c(x); mean_c(x)])))``: max first, then mean, as in the seed.

    ``dims`` picks 1-D, 2-D or 3-D maps; ``kernel_size`` must be odd (default 7, the paper's best).

    :param kernel_size: the convolution's kernel size over [max; mean] (odd).
    :param dims: 1, 2 or 3 spatial dimensions.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: an even or non-positive kernel size, or dims outside 1–3.
    """

    plugattn_block = True

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = require_kernel_size(kernel_size)
        self.dims = require_dims(dims)
        self.spatial = ConvBN(2, 1, kernel_size, dims=dims, device=device, dtype=dtype)
        self.gate = GateActivation("spatial")

    def spatial_map(self, x: Tensor) -> Tensor:
        """Spatial attention ``M_s`` ``(N, 1, *spatial)`` in (0, 1) for ``x`` ``(N, C, *spatial)``."""
        return self.map_from_pools(torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), 1))

    def map_from_pools(self, pooled: Tensor) -> Tensor:
        """``M_s`` from ``pooled``, the channel-pooled maps [max; mean] ``(N, 2, *spatial)``."""
        return self.gate(self.spatial(pooled))

    def forward(self, x: Tensor) -> Tensor:
        check_feature_map(x, "SpatialGate", -1, self.dims)
        return x * self.spatial_map(x)

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        return [self.spatial.bn]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, dims={self.dims}"


class CBAM(nn.Module):
    """Channel gate then spatial gate (``order="channel-spatial"``, the paper's best arrangement).

    ``order="spatial-channel"`` swaps them; ``"parallel"`` computes both gates from the same input and
    applies both. ``spatial=False`` keeps the channel gate only (the seed's ``no_spatial``).

    The reference formulation runs by default. Without autograd (and outside tracing, export, compile and
    ``torch.func``) the channel→spatial arrangement is fused (:mod:`plugattn.blocks.fused`: same math, fewer
    passes over memory); ``fast=True`` opts in to the guarded training fast path (see :func:`plugattn.fast`).

    :param channels: the input's channel count C.
    :param reduction: ``r``: the channel MLP's hidden width is ``max(1, C // r)``.
    :param pool_types: the channel gate's pooled descriptors (``avg``, ``max``, ``lp``, ``lse``; the paper: avg and max).
    :param kernel_size: the spatial gate's (odd) kernel size; 7 is the paper's best.
    :param spatial: keep the spatial gate (``False``: channel gate only, the seed's ``no_spatial``).
    :param order: ``"channel-spatial"`` (the paper), ``"spatial-channel"`` or ``"parallel"``.
    :param dims: 1, 2 or 3 spatial dimensions.
    :param bias: biases in the channel MLP (the official code's).
    :param fast: opt in to the guarded training fast path.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: a bad channel count, reduction, pool type, kernel size (even or < 1), order or dims.
    """

    plugattn_block = True
    fuses_addition = True
    """``forward(x, identity)`` returns ``identity + forward(x)``; residual units call it that way, so that the
    fused path can add the shortcut in its last pass."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        *,
        pool_types: Sequence[str] = ("avg", "max"),
        kernel_size: int = 7,
        spatial: bool = True,
        order: str = "channel-spatial",
        dims: int = 2,
        bias: bool = True,
        fast: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.channels = require_positive_int("channels", channels)
        self.fast = bool(fast)
        self.order = require_choice("order", order, ORDERS)
        self.dims = require_dims(dims)
        require_kernel_size(kernel_size)  # checked even when spatial=False, so a typo never hides
        factory = factory_kwargs(device, dtype)
        self.channel_gate = ChannelGate(channels, reduction, pool_types=pool_types, bias=bias, fast=fast, **factory)
        self.spatial_gate = SpatialGate(kernel_size, dims=dims, **factory) if spatial else None

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """The gated ``x``; with ``identity``, ``identity + gated x`` (fused into the last pass where fusion
        applies: how residual units add the block's output to their shortcut).

        :param x: the feature map (N, C, …) of rank ``dims + 2``, floating point.
        :param identity: a tensor of ``x``'s shape to add to the gated map, or None.
        :returns: the gated map, of ``x``'s shape.
        :raises ValueError: another rank or channel count than the block was built for.
        :raises TypeError: an integer tensor.
        """
        check_feature_map(x, "CBAM", self.channels, self.dims)
        if not torch.jit.is_scripting():
            fused = self._fused_forward(x, identity)
            if fused is not None:
                return fused
        return self._reference(x, identity)

    def _reference(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        """The gates applied one after the other, as the paper and the seed write them; the shortcut, when given,
        added by the last multiplication itself (``addcmul``: one pass over memory fewer, a standard op)."""
        spatial_gate = self.spatial_gate
        if spatial_gate is None:
            return _scaled(x, broadcast_channels(self.channel_gate.channel_weights(x), x), identity)
        if self.order == "channel-spatial":
            x = x * broadcast_channels(self.channel_gate.channel_weights(x), x)
            return _scaled(x, spatial_gate.spatial_map(x), identity)
        if self.order == "spatial-channel":
            x = x * spatial_gate.spatial_map(x)
            return _scaled(x, broadcast_channels(self.channel_gate.channel_weights(x), x), identity)
        channel = broadcast_channels(self.channel_gate.channel_weights(x), x)
        return _scaled(x * channel, spatial_gate.spatial_map(x), identity)

    def _fuses(self) -> bool:
        return self.spatial_gate is not None and self.order == "channel-spatial"

    @torch.jit.unused
    def _fused_forward(self, x: Tensor, identity: Optional[Tensor]) -> Optional[Tensor]:
        """The fused result where a fused path applies (channel→spatial only), else None: on small maps with no hook
        inside the block, the path with the fewest dispatches; on larger ones, the one with the fewest passes."""
        spatial_gate = self.spatial_gate
        if spatial_gate is None or not self._fuses():
            return None
        if inference_fusion_applies(self, x, identity):
            if x[0, 0].numel() <= SMALL_MAP and hook_free(self):
                return cbam_small_map_inference(self, x, identity)
            fused = channel_then_spatial_inference
        elif fast_training_applies(self, x, identity):
            fused = channel_then_spatial_training
        else:
            return None
        return fused(x, self.channel_gate.channel_weights(x), spatial_gate.map_from_pools, identity)

    def accepts_rebuilt_input(self) -> bool:
        """Whether this block's backward stays right when a residual unit rebuilds ``x`` instead of keeping it:
        on the fast path (both gates' pools find maxima again in the rebuilt input) of channel→spatial CBAM or
        of the channel gate alone."""
        return self.fast and self.channel_gate.fast and (self.spatial_gate is None or self._fuses())

    def gate_logit_layers(self) -> list[nn.Module]:
        """The layers whose outputs are this block's gate logits (zeroed by :func:`~plugattn.blocks.zero_start`)."""
        layers = self.channel_gate.gate_logit_layers()
        return layers if self.spatial_gate is None else layers + self.spatial_gate.gate_logit_layers()

    def extra_repr(self) -> str:
        fast = ", fast=True" if self.fast else ""
        return f"channels={self.channels}, order={self.order!r}, dims={self.dims}{fast}"
