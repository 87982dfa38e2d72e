"""Plots people would rather see than read: confusion matrices and ablation bar charts (PNG)."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from plugattn.blocks import is_attention_block
from plugattn.inspection import capture, check_classes, excitation_statistics, gated_blocks, last_block_per_stage, gate_modules
from plugattn.data import DataBundle
from plugattn.extras import require
from plugattn.insertion import residual_spec

if TYPE_CHECKING:
    from plugattn.data.paired import PairedBundle

require("matplotlib", "viz")
from matplotlib import colormaps  # noqa: E402  (after the check that names the extra)
from matplotlib.figure import Figure  # noqa: E402


def _figure(**options: object) -> Figure:
    """A figure that draws on its own canvas: no pyplot, so no backend is chosen or changed for the process."""
    return Figure(**options)


def _tab10(positions: np.ndarray) -> np.ndarray:
    return colormaps["tab10"](positions % 10)


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike,
                   *, title: str = "") -> None:
    """Row-normalised confusion matrix (true class per row) with the counts' share in each cell."""
    matrix = np.asarray(confusion, dtype=float)
    share = matrix / np.clip(matrix.sum(1, keepdims=True), 1, None)
    size = max(4.0, 0.55 * len(classes) + 2)
    figure = _figure(figsize=(size, size * 0.9), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:
        axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
        axes.set_yticks(range(len(classes)), classes, fontsize=8)
        for (row, col), value in np.ndenumerate(share):
            axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="white" if value > 0.5 else "black")
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    figure.colorbar(image, fraction=0.046, pad=0.04)
    figure.tight_layout()
    figure.savefig(path)


def plot_bars(labels: Sequence[str], means: Sequence[float], stds: Sequence[float], path: str | os.PathLike,
              *, ylabel: str = "test top-1 accuracy", title: str = "", reference: float | None = None,
              reference_label: str = "control") -> None:
    """One bar per configuration with ±std error bars, and ``reference`` (e.g. the control's mean) as a
    dashed line; the y-axis zooms in on the values' range."""
    means, stds = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
    figure = _figure(figsize=(max(5.0, 0.9 * len(labels) + 2), 4), dpi=100)
    axes = figure.subplots()
    positions = np.arange(len(labels))
    axes.bar(positions, means, yerr=stds, capsize=4, color=_tab10(positions))
    low, high = float((means - stds).min()), float((means + stds).max())
    if reference is not None:
        low, high = min(low, reference), max(high, reference)
    margin = max(0.01, (high - low) * 0.5)
    axes.set_ylim(max(0.0, low - margin), min(1.0, high + margin) if high <= 1 else high + margin)
    axes.set_xticks(positions, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center",
                    fontsize=8)
    for x, mean in zip(positions, means):
        axes.text(x, mean, f"{mean:.4f}", ha="center", va="bottom", fontsize=8)
    if reference is not None:
        axes.axhline(reference, color="0.3", linestyle="--", linewidth=1, label=reference_label)
        axes.legend(loc="lower right", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def plot_before_after(labels: Sequence[str], before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]],
                      path: str | os.PathLike, *, before_label: str = "at insertion", after_label: str = "after fine-tuning",
                      ylabel: str = "test top-1 accuracy", title: str = "") -> None:
    """Two bars per configuration, (mean, std) before and after training, with ±std error bars and values."""
    figure = _figure(figsize=(max(5.5, 1.2 * len(labels) + 2), 4), dpi=100)
    axes = figure.subplots()
    positions = np.arange(len(labels))
    for offset, pairs, name, colour in ((-0.2, before, before_label, "#9ecae1"), (0.2, after, after_label, "#3182bd")):
        means, stds = np.asarray(pairs, dtype=float).reshape(-1, 2).T
        axes.bar(positions + offset, means, 0.38, yerr=stds, capsize=3, color=colour, label=name)
        for x, mean, std in zip(positions + offset, means, stds):
            axes.text(x, mean + std + 0.01, f"{mean:.1%}", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(positions, labels, fontsize=8)
    axes.set_ylim(0, 1.12)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", ncol=2, fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path)


# ---------------------------------------------------------------- what the attention learned

CELL_INCHES = 1.6
DPI = 100
"""Image grids use square cells of CELL_INCHES × DPI = 160 pixels: a grid of R rows and K columns is
exactly (160·K) × (160·R) pixels."""


def _display(images: Tensor) -> np.ndarray:
    """(N, C, H, W) float -> (N, H, W, 3) in [0, 1], each image min-max scaled for display."""
    x = images.detach().float().cpu()
    low = x.amin((1, 2, 3), keepdim=True)
    high = x.amax((1, 2, 3), keepdim=True)
    x = (x - low) / (high - low).clamp(min=1e-8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x[:, :3].permute(0, 2, 3, 1).numpy()


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> np.ndarray:
    return torch.nn.functional.interpolate(maps.float().cpu(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def _grid(rows: int, columns: int) -> tuple[Figure, np.ndarray]:
    figure = _figure(figsize=(CELL_INCHES * columns, CELL_INCHES * rows), dpi=DPI)
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92 if rows == 1 else 0.96, wspace=0.04, hspace=0.06)
    return figure, axes


def plot_overlays(images: Tensor, overlays: Sequence[np.ndarray], titles: Sequence[str], path: str | os.PathLike,
                  *, row_labels: Sequence[str] | None = None) -> None:
    """Rows: images; first column the image, then one heat-map overlay (values in [0, 1]) per column.
    Size: (160·(1 + len(overlays))) × (160·N) pixels."""
    shown = _display(images)
    figure, axes = _grid(len(shown), 1 + len(overlays))
    for row, image in enumerate(shown):
        axes[row, 0].imshow(image)
        if row_labels is not None:
            axes[row, 0].text(0.03, 0.97, row_labels[row], transform=axes[row, 0].transAxes, fontsize=7, va="top",
                              color="yellow", bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
        for column, overlay in enumerate(overlays, start=1):
            axes[row, column].imshow(image)
            axes[row, column].imshow(overlay[row], cmap="jet", alpha=0.5, vmin=0, vmax=1)
    for column, title in enumerate(["input", *titles]):
        axes[0, column].set_title(title, fontsize=8)
    figure.savefig(path)


def plot_excitation(stage_means: Mapping[str, Mapping[str, np.ndarray]], spreads: Mapping[str, float],
                    path: str | os.PathLike) -> None:
    """SENet-style excitation plot: per stage (panel), the mean channel weight per channel index for each
    class (line); the panel title carries the across-class spread. Size: (400·stages) × 320 pixels."""
    figure = _figure(figsize=(4 * len(stage_means), 3.2), dpi=DPI)
    axes = figure.subplots(1, len(stage_means), squeeze=False)
    for axis, (stage, by_class) in zip(axes[0], stage_means.items()):
        for class_name, mean in by_class.items():
            axis.plot(np.arange(len(mean)), mean, linewidth=0.8, label=class_name)
        axis.set_title(f"{stage}\nspread across classes {spreads[stage]:.4f}", fontsize=8)
        axis.set_xlabel("channel index", fontsize=8)
        axis.set_ylim(0, 1)
        axis.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("mean excitation", fontsize=8)
    axes[0, -1].legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)


def plot_channel_groups(weights: Tensor, groups: Mapping[str, Sequence[int]], path: str | os.PathLike,
                        *, title: str = "") -> None:
    """Mean channel weight per group of channels (e.g. per modality), error bars one std over samples.
    Size: 500 × 350 pixels."""
    per_sample = np.stack([weights[:, list(channels)].float().mean(1).cpu().numpy() for channels in groups.values()], 1)
    figure = _figure(figsize=(5, 3.5), dpi=DPI)
    axis = figure.subplots()
    positions = np.arange(len(groups))
    axis.bar(positions, per_sample.mean(0), yerr=per_sample.std(0), capsize=5, color=_tab10(positions))
    axis.set_xticks(positions, list(groups))
    axis.set_ylabel("mean attention weight")
    axis.set_ylim(0, max(1.0, float((per_sample.mean(0) + per_sample.std(0)).max()) * 1.1))
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


# ---------------------------------------------------------------- figures of what the attention learned (uses capture)

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


@torch.no_grad()
def spatial_attention_figure(model: nn.Module, images: Tensor, path: str | os.PathLike) -> dict[int, str]:
    """Spatial maps of the last block of each stage overlaid on the images (rows images, columns stages);
    returns the block drawn for each stage."""
    model.eval()
    with capture(model) as seen:
        model(images)
    chosen = last_block_per_stage(seen.names, lambda name: bool(seen[name].spatial or seen[name].element_maps))
    if not chosen:
        raise ValueError("the model's attention blocks have no spatial or element gate (SE, ECA, channel-only CBAM); "
                         "nothing to draw")
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
    GradCAM = require("pytorch_grad_cam", "viz").GradCAM
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
    """Write spatial.png (when the blocks have spatial or element gates), gradcam.png, excitation.png (when they have
    channel gates) and, with ``groups``, groups.png into ``out_dir``. For paired data: :func:`visualise_modalities`.

    :param model: a network with attention.
    :param data: its data set (the test split is drawn).
    :param out_dir: where the pictures go.
    :param plain: the same network without attention, for Grad-CAM side by side, or None.
    :param images: how many test images the spatial maps and Grad-CAM show.
    :param samples: how many test images the excitation statistics use.
    :param classes: the classes the excitation panels show (None: the first few).
    :param groups: channel groups of the input, ``name=first-last,…`` (e.g. ``rgb=0-2,depth=3``), for groups.png.
    :param block: the block whose weights groups.png draws (None: the first).
    :returns: what was written, by description.
    :raises ValueError: a model without attention, unknown classes or groups.
    """
    if hasattr(data, "modalities"):
        return visualise_modalities(model, data, out_dir, samples=min(samples, 1000))
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    transform = data.transform()
    test_images, test_labels = data.test_batch(max(images, samples))
    shown = check_images(model, transform(test_images[:images]), image_size=data.image_size)
    written: dict[str, pathlib.Path] = {}
    has = {gate.kind for _, block in gated_blocks(model) for gate in gate_modules(block)}
    if has & {"spatial", "element"}:  # element gates (SimAM, BAM, coord) draw as their channel-mean maps
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


# ---------------------------------------------------------------- attention across modalities


@torch.no_grad()
def _weights_pass(model: nn.Module, data: "PairedBundle", samples: int, batch_size: int = 250
                  ) -> tuple[dict[str, dict[str, Any]], float]:
    """One pass over ``samples`` test samples: every fusion block's modality weights (see :func:`modality_weights`)
    and the top-1 of that same pass."""
    model.eval()
    inputs, labels = data.test_batch(samples)
    transform = data.transform()
    with capture(model) as seen:
        logits = torch.cat([model(*transform([x[start:start + batch_size] for x in inputs]))
                            for start in range(0, len(labels), batch_size)])
    if not seen.fusion_names:
        raise ValueError("the model has no fusion block that weighs modalities (mmtm, se-sum, gated-sum, concat with a "
                         "channel gate, early fusion with one): nothing to draw")
    table: dict[str, dict[str, Any]] = {}
    for name in seen.fusion_names:
        weights = seen.modality_weights(name)
        table[name] = {
            "mean": dict(zip(data.modalities, weights.mean(0).tolist())),
            "per_class": {data.classes[c]: dict(zip(data.modalities, weights[labels == c].mean(0).tolist()))
                          for c in range(data.num_classes) if (labels == c).any()},
            "per_sample": weights.tolist(),
        }
    return table, float((logits.argmax(1) == labels).float().mean())


def modality_weights(model: nn.Module, data: "PairedBundle", *, samples: int = 1000, batch_size: int = 250
                     ) -> dict[str, dict[str, Any]]:
    """For every fusion block of ``model`` on ``samples`` test samples of ``data``: the mean weight each modality got
    (``mean``), per class (``per_class``), and per sample (``per_sample``, N × modalities)."""
    return _weights_pass(model, data, samples, batch_size)[0]


def default_corruption_levels(data: "PairedBundle") -> dict[str, list[tuple[str, tuple[str, float | None]]]]:
    """Per modality, the conditions :func:`modality_weights_under_corruption` sweeps: clean, noise at three
    strengths (SNR 10, 0, −10 dB where the source defines SNR; else 0.5, 1, 2 standard deviations), blank."""
    levels = {}
    for modality in data.modalities:
        strengths = (10.0, 0.0, -10.0) if modality in data.corrupt_hooks else (0.5, 1.0, 2.0)
        unit = " dB" if modality in data.corrupt_hooks else "σ"
        levels[modality] = ([("clean", ("none", None))] +
                            [(f"noise {s:g}{unit}", ("noise", s)) for s in strengths] + [("blank", ("blank", None))])
    return levels


def modality_weights_under_corruption(model: nn.Module, data: "PairedBundle", *, samples: int = 1000
                                      ) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """For each modality corrupted at each of :func:`default_corruption_levels`: every fusion block's mean weight
    per modality and the accuracy — ``{corrupted modality: {condition: {block or "top1": …}}}`` (the clean
    condition measured once, shared by every modality's sweep)."""
    clean: tuple[dict[str, dict[str, Any]], float] | None = None
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for modality, levels in default_corruption_levels(data).items():
        results[modality] = {}
        for label, (kind, strength) in levels:
            if kind == "none":
                clean = clean or _weights_pass(model, data, samples)
                table, top1 = clean
            else:
                table, top1 = _weights_pass(model, data.corrupted({modality: (kind, strength)}), samples)
            results[modality][label] = {**{name: entry["mean"] for name, entry in table.items()}, "top1": top1}
    return results


def plot_modality_weights(table: Mapping[str, Mapping[str, Any]], modalities: Sequence[str], path: str | os.PathLike,
                          *, title: str = "") -> None:
    """One group of bars per fusion block: the mean weight of each modality, with the spread over samples."""
    names = list(table)
    figure = _figure(figsize=(max(5.0, 1.4 * len(names) + 2), 4), dpi=100)
    axes = figure.subplots()
    width = 0.8 / len(modalities)
    for index, modality in enumerate(modalities):
        values = [np.asarray(table[name]["per_sample"])[:, index] for name in names]
        positions = np.arange(len(names)) + (index - (len(modalities) - 1) / 2) * width
        axes.bar(positions, [v.mean() for v in values], width, yerr=[v.std() for v in values], capsize=3,
                 label=modality, color=_tab10(np.array([index]))[0])
    axes.set_xticks(np.arange(len(names)), names, fontsize=8)
    axes.set_ylabel("mean weight (± std over samples)")
    axes.legend(fontsize=8)
    axes.set_title(title or "per-modality weights of each fusion block", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def plot_weights_under_corruption(results: Mapping[str, Mapping[str, Mapping[str, Any]]], modalities: Sequence[str],
                                  path: str | os.PathLike) -> None:
    """One panel per corrupted modality: each fusion block's weight of each modality (lines) and the accuracy
    (dashed, right axis) against the corruption's strength."""
    figure = _figure(figsize=(5.5 * len(results), 4), dpi=100)
    panels = np.atleast_1d(figure.subplots(1, len(results)))
    for axes, (corrupted, rows) in zip(panels, results.items()):
        conditions = list(rows)
        blocks = [name for name in rows[conditions[0]] if name != "top1"]
        for b, block in enumerate(blocks):
            for m, modality in enumerate(modalities):
                axes.plot(conditions, [rows[c][block][modality] for c in conditions], marker="o",
                          linestyle=("-", ":", "-.", "--")[b % 4], color=_tab10(np.array([m]))[0],
                          label=f"{block}: {modality}")
        axes.set_title(f"{corrupted} corrupted", fontsize=10)
        axes.set_ylabel("mean weight")
        axes.tick_params(axis="x", labelrotation=30, labelsize=8)
        accuracy = axes.twinx()
        accuracy.plot(conditions, [rows[c]["top1"] for c in conditions], color="0.3", linestyle="--", marker="x",
                      label="top-1")
        accuracy.set_ylim(0, 1)
        accuracy.set_ylabel("top-1 (dashed)")
        axes.legend(fontsize=6, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)


def visualise_modalities(model: nn.Module, data: "PairedBundle", out_dir: str | os.PathLike, *, samples: int = 1000
                         ) -> dict[str, pathlib.Path]:
    """Write modalities.png (per-modality weights of each fusion block), modalities_corrupted.png (against
    corruption strength) and modalities.json into ``out_dir``; returns what was written."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = modality_weights(model, data, samples=samples)
    plot_modality_weights(table, data.modalities, out / "modalities.png")
    results = modality_weights_under_corruption(model, data, samples=samples)
    plot_weights_under_corruption(results, data.modalities, out / "modalities_corrupted.png")
    summary = {"clean": {name: {k: v for k, v in entry.items() if k != "per_sample"} for name, entry in table.items()},
               "under_corruption": results}
    (out / "modalities.json").write_text(json.dumps(summary, indent=2))
    return {"per-modality weights": out / "modalities.png",
            "per-modality weights against corruption": out / "modalities_corrupted.png",
            "the numbers": out / "modalities.json"}
