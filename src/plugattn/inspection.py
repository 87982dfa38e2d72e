"""Look inside: record the channel weights and spatial maps every attention block produced.

``with plugattn.capture(model) as seen: model(x)`` hooks the blocks' gate activations for the duration of
the ``with`` only, so a model that is not being watched pays nothing, and keeps nothing afterwards.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from plugattn.blocks import GateActivation, find_attention_blocks, is_attention_block
from plugattn.data import BatchTransform, DataBundle
from plugattn.insertion import residual_spec, stage_numbers
from plugattn.visualisation import upsample_maps, plot_channel_groups, plot_excitation, plot_overlays


@dataclass
class AttentionRecord:
    """What one block produced in each forward pass: channel weights (N, C) and spatial maps (N, 1, *S)."""

    name: str
    channel: list[Tensor] = field(default_factory=list)
    spatial: list[Tensor] = field(default_factory=list)


class AttentionCapture:
    """The records of every attention block of a model, by block name, in module order."""

    def __init__(self, names: list[str]) -> None:
        self.records = {name: AttentionRecord(name) for name in names}

    @property
    def names(self) -> list[str]:
        return list(self.records)

    def __getitem__(self, name: str) -> AttentionRecord:
        if name not in self.records:
            raise KeyError(f"no attention block named {name!r}; blocks: {self.names}")
        return self.records[name]

    def channel_weights(self, name: str, forward_pass: int = -1) -> Tensor:
        """Channel weights (N, C) of block ``name`` in one forward pass (default: the last)."""
        record = self[name]
        if not record.channel:
            raise ValueError(f"block {name!r} recorded no channel weights (it has no channel gate, or no forward ran)")
        return record.channel[forward_pass]

    def spatial_map(self, name: str, forward_pass: int = -1) -> Tensor:
        """Spatial map (N, 1, *spatial) of block ``name`` in one forward pass (default: the last)."""
        record = self[name]
        if not record.spatial:
            raise ValueError(f"block {name!r} recorded no spatial map (it has no spatial gate, or no forward ran)")
        return record.spatial[forward_pass]


def _gates(block: nn.Module) -> list[GateActivation]:
    return [module for module in block.modules() if isinstance(module, GateActivation)]


def gated_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The attention blocks of ``model`` whose gates can be observed; raises when there are none."""
    blocks = [(name, block) for name, block in find_attention_blocks(model) if _gates(block)]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} has no attention blocks to capture; add some with plugattn.attach(model, ...) "
            "or build the model with attention='se'/'cbam'"
        )
    return blocks


@contextmanager
def capture(model: nn.Module) -> Iterator[AttentionCapture]:
    """Record each attention block's channel weights and spatial maps (detached) for every forward pass
    run inside the ``with``. Raises when ``model`` holds no attention block."""
    blocks = gated_blocks(model)
    seen = AttentionCapture([name for name, _ in blocks])
    handles = []
    for name, block in blocks:
        record = seen.records[name]
        for gate in _gates(block):
            target = record.channel if gate.kind == "channel" else record.spatial
            handles.append(gate.register_forward_hook(lambda _m, _a, output, target=target: target.append(output.detach())))
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


# ---------------------------------------------------------------- figures of what the attention learned

def _input_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return module.in_channels
        if is_attention_block(module) and hasattr(module, "channels"):
            return module.channels
    return None


def check_images(model: nn.Module, images: Tensor, *, image_size: Sequence[int] | None = None) -> Tensor:
    """Return ``images`` if they are a float batch (N, C, H, W) the model takes; else a clear error."""
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a float tensor (N, C, H, W), got {shape}")
    channels = _input_channels(model)
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"images have {images.shape[1]} channels but the model takes {channels} (images {tuple(images.shape)})")
    if image_size is not None and tuple(images.shape[2:]) != tuple(image_size):
        raise ValueError(f"images are {tuple(images.shape[2:])} but the model was trained on {tuple(image_size)}")
    return images


def _last_block_per_stage(names: list[str], keep: Callable[[str], bool]) -> dict[int, str]:
    stages = block_stages(names)
    chosen: dict[int, str] = {}
    for name in names:
        if keep(name):
            chosen[stages[name]] = name  # later blocks of a stage overwrite earlier ones
    return chosen


@torch.no_grad()
def spatial_attention_figure(model: nn.Module, images: Tensor, path: str | os.PathLike) -> dict[int, str]:
    """Spatial maps of the last block of each stage overlaid on the images (rows images, columns stages);
    returns the block drawn for each stage."""
    model.eval()
    with capture(model) as seen:
        model(images)
    chosen = _last_block_per_stage(seen.names, lambda name: bool(seen[name].spatial))
    if not chosen:
        raise ValueError("the model's attention blocks have no spatial gate (SE or channel-only CBAM); nothing to draw")
    size = tuple(images.shape[2:])
    overlays = [upsample_maps(seen.spatial_map(name), size) for name in chosen.values()]
    plot_overlays(images, overlays, [f"stage {s}\n{name}" for s, name in chosen.items()], path)
    return chosen


def default_target_layer(model: nn.Module) -> nn.Module:
    """The deepest residual unit (else the last 2-D convolution): where Grad-CAM looks by default."""
    units = [m for m in model.modules() if residual_spec(m) is not None]
    if units:
        return units[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no residual unit or Conv2d for Grad-CAM; pass target_layer")
    return convs[-1]


def gradcam_maps(model: nn.Module, images: Tensor, classes: Sequence[int], target_layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM (pytorch-grad-cam) maps (N, H, W) in [0, 1] for the given target class of each image."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model.eval()
    with GradCAM(model=model, target_layers=[target_layer or default_target_layer(model)]) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def gradcam_figure(plain: nn.Module | None, model: nn.Module, images: Tensor, labels: Sequence[int],
                   path: str | os.PathLike, *, class_names: Sequence[str] | None = None,
                   target_layer: nn.Module | None = None) -> None:
    """Grad-CAM for the true class: the plain model beside the attention model (or the attention model alone)."""
    overlays, titles = [], []
    if plain is not None:
        overlays.append(gradcam_maps(plain, images, labels))
        titles.append("Grad-CAM plain")
    overlays.append(gradcam_maps(model, images, labels, target_layer))
    titles.append("Grad-CAM attention")
    names = [class_names[label] if class_names else str(label) for label in labels]
    plot_overlays(images, overlays, titles, path, row_labels=names)


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
    chosen = _last_block_per_stage(seen.names, lambda name: bool(seen[name].channel))
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


def excitation_figure(model: nn.Module, images: Tensor, labels: Tensor, class_names: Sequence[str],
                      path: str | os.PathLike, *, classes: Sequence[int] | None = None) -> dict[str, float]:
    """The SENet "excitation per class and stage" plot; returns each stage's across-class spread."""
    classes = check_classes(list(classes) if classes is not None else list(range(min(4, len(class_names)))), len(class_names))
    means, spreads = excitation_statistics(model, images, labels, classes)
    named = {stage: {class_names[c]: mean for c, mean in by_class.items()} for stage, by_class in means.items()}
    plot_excitation(named, spreads, path)
    return spreads


def parse_groups(text: str) -> dict[str, list[int]]:
    """``"image=0,edges=1,noise=2"`` or ``"rgb=0-2,depth=3"`` -> {name: channel indices}."""
    groups: dict[str, list[int]] = {}
    for part in text.split(","):
        name, sep, span = part.partition("=")
        try:
            low, _, high = span.partition("-")
            groups[name] = list(range(int(low), int(high or low) + 1))
        except ValueError:
            raise ValueError(f"groups must look like name=0-2,other=3; got {part!r}") from None
        if not sep or not name:
            raise ValueError(f"groups must look like name=0-2,other=3; got {part!r}")
    return groups


@torch.no_grad()
def channel_group_figure(model: nn.Module, images: Tensor, groups: Mapping[str, Sequence[int]],
                         path: str | os.PathLike, *, block: str | None = None) -> dict[str, float]:
    """Mean channel weight per channel group of one block (default: the first), e.g. per input modality;
    returns the mean weight of each group."""
    model.eval()
    with capture(model) as seen:
        model(images)
    name = block or next((n for n in seen.names if seen[n].channel), None)
    if name is None:
        raise ValueError("the model's attention blocks have no channel gate; nothing to draw")
    weights = seen.channel_weights(name)
    out_of_range = [c for channels in groups.values() for c in channels if not 0 <= c < weights.shape[1]]
    if out_of_range:
        raise ValueError(f"group channels must be in 0..{weights.shape[1] - 1} for block {name!r}; got {out_of_range}")
    plot_channel_groups(weights, groups, path, title=f"{name}: mean weight per channel group")
    return {group: float(weights[:, list(channels)].mean()) for group, channels in groups.items()}


def visualise(model: nn.Module, data: DataBundle, out_dir: str | os.PathLike, *, plain: nn.Module | None = None,
              images: int = 6, samples: int = 2000, classes: Sequence[int] | None = None, groups: str | None = None,
              block: str | None = None) -> dict[str, pathlib.Path]:
    """Write spatial.png (when the blocks have spatial gates), gradcam.png, excitation.png (when they have
    channel gates) and, with ``groups``, groups.png into ``out_dir``; returns what was written."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transform = BatchTransform(data.mean, data.std)
    test_images, test_labels = data.test.images, data.test.labels
    shown = check_images(model, transform(test_images[:images]), image_size=data.image_size)
    written: dict[str, pathlib.Path] = {}
    has = {gate.kind for _, block in gated_blocks(model) for gate in _gates(block)}
    if "spatial" in has:
        spatial_attention_figure(model, shown, out / "spatial.png")
        written["spatial maps per stage"] = out / "spatial.png"
    gradcam_figure(plain, model, shown.clone(), test_labels[:images].tolist(), out / "gradcam.png", class_names=data.classes)
    written["Grad-CAM"] = out / "gradcam.png"
    if "channel" in has:
        many = transform(test_images[:samples])
        spreads = excitation_figure(model, many, test_labels[:samples], data.classes, out / "excitation.png", classes=classes)
        (out / "excitation_spread.json").write_text(json.dumps(spreads, indent=2))
        written["excitation per class and stage"] = out / "excitation.png"
        if groups:
            channel_group_figure(model, many[:512], parse_groups(groups), out / "groups.png", block=block)
            written["mean weight per channel group"] = out / "groups.png"
    return written
