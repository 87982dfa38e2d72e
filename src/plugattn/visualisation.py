"""Plots people would rather see than read: confusion matrices and ablation bar charts (PNG)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | os.PathLike,
                   *, title: str = "") -> None:
    """Row-normalised confusion matrix (true class per row) with the counts' share in each cell."""
    matrix = np.asarray(confusion, dtype=float)
    share = matrix / np.clip(matrix.sum(1, keepdims=True), 1, None)
    size = max(4.0, 0.55 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(size, size * 0.9), dpi=100)
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
    plt.close(figure)


def plot_bars(labels: Sequence[str], means: Sequence[float], stds: Sequence[float], path: str | os.PathLike,
              *, ylabel: str = "test top-1 accuracy", title: str = "") -> None:
    """One bar per configuration with ±std error bars; the y-axis zooms in on the values' range."""
    means, stds = np.asarray(means, dtype=float), np.nan_to_num(np.asarray(stds, dtype=float))
    figure, axes = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 2), 4), dpi=100)
    positions = np.arange(len(labels))
    axes.bar(positions, means, yerr=stds, capsize=4, color=plt.cm.tab10(positions % 10))
    low, high = float((means - stds).min()), float((means + stds).max())
    margin = max(0.01, (high - low) * 0.5)
    axes.set_ylim(max(0.0, low - margin), min(1.0, high + margin) if high <= 1 else high + margin)
    axes.set_xticks(positions, labels, rotation=30 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center",
                    fontsize=8)
    for x, mean in zip(positions, means):
        axes.text(x, mean, f"{mean:.4f}", ha="center", va="bottom", fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


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


def _grid(rows: int, columns: int) -> tuple[plt.Figure, np.ndarray]:
    figure, axes = plt.subplots(rows, columns, figsize=(CELL_INCHES * columns, CELL_INCHES * rows), dpi=DPI,
                                squeeze=False)
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
    plt.close(figure)


def plot_excitation(stage_means: Mapping[str, Mapping[str, np.ndarray]], spreads: Mapping[str, float],
                    path: str | os.PathLike) -> None:
    """SENet-style excitation plot: per stage (panel), the mean channel weight per channel index for each
    class (line); the panel title carries the across-class spread. Size: (400·stages) × 320 pixels."""
    figure, axes = plt.subplots(1, len(stage_means), figsize=(4 * len(stage_means), 3.2), dpi=DPI, squeeze=False)
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
    plt.close(figure)


def plot_channel_groups(weights: Tensor, groups: Mapping[str, Sequence[int]], path: str | os.PathLike,
                        *, title: str = "") -> None:
    """Mean channel weight per group of channels (e.g. per modality), error bars one std over samples.
    Size: 500 × 350 pixels."""
    per_sample = np.stack([weights[:, list(channels)].float().mean(1).cpu().numpy() for channels in groups.values()], 1)
    figure, axis = plt.subplots(figsize=(5, 3.5), dpi=DPI)
    positions = np.arange(len(groups))
    axis.bar(positions, per_sample.mean(0), yerr=per_sample.std(0), capsize=5, color=plt.cm.tab10(positions % 10))
    axis.set_xticks(positions, list(groups))
    axis.set_ylabel("mean attention weight")
    axis.set_ylim(0, max(1.0, float((per_sample.mean(0) + per_sample.std(0)).max()) * 1.1))
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
