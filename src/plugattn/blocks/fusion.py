"""Attention across modalities: fusion blocks that take one feature map per stream (image, audio, depth, …).

- :class:`MMTM` — Multimodal Transfer Module (Joze et al., CVPR 2020; official code haamoon/mmtm ``mmtm.py``): SE
  *across* streams. Each stream is squeezed by a mean over every non-channel dimension (any rank, a rank-2
  ``(N, C)`` stream as it is), the squeezes are concatenated, one joint ``Linear(ΣC, int(2·ΣC / ratio))`` + ReLU,
  then one ``Linear`` per stream back to its channels and a gate; each stream is scaled by its own gate and goes
  on in its own network. For N streams plugattn keeps the code's rule on ΣC over all of them.
- :class:`SESum` — ESANet (TUI-NICR/ESANet ``rgb_depth_fusion.py``): an SE per stream (1×1 convolutions with bias,
  reduction 16), then the sum.
- :class:`GatedSum` — ACNet (``ACNet_models_V1.py``): a channel gate per stream (global average pool → 1×1 conv
  C→C with bias → sigmoid, no bottleneck), the gated maps summed (into a merged branch when one is given).
- :class:`ConcatFusion` — mid fusion: the streams concatenated along channels, then any registered attention
  block over the ΣC channels.

Sums need streams of one shape and concatenation one spatial size: the blocks refuse others, naming the shapes
(the multi-stream network resizes or projects before fusing). ``init="identity"`` inserts a fusion block so that
the network computes at first exactly what it computed before: MMTM's streams pass unchanged, and the sums and the
concatenation return the first (main) stream, respectively the plain concatenation, until the fusion learns.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import factory_kwargs, require_choice, require_positive_int
from plugattn.blocks.identity import BLEND_INITS, with_init
from plugattn.blocks.registry import create_attention
from plugattn.blocks.squeeze_excite import SqueezeExcite

MMTM_GATES = ("2sigmoid", "sigmoid")
"""``2sigmoid``: ``2·σ``, the paper's gate (worth exactly 1 at zero, it can also amplify; the default);
``sigmoid``: the official code's gate (it can only attenuate; what the code's weights were trained with)."""


def _channel_list(channels: object) -> tuple[int, ...]:
    if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) < 2:
        raise ValueError(f"channels must list the channel count of each stream (at least 2 streams), got {channels!r}")
    return tuple(require_positive_int(f"channels[{index}]", value) for index, value in enumerate(channels))


def _check_streams(streams: Sequence[Tensor], channels: Sequence[int], block: str, same_shape: bool = False,
                   same_size: bool = False) -> None:
    """Streams as the block was built for: their number, channels, batch (and shapes or spatial sizes)."""
    if len(streams) != len(channels):
        raise ValueError(f"{block} was built for {len(channels)} streams, got {len(streams)}")
    for index, (stream, expected) in enumerate(zip(streams, channels)):
        if not isinstance(stream, Tensor) or stream.dim() < 2:
            raise ValueError(f"{block} stream {index} must be a tensor (N, C, ...) of rank >= 2, got "
                             f"{type(stream).__name__} {tuple(getattr(stream, 'shape', ()))}")
        if stream.shape[1] != expected:
            raise ValueError(f"{block} stream {index} must have {expected} channels, got {stream.shape[1]} "
                             f"(shape {tuple(stream.shape)})")
    # compared pairwise (not through a set): under tracing and export the sizes are tensors or symbols
    if any(stream.shape[0] != streams[0].shape[0] for stream in streams[1:]):
        raise ValueError(f"{block} streams must share one batch size, got {[int(s.shape[0]) for s in streams]}")
    if (same_shape or same_size) and any(stream.shape[2:] != streams[0].shape[2:] for stream in streams[1:]):
        raise ValueError(f"{block} needs streams of one spatial size (resize or pool them first), got "
                         f"{[tuple(int(size) for size in s.shape[2:]) for s in streams]}")


def squeeze(stream: Tensor) -> Tensor:
    """(N, C): the mean of each channel over every non-channel dimension; a rank-2 stream as it is."""
    return stream if stream.dim() == 2 else stream.flatten(2).mean(-1)


def _per_channel(weights: Tensor, like: Tensor) -> Tensor:
    return weights.view(*weights.shape, *(1,) * (like.dim() - 2))


class MMTM(nn.Module):
    """Multimodal Transfer Module over ``len(channels)`` streams (see the module's docstring for the formula).

    State-dict names map to the official code's: ``fc_squeeze`` is its ``fc_squeeze``, ``fc_out.0`` / ``fc_out.1``
    its ``fc_visual`` / ``fc_skeleton``. ``gate``: ``2sigmoid`` (the paper's ``2·σ``; the default, chosen on
    validation data: on AV-MNIST it beat the code's gate by 19 points, which halves every stream at the start) or
    ``sigmoid`` (the official code's; give it to load the code's weights). ``init="identity"``: with ``2sigmoid``
    the per-stream layers start at zero
    (every gate exactly 1, the joint layer learning from the first step); with ``sigmoid`` each stream is
    ``x + α·(x·g − x)`` with a learnable ``α`` from 0. ``forward(*streams)`` returns the gated streams, in order.

    :param channels: each stream's channel count (two or more streams, of any rank ≥ 2).
    :param ratio: the joint layer's width is ``int(2·ΣC / ratio)`` (the official code's; at least 1).
    :param gate: ``"2sigmoid"`` or ``"sigmoid"`` (see above).
    :param init: ``"paper"`` or ``"identity"``.
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: fewer than two streams, a channel count below 1, a ratio ≤ 0, an unknown gate or start;
        on input, streams other than the block was built for (number, channels, batch).
    """

    plugattn_block = True

    def __init__(self, channels: Sequence[int], ratio: float = 4, *, gate: str = "2sigmoid", init: str = "paper",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = _channel_list(channels)
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
            raise ValueError(f"ratio must be a number > 0, got {ratio!r}")
        self.gate = require_choice("gate", gate, MMTM_GATES)
        self.init = require_choice("init", init, BLEND_INITS)
        total = sum(self.channels)
        self.hidden = max(1, int(2 * total / ratio))  # the official width; never 0
        factory = factory_kwargs(device, dtype)
        self.fc_squeeze = nn.Linear(total, self.hidden, **factory)
        self.fc_out = nn.ModuleList(nn.Linear(self.hidden, c, **factory) for c in self.channels)
        self.alpha = None
        if init == "identity" and gate == "2sigmoid":
            with torch.no_grad():
                for layer in self.fc_out:
                    layer.weight.zero_()
                    layer.bias.zero_()
        elif init == "identity":
            self.alpha = nn.Parameter(torch.zeros((), **factory))

    def gates(self, *streams: Tensor) -> list[Tensor]:
        """The (N, C) gate of each stream."""
        _check_streams(streams, self.channels, "MMTM")
        joint = torch.relu(self.fc_squeeze(torch.cat([squeeze(stream) for stream in streams], 1)))
        scale = 2.0 if self.gate == "2sigmoid" else 1.0
        return [scale * torch.sigmoid(layer(joint)) for layer in self.fc_out]

    def forward(self, *streams: Tensor) -> tuple[Tensor, ...]:
        gated = [stream * _per_channel(gate, stream) for stream, gate in zip(streams, self.gates(*streams))]
        if self.alpha is not None:
            gated = [torch.lerp(stream, out, self.alpha.to(stream.dtype)) for stream, out in zip(streams, gated)]
        return tuple(gated)

    def modality_weights(self, *streams: Tensor) -> Tensor:
        """(N, streams): each stream's mean effective gate (with ``init="identity"``'s blend, ``1 + α·(g − 1)``)."""
        gates = self.gates(*streams)
        if self.alpha is not None:
            gates = [torch.lerp(torch.ones_like(gate), gate, self.alpha.to(gate.dtype)) for gate in gates]
        return torch.stack([gate.mean(1) for gate in gates], 1)

    def extra_repr(self) -> str:
        return f"channels={list(self.channels)}, hidden={self.hidden}, gate={self.gate!r}, init={self.init!r}"


class _MainStreamStart(nn.Module):
    """Fusion blocks whose output replaces the first (main) stream: ``init="identity"`` returns
    ``main + α·(fused − main)`` with ``α`` from 0."""

    plugattn_block = True

    def _start(self, init: str, factory: dict) -> None:
        self.init = require_choice("init", init, BLEND_INITS)
        self.alpha = nn.Parameter(torch.zeros((), **factory)) if init == "identity" else None

    def _blend(self, main: Tensor, fused: Tensor) -> Tensor:
        return fused if self.alpha is None else torch.lerp(main, fused, self.alpha.to(main.dtype))


class SESum(_MainStreamStart):
    """ESANet's fusion: ``Σᵢ SEᵢ(xᵢ)``, one SE (1×1 convolutions with bias, ``reduction``) per stream.
    ``forward(*streams)`` returns the fused map, which replaces the first (main) stream.

    :param channels: the channel count every stream has.
    :param reduction: each SE's reduction.
    :param streams: how many streams (≥ 2).
    :param init: ``"paper"`` or ``"identity"`` (``main + α·(fused − main)``, α from 0).
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: fewer than two streams, a bad channel count, reduction or start; on input, streams of
        different shapes.
    """

    def __init__(self, channels: int, reduction: int = 16, *, streams: int = 2, init: str = "paper",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = (require_positive_int("channels", channels),) * require_positive_int("streams", streams)
        if streams < 2:
            raise ValueError(f"streams must be >= 2 for a fusion, got {streams}")
        self.se = nn.ModuleList(SqueezeExcite(channels, reduction, bias=True, device=device, dtype=dtype)
                                for _ in range(streams))
        self._start(init, factory_kwargs(device, dtype))

    def forward(self, *streams: Tensor) -> Tensor:
        _check_streams(streams, self.channels, "se-sum", same_shape=True)
        fused = self.se[0](streams[0])
        for se, x in zip(self.se[1:], streams[1:]):
            fused = se(x, fused)  # fused + SE(x) in one pass over memory (addcmul)
        return self._blend(streams[0], fused)

    def modality_weights(self, *streams: Tensor) -> Tensor:
        """(N, streams): the mean SE excitation of each stream."""
        _check_streams(streams, self.channels, "se-sum", same_shape=True)
        return torch.stack([se.channel_weights(x).mean(1) for se, x in zip(self.se, streams)], 1)


class ChannelGateConv(nn.Module):
    """ACNet's channel attention: ``x · σ(W·GAP(x) + b)`` with a full C×C 1×1 convolution (no bottleneck)."""

    plugattn_block = True

    def __init__(self, channels: int, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.conv = nn.Linear(require_positive_int("channels", channels), channels, **factory_kwargs(device, dtype))

    def channel_weights(self, x: Tensor) -> Tensor:
        """The gate (N, C) for input ``x``."""
        return torch.sigmoid(self.conv(squeeze(x)))

    def forward(self, x: Tensor) -> Tensor:
        return x * _per_channel(self.channel_weights(x), x)


class GatedSum(_MainStreamStart):
    """ACNet's fusion: ``Σᵢ xᵢ·σ(Wᵢ·GAP(xᵢ) + bᵢ)`` (plus ``merged``, ACNet's third branch, when given).
    ``forward(*streams, merged=None)`` returns the fused map, which replaces the first (main) stream.

    :param channels: the channel count every stream has.
    :param streams: how many streams (≥ 2).
    :param init: ``"paper"`` or ``"identity"`` (``main + α·(fused − main)``, α from 0).
    :param device: where the parameters are created.
    :param dtype: the parameters' dtype.
    :raises ValueError: fewer than two streams, a bad channel count or start; on input, streams (or ``merged``) of
        different shapes.
    """

    def __init__(self, channels: int, *, streams: int = 2, init: str = "paper",
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channels = (require_positive_int("channels", channels),) * require_positive_int("streams", streams)
        if streams < 2:
            raise ValueError(f"streams must be >= 2 for a fusion, got {streams}")
        self.gate = nn.ModuleList(ChannelGateConv(channels, device=device, dtype=dtype) for _ in range(streams))
        self._start(init, factory_kwargs(device, dtype))

    def forward(self, *streams: Tensor, merged: Tensor | None = None) -> Tensor:
        _check_streams(streams, self.channels, "gated-sum", same_shape=True)
        if merged is not None and merged.shape != streams[0].shape:
            raise ValueError(f"gated-sum merged must have the streams' shape {tuple(streams[0].shape)}, got "
                             f"{tuple(merged.shape)}")
        fused = merged
        for gate, x in zip(self.gate, streams):  # each gated map added in one pass over memory (addcmul)
            weights = _per_channel(gate.channel_weights(x), x)
            fused = x * weights if fused is None else torch.addcmul(fused, x, weights)
        return self._blend(streams[0] if merged is None else merged, fused)

    def modality_weights(self, *streams: Tensor) -> Tensor:
        """(N, streams): the mean channel gate of each stream."""
        _check_streams(streams, self.channels, "gated-sum", same_shape=True)
        return torch.stack([gate.channel_weights(x).mean(1) for gate, x in zip(self.gate, streams)], 1)


class ConcatFusion(nn.Module):
    """Mid fusion: ``block(cat(x₁, …, xₙ))`` with ``block`` any registered attention over ΣC channels, or none
    (``attention=None``: the plain concatenation, the control); ``init="identity"``: the plain concatenation until
    the block learns. ``forward(*streams)`` returns the (gated) concatenation.

    :param channels: each stream's channel count; the streams must share their spatial size.
    :param attention: a registry name (:func:`plugattn.list_attention`) or None.
    :param init: ``"paper"`` or ``"identity"``.
    :param options: the block's options (``reduction=``, …).
    :raises ValueError: fewer than two streams, a bad channel count, an unknown block or start; on input, streams of
        different spatial sizes.
    """

    plugattn_block = True

    def __init__(self, channels: Sequence[int], attention: str | None = "se", *, init: str = "paper",
                 **options: Any) -> None:
        super().__init__()
        self.channels = _channel_list(channels)
        self.init = require_choice("init", init, BLEND_INITS)
        self.block = nn.Identity() if attention is None else \
            with_init(create_attention(attention, sum(self.channels), **options), init)

    @property
    def weighs_modalities(self) -> bool:
        """Whether the block has a channel gate whose weights can be split by modality."""
        block = getattr(self.block, "block", self.block)
        return hasattr(getattr(block, "channel_gate", block), "channel_weights")

    def forward(self, *streams: Tensor) -> Tensor:
        _check_streams(streams, self.channels, "concat", same_size=True)
        return self.block(torch.cat(streams, 1))

    def modality_weights(self, *streams: Tensor) -> Tensor:
        """(N, streams): the block's mean channel weight over each stream's channels (blocks with a channel gate:
        SE, CBAM, …; ``init="identity"`` blends them as the output does, ``1 + α·(w − 1)``)."""
        _check_streams(streams, self.channels, "concat", same_size=True)
        block, alpha = (self.block.block, self.block.alpha) if hasattr(self.block, "alpha") else (self.block, None)
        gate = getattr(block, "channel_gate", block)
        if not hasattr(gate, "channel_weights"):
            raise ValueError(f"concat fusion's block {type(block).__name__} has no channel gate: it weighs no modality")
        weights = gate.channel_weights(torch.cat(streams, 1))
        if alpha is not None:
            weights = torch.lerp(torch.ones_like(weights), weights, alpha.to(weights.dtype))
        return torch.stack([part.mean(1) for part in weights.split(list(self.channels), 1)], 1)


FusionFactory = Callable[..., nn.Module]
FUSIONS: dict[str, FusionFactory] = {"mmtm": MMTM, "se-sum": SESum, "gated-sum": GatedSum, "concat": ConcatFusion}
"""Fusion blocks by name; ``channels`` is a list (one count per stream) for ``mmtm`` and ``concat``, one count for
the sums (``streams=`` says how many)."""


def list_fusions() -> list[str]:
    """Names accepted by :func:`create_fusion`.

    :returns: the fusion names, sorted.
    """
    return sorted(FUSIONS)


def create_fusion(name: str, channels: int | Sequence[int], **options: Any) -> nn.Module:
    """Build the fusion block registered as ``name``.

    :param name: one of :func:`list_fusions` (``mmtm``, ``se-sum``, ``gated-sum``, ``concat``).
    :param channels: a list of channel counts (one per stream) for ``mmtm`` and ``concat``; one count for the sums
        (``streams=`` says how many).
    :param options: the block's options.
    :returns: the fusion block.
    :raises ValueError: an unknown name (close matches named) or options the block refuses.
    """
    if name not in FUSIONS:
        close = difflib.get_close_matches(str(name), FUSIONS, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"fusion must be one of {list_fusions()}; got {name!r}{hint}")
    return FUSIONS[name](channels, **options)
