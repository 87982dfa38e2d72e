"""Measuring a model on a test split, and reading a finished run's checkpoint back as a model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from plugattn.checkpoint import CheckpointError, load_checkpoint, split_prefix
from plugattn.data import BatchTransform, DataBundle, collate_skipping
from plugattn.data.paired import PairedBundle, is_paired, parse_corruptions
from plugattn.preprocessing import Preprocessing
from plugattn.recipe import ModelRecipe, classifier_of
from plugattn.recipe import build_model as build_from_recipe
from plugattn.training.config import TrainConfig, config_from_checkpoint
from plugattn.training.setup import (
    build_model,
    describe_preprocessing,
    load_normalized,
    recipe_preprocessing,
    setup_runtime,
    to_device,
)

@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, transform: BatchTransform, num_classes: int,
                   device: torch.device, autocast: Any = None, memory_format: torch.memory_format = torch.contiguous_format
                   ) -> dict[str, Any]:
    """Loss, top-1/top-5 accuracy, per-class accuracy and the confusion matrix on ``loader``."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum, top5_hits, seen = 0.0, 0, 0
    for images, labels in loader:
        if not len(labels):
            continue
        x = to_device(transform(to_device(images, device)[0] if isinstance(images, Tensor) else images), device,
                      memory_format)
        labels = labels.to(device)
        with autocast or torch.autocast(device.type, enabled=False):
            logits = model(*x).float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        k = min(5, num_classes)
        top5_hits += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum().item()
        confusion += torch.bincount(labels.cpu() * num_classes + logits.argmax(1).cpu(),
                                    minlength=num_classes**2).view(num_classes, num_classes)
        seen += labels.numel()
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1)).tolist()
    return {
        "loss": loss_sum / max(1, seen),
        "top1": confusion.diag().sum().item() / max(1, seen),
        "top5": top5_hits / max(1, seen),
        "per_class_accuracy": per_class,
        "confusion": confusion.tolist(),
        "samples": seen,
    }


def load_trained(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None
                 ) -> tuple[nn.Module, DataBundle, TrainConfig, dict[str, Any]]:
    """The model of a checkpoint written by :func:`train`, rebuilt from the recipe the checkpoint records.

    :param path: the checkpoint.
    :param dataset: another data set to pair it with (as many classes), or None: the run's.
    :param data_dir: where that data set lives.
    :returns: the model (eval mode), its data set, its config and the checkpoint's metadata.
    :raises plugattn.checkpoint.CheckpointError: a corrupt or foreign file.
    :raises plugattn.data.DataError: data that cannot be found or read.
    """
    tensors, meta = load_checkpoint(path)
    config = config_from_checkpoint(meta)
    recorded = meta.get("preprocessing")  # absent in checkpoints written before it was recorded: the data set's own
    source = Preprocessing.from_dict(recorded) if recorded and not is_paired(config.dataset) else None
    data, _ = load_normalized(dataset or config.dataset, data_dir or config.data_dir, "weights" if source else "dataset",
                              source, image_size=config.image_size, augment=config.augment, progress=False)
    model, _ = build_model(config, data, load_weights=False)
    try:
        model.load_state_dict(split_prefix(tensors, "model"))
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} (trained on {config.dataset}) does not fit model {config.model} "
                              f"on {data.name}: {error}") from error
    return model.eval(), data, config, meta


def load_published(recipe: ModelRecipe, dataset: str, *, data_dir: str | None = None, image_size: int | None = None,
                   augment: str = "cifar") -> tuple[nn.Module, DataBundle, list[str]]:
    """The model ``recipe`` describes with its weights as they are (classifier kept; eval mode), the data set, and
    notes on the build. The data set must have the classes the weights' classifier has: a replaced classifier
    would be random, and measuring or drawing it would mean nothing."""
    if not recipe.weights:
        raise ValueError("--weights is needed with --model: without them the network is random (for a run of "
                         "`plugattn train`, pass its checkpoint instead)")
    mode, source = recipe_preprocessing(recipe)
    data, used = load_normalized(dataset, data_dir, mode, source, image_size=image_size, augment=augment,
                                 progress=False)
    model, notes = build_from_recipe(recipe, num_classes=None, in_channels=data.in_channels)
    notes.append(describe_preprocessing(used))
    outputs = getattr(classifier_of(model)[1], "out_features", None)
    if outputs != data.num_classes:
        raise ValueError(f"the classifier of {recipe.model} with weights {recipe.weights} has {outputs} outputs but "
                         f"{data.name} has {data.num_classes} classes: fine-tune it first (plugattn train --model "
                         f"{recipe.model} --weights {recipe.weights} …) and use that run's checkpoint")
    return model.eval(), data, notes


def evaluate_on_test(model: nn.Module, data: DataBundle, *, batch_size: int = 256, device: str = "auto",
                     limit: int | None = None) -> dict[str, Any]:
    """:func:`evaluate_model` over ``data``'s test split (its first ``limit`` samples when given)."""
    runtime_device = setup_runtime(device).device
    test = data.test if limit is None else Subset(data.test, range(min(limit, len(data.test))))
    loader = DataLoader(test, batch_size, shuffle=False, collate_fn=collate_skipping)
    return evaluate_model(model.to(runtime_device), loader, data.transform(), data.num_classes, runtime_device)


def evaluate_checkpoint(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None,
                        batch_size: int = 256, device: str = "auto", corrupt: Sequence[str] = (),
                        limit: int | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint written by :func:`train` on its data set's test split.

    :param path: the checkpoint.
    :param dataset: another data set's test split (as many classes), or None: the run's.
    :param data_dir: where that data set lives.
    :param batch_size: evaluation batch size.
    :param device: ``auto``, ``cpu`` or ``cuda``.
    :param corrupt: paired data only: corruptions to evaluate under as well (``"audio=noise:0"``, see
        :func:`plugattn.data.paired.parse_corruptions`).
    :param limit: the first ``limit`` test samples only.
    :returns: top-1/top-5, per-class accuracy, and for corruptions their results under ``corrupted``.
    :raises ValueError: corruptions of a single-modality data set, or of an unknown modality.
    :raises plugattn.checkpoint.CheckpointError: a corrupt or foreign file.
    """
    model, data, _, meta = load_trained(path, dataset=dataset, data_dir=data_dir)
    conditions = {text: parse_corruptions(text) for text in corrupt}
    if conditions and not isinstance(data, PairedBundle):
        raise ValueError(f"--corrupt applies to paired data (modalities); {data.name} is a single-modality data set")
    corrupted = {text: data.corrupted(parsed) for text, parsed in conditions.items()}  # bad names fail before any run
    metrics = evaluate_on_test(model, data, batch_size=batch_size, device=device, limit=limit)
    if corrupted:
        metrics["corrupted"] = {text: evaluate_on_test(model, variant, batch_size=batch_size, device=device,
                                                       limit=limit) for text, variant in corrupted.items()}
    return {"checkpoint": str(path), "epoch": meta["epoch"], "classes": list(data.classes), **metrics}
