"""Look inside: record the channel weights and spatial maps every attention block produced (drawing them is
the application's part: :mod:`plugattn.visualisation`).

``with plugattn.capture(model) as seen: model(x)`` hooks the blocks' gate activations for the duration of
the ``with`` only, so a model that is not being watched pays nothing, and keeps nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from plugattn.blocks import GateActivation, IdentityStart, find_attention_blocks
from plugattn.insertion import stage_numbers


@dataclass
class AttentionRecord:
    """What one block produced in each forward pass: channel weights (N, C), spatial maps ``(N, 1, *S)``, other gates
    (``element``: SimAM's weight per element, Triplet attention's maps over rotated axes), for blocks whose gates
    are all element gates (SimAM, BAM, coordinate attention) the channel mean of their product in each pass
    (``element_maps``, ``(N, 1, *S)``: where the block weighs the map), and for fusion blocks the mean weight each
    modality got (N, modalities)."""

    name: str
    channel: list[Tensor] = field(default_factory=list)
    spatial: list[Tensor] = field(default_factory=list)
    element: list[Tensor] = field(default_factory=list)
    element_maps: list[Tensor] = field(default_factory=list)
    modality: list[Tensor] = field(default_factory=list)


class AttentionCapture:
    """The records of every attention block of a model, by block name, in module order (what :func:`capture`
    yields; ``seen[name]`` is a block's :class:`AttentionRecord`).

    :param names: the blocks' qualified names.
    """

    def __init__(self, names: list[str]) -> None:
        self.records = {name: AttentionRecord(name) for name in names}

    @property
    def names(self) -> list[str]:
        """The blocks' names, in module order."""
        return list(self.records)

    def __getitem__(self, name: str) -> AttentionRecord:
        if name not in self.records:
            raise KeyError(f"no attention block named {name!r}; blocks: {self.names}")
        return self.records[name]

    def channel_weights(self, name: str, forward_pass: int = -1) -> Tensor:
        """Channel weights of one block in one forward pass.

        :param name: the block's qualified name (:attr:`names`).
        :param forward_pass: which pass (default: the last).
        :returns: (N, C).
        :raises KeyError: an unknown block.
        :raises ValueError: a block without a channel gate, or no forward pass yet.
        """
        record = self[name]
        if not record.channel:
            raise ValueError(f"block {name!r} recorded no channel weights (it has no channel gate, or no forward ran)")
        return record.channel[forward_pass]

    def spatial_map(self, name: str, forward_pass: int = -1) -> Tensor:
        """The spatial map of one block in one forward pass; for a block with element gates only, the channel mean
        of their product (``element_maps``).

        :param name: the block's qualified name.
        :param forward_pass: which pass (default: the last).
        :returns: ``(N, 1, *spatial)``.
        :raises KeyError: an unknown block.
        :raises ValueError: a block without a spatial gate, or no forward pass yet.
        """
        record = self[name]
        if not record.spatial and record.element_maps:
            return record.element_maps[forward_pass]
        if not record.spatial:
            raise ValueError(f"block {name!r} recorded no spatial map (it has no spatial gate, or no forward ran)")
        return record.spatial[forward_pass]

    def modality_weights(self, name: str) -> Tensor:
        """The mean weight (N, modalities) each modality got from fusion block ``name``, over every forward pass
        (concatenated along the batch)."""
        record = self[name]
        if not record.modality:
            raise ValueError(f"block {name!r} recorded no modality weights (it is not a fusion block, or no forward ran)")
        return torch.cat(record.modality)

    @property
    def fusion_names(self) -> list[str]:
        """The blocks that recorded modality weights."""
        return [name for name, record in self.records.items() if record.modality]


def weighing_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost modules of ``model`` that weigh modalities (fusion blocks, early fusion: a
    ``modality_weights`` method)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if callable(getattr(module, "modality_weights", None)) and getattr(module, "weighs_modalities", True) and \
                not any(outer == "" or name.startswith(f"{outer}.") for outer, _ in found):
            found.append((name, module))
    return found


def gate_modules(block: nn.Module) -> list[GateActivation]:
    return [module for module in block.modules() if isinstance(module, GateActivation)]


def gated_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention blocks of ``model`` whose gates can be observed; raises when there are none."""
    blocks = [(name, block) for name, block in find_attention_blocks(model) if gate_modules(block)]
    if not blocks and not weighing_blocks(model):
        raise ValueError(
            f"{type(model).__name__} has no attention blocks to capture; add some with plugattn.attach(model, ...) "
            "or build the model with attention='se'/'cbam'"
        )
    return blocks


@contextmanager
def capture(model: nn.Module) -> Iterator[AttentionCapture]:
    """Record each attention block's channel weights and spatial maps, and each fusion block's modality weights
    (detached), for every forward pass run inside the ``with``; the hooks go when it ends, so a model that is
    not watched pays nothing.

    :param model: a network with attention (zoo, attached, fusion).
    :returns: a context manager yielding the :class:`AttentionCapture`.
    :raises ValueError: a model without attention blocks.
    """
    blocks = gated_blocks(model)
    weighing = weighing_blocks(model)
    weighing = [(name or "input", block) for name, block in weighing]  # the model itself: early fusion's input
    seen = AttentionCapture(list(dict.fromkeys([name for name, _ in blocks] + [name for name, _ in weighing])))
    handles = []
    for name, block in weighing:
        record = seen.records[name]

        def weigh(module: nn.Module, args: tuple, _output: object, record: AttentionRecord = record) -> None:
            with torch.no_grad():
                record.modality.append(module.modality_weights(*args).detach())

        handles.append(block.register_forward_hook(weigh))
    for name, block in blocks:
        record = seen.records[name]
        for gate in gate_modules(block):
            target = {"channel": record.channel, "spatial": record.spatial}.get(gate.kind, record.element)
            handles.append(gate.register_forward_hook(lambda _m, _a, output, target=target: target.append(output.detach())))
        if {gate.kind for gate in gate_modules(block)} == {"element"}:
            handles += _hook_element_maps(block, record)
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def block_stages(names: list[str]) -> dict[str, int]:
    """1-based stage of each block (``layer3.1.attention`` sits in unit ``layer3.1``, whose parent ``layer3``
    is the network's third container of units)."""
    units = {name: name.rpartition(".")[0] for name in names}
    stages = stage_numbers(list(dict.fromkeys(units.values())))
    return {name: stages[unit] for name, unit in units.items()}


def last_block_per_stage(names: list[str], keep: Callable[[str], bool]) -> dict[int, str]:
    stages = block_stages(names)
    chosen: dict[int, str] = {}
    for name in names:
        if keep(name):
            chosen[stages[name]] = name  # later blocks of a stage overwrite earlier ones
    return chosen


def _hook_element_maps(block: nn.Module, record: AttentionRecord) -> list:
    """Hooks that turn the element gates one forward pass of ``block`` produced into ``record.element_maps``."""
    first = [0]

    def start(_module: nn.Module, _args: tuple) -> None:
        first[0] = len(record.element)

    def finish(_module: nn.Module, _args: tuple, output: object) -> None:
        gates = record.element[first[0]:]
        if gates and isinstance(output, Tensor):
            product = gates[0]
            for gate in gates[1:]:
                product = product * gate
            record.element_maps.append(product.mean(1, keepdim=True).expand(-1, -1, *output.shape[2:]))

    return [block.register_forward_pre_hook(start), block.register_forward_hook(finish)]


def check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    """Class indices within ``0 .. num_classes-1``, else a clear error."""
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"class indices must be in 0..{num_classes - 1}; got {bad}")
    return list(classes)


@torch.no_grad()
def excitation_statistics(model: nn.Module, images: Tensor, labels: Tensor, classes: Sequence[int],
                          *, batch_size: int = 256) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, float]]:
    """Per stage (last block with channel weights), the mean excitation per channel for each class, and the
    across-class spread: the channel-averaged standard deviation of those class means."""
    model.eval()
    keep = torch.isin(labels, torch.tensor(list(classes)))
    images, labels = images[keep], labels[keep]
    with capture(model) as seen:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    chosen = last_block_per_stage(seen.names, lambda name: bool(seen[name].channel))
    if not chosen:
        raise ValueError("the model's attention blocks have no channel gate; nothing to draw")
    means: dict[str, dict[int, np.ndarray]] = {}
    spreads: dict[str, float] = {}
    for stage, name in chosen.items():
        weights = torch.cat(seen[name].channel)
        by_class = {c: weights[labels == c].mean(0).numpy() for c in classes if (labels == c).any()}
        label = f"stage {stage} ({name})"
        means[label] = by_class
        spreads[label] = float(np.stack(list(by_class.values())).std(0).mean())
    return means, spreads


@torch.no_grad()
def gate_spread(model: nn.Module, images: Tensor, *, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """How much each attention block's gates vary, and how far they sit from 1 (the identity), on ``images``.

    Per block and gate kind (``channel``, ``spatial``, ``element``): ``spread`` is the standard deviation of
    the gate across channels (channel gates) or across its positions (the others), averaged over images;
    ``shift`` the mean ``|g − 1|``. A gate inside :class:`~plugattn.blocks.IdentityStart` counts as its
    effective value ``1 + α·(g − 1)`` (exact for one-gate blocks). A block that learnt nothing is flat:
    spread 0.

    :param model: a network with attention (set to eval mode).
    :param images: the (normalised) input batch.
    :param batch_size: how many images per forward pass.
    :returns: block name → ``{"<kind> spread": …, "<kind> shift": …}``.
    :raises ValueError: a model without attention blocks.
    """
    model.eval()
    blends = {name: block.blend() for name, block in find_attention_blocks(model) if isinstance(block, IdentityStart)}
    sums: dict[str, dict[str, float]] = {}
    with capture(model) as seen:
        for start in range(0, len(images), batch_size):
            model(images[start : start + batch_size])
    for name in seen.names:
        record = seen[name]
        alpha = blends.get(name)
        for kind, outputs in (("channel", record.channel), ("spatial", record.spatial), ("element", record.element)):
            spreads, shifts = [], []
            for gate in outputs:
                gate = gate.double() if alpha is None else 1 + alpha.double() * (gate.double() - 1)
                spreads.append(gate.flatten(1).std(1).mean().item())
                shifts.append((gate - 1).abs().mean().item())
            if spreads:
                sums.setdefault(name, {})[f"{kind} spread"] = float(np.mean(spreads))
                sums[name][f"{kind} shift"] = float(np.mean(shifts))
    return sums
