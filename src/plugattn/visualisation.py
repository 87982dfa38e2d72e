"""Plots people would rather see than read: confusion matrices and ablation bar charts (PNG)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
