"""What a run writes as it goes and reads back on resume: checkpoints (model, optimiser, schedule, scaler,
EMA, random state, progress) and the per-epoch metrics table."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from plugattn.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_checkpoint,
    optimizer_to_checkpoint,
    restore_rng,
    rng_tensors,
    save_checkpoint,
    split_prefix,
)
from plugattn.models.units import default_position
from plugattn.training.config import ARCHITECTURE_FIELDS, TrainConfig, config_from_checkpoint
from plugattn.training.setup import EpochContext, unwrap


@dataclass
class RunProgress:
    """How far a run has come: saved in each checkpoint, restored on resume."""

    epoch: int = 0
    step: int = 0
    best_top1: float = -1.0
    history: list[dict[str, float]] = field(default_factory=list)
    start_metrics: dict[str, float] | None = None
    """Test metrics of the model as built, before any step (runs that start from weights)."""


def save_run(path: pathlib.Path, context: EpochContext, progress: RunProgress) -> None:
    """Everything needed to continue the run exactly, in one safetensors file."""
    optimizer_tensors, optimizer_meta = optimizer_to_checkpoint(context.optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in unwrap(context.model).state_dict().items()} | optimizer_tensors | rng_tensors()
    if context.ema is not None:
        tensors |= {f"ema.{k}": v for k, v in context.ema.state_dict().items()}
    scaler = context.scaler
    meta = {
        "config": dataclasses.asdict(context.config), "epoch": progress.epoch, "step": progress.step,
        "best_top1": progress.best_top1, "history": progress.history, "start_metrics": progress.start_metrics,
        "optimizer": optimizer_meta, "scheduler": context.scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "torch": torch.__version__,
        "preprocessing": context.preprocessing.to_dict() if context.preprocessing is not None else None,
    }
    save_checkpoint(path, tensors, meta)


def restore_run(path: str | os.PathLike, context: EpochContext) -> RunProgress:
    """Load a checkpoint of this run into ``context`` (refusing one of another architecture or data set)."""
    tensors, meta = load_checkpoint(path)
    check_compatible(meta, context.config, path)
    unwrap(context.model).load_state_dict(split_prefix(tensors, "model"))
    context.optimizer.load_state_dict(optimizer_from_checkpoint(tensors, meta["optimizer"]))
    context.scheduler.load_state_dict(meta["scheduler"])
    if meta.get("scaler"):
        context.scaler.load_state_dict(meta["scaler"])
    if context.ema is not None:
        context.ema.load_state_dict(split_prefix(tensors, "ema"))
    restore_rng(tensors)
    return RunProgress(meta["epoch"], meta["step"], meta["best_top1"], meta["history"], meta.get("start_metrics"))


def check_compatible(meta: Mapping[str, Any], config: TrainConfig, path: os.PathLike | str) -> None:
    """Refuse a checkpoint whose architecture or data set differs from ``config``, naming each difference."""
    stored = json.loads(json.dumps(config_from_checkpoint(meta).architecture())) if "config" in meta else {}
    wanted = json.loads(json.dumps(config.with_resolved_init().architecture()))
    for fields in (stored, wanted):  # an unset position is the block's official one (checkpoints before it: explicit)
        if fields.get("position") is None:
            fields["position"] = default_position(fields.get("attention"))
    differences = [f"{name}: checkpoint has {stored.get(name)!r}, this run has {wanted[name]!r}"
                   for name in ARCHITECTURE_FIELDS if stored.get(name) != wanted[name]]
    if differences:
        raise CheckpointError(f"checkpoint {path} does not match this run — " + "; ".join(differences))


def write_metrics(path: pathlib.Path, history: list[dict[str, float]]) -> None:
    """``metrics.csv``: one row per finished epoch."""
    if not history:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
