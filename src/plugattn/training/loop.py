"""The training loop: epochs of optimiser steps, an evaluation and a checkpoint after each, a summary at the
end; the same loop for one process and for DDP."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import signal
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plugattn.compilation import compile as plugattn_compile
from plugattn.compilation import compile_mode, compiled_regions
from plugattn.data import DataBundle
from plugattn.data.paired import PairedBundle, is_paired
from plugattn.extras import require
from plugattn.preprocessing import Preprocessing, recorded_preprocessing
from plugattn.profiling import count_macs, count_parameters
from plugattn.training.config import TrainConfig
from plugattn.training.evaluation import evaluate_model
from plugattn.training.records import RunProgress, restore_run, save_run, write_metrics
from plugattn.training.setup import (
    EpochContext,
    barrier,
    build_model,
    describe_preprocessing,
    load_normalized,
    lr_factor,
    make_loaders,
    make_optimizer,
    set_backbone_frozen,
    recipe_preprocessing,
    setup_runtime,
    to_device,
    unwrap,
)


def train(config: TrainConfig, *, resume: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train ``config`` to completion, or continue from ``resume``. Every epoch writes ``last.safetensors`` (and
    ``best.safetensors``) atomically; a run killed anywhere and resumed ends with the same checkpoint, bit for bit.
    Under ``torchrun`` it trains with DDP.

    :param config: the run.
    :param resume: a checkpoint of this run to continue from, or None for a new run.
    :returns: the summary that is also written to ``out_dir/summary.json`` (top-1/top-5, per-class accuracy, the
        metrics before training for runs from weights, parameters, MACs, time).
    :raises ValueError: settings no run can use (naming the setting).
    :raises FileExistsError: ``out_dir`` already holds a run and ``resume`` is None (nothing is overwritten).
    :raises plugattn.data.DataError: data that cannot be found or read.
    :raises plugattn.checkpoint.CheckpointError: a corrupt or foreign checkpoint, or one of another architecture
        or data set than ``config``.
    """
    config.validate()
    config = config.with_resolved_init()
    out_dir = pathlib.Path(config.out_dir)
    if resume is None and (out_dir / "last.safetensors").exists():
        raise FileExistsError(f"{out_dir} already holds a run (last.safetensors): continue it with --resume auto "
                              "(resume=its path), or choose another --out; nothing was overwritten")
    runtime = setup_runtime(config.device)
    torch.manual_seed(config.seed)
    mode, source = _run_preprocessing(config, resume)
    data, preprocessing = load_normalized(config.dataset, config.data_dir, mode, source, image_size=config.image_size,
                                          augment=config.augment, download=config.download,
                                          progress=config.progress and runtime.is_main, seed=config.seed)
    if isinstance(data, PairedBundle):
        data = dataclasses.replace(data, modality_dropout=config.modality_dropout)
        if runtime.is_main and config.progress:
            for note in data.notes:  # pairing, reuse, degradations, skipped files
                print(f"data: {note}", flush=True)
    loaders = make_loaders(config, data, runtime)
    model, notes = build_model(config, data, load_weights=resume is None)
    notes.append(describe_preprocessing(preprocessing))
    if runtime.is_main and config.progress:
        for note in notes:
            print(f"model: {note}", flush=True)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(runtime.device, memory_format=memory_format)
    if config.freeze_backbone_epochs and runtime.world_size > 1:
        raise ValueError("freeze_backbone_epochs needs a single process: DDP fixes the set of trained parameters")
    optimizer = make_optimizer(config, model)
    context = EpochContext(
        model=_trainable(model, config, runtime.device if runtime.world_size > 1 else None), loader=loaders.train,
        sampler=loaders.sampler, transform=data.transform(), optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(loaders.train))),
        scaler=torch.amp.GradScaler(runtime.device.type, enabled=config.precision == "fp16"), config=config,
        runtime=runtime, memory_format=memory_format, ema=_ema(model, config.ema), preprocessing=preprocessing)
    progress = restore_run(resume, context) if resume is not None else RunProgress()

    def test(network: nn.Module) -> dict[str, Any]:
        return evaluate_model(network, loaders.test, context.transform, data.num_classes, runtime.device,
                              context.autocast, memory_format)

    writer = _open_logs(out_dir, config, progress.step if resume else None) if runtime.is_main else None
    if config.weights and resume is None and runtime.is_main:  # what the loaded network, attention inserted, knows
        progress.start_metrics = {name: value for name, value in test(model).items() if name in ("loss", "top1", "top5")}
        writer.add_scalar("test_top1", progress.start_metrics["top1"], 0)
        if config.progress:
            print(f"before training (weights loaded, model as built): test top-1 {progress.start_metrics['top1']:.2%}, "
                  f"loss {progress.start_metrics['loss']:.4f}", flush=True)
    started, metrics = time.perf_counter(), None
    try:
        for epoch in range(progress.epoch, config.epochs):
            frozen = epoch < config.freeze_backbone_epochs
            if config.freeze_backbone_epochs:
                set_backbone_frozen(model, frozen)
            record = train_one_epoch(context, epoch, frozen=frozen)
            progress.step += len(loaders.train)
            progress.epoch = epoch + 1
            if runtime.is_main:
                metrics = test(model)
                record |= {"test_loss": metrics["loss"], "test_top1": metrics["top1"], "test_top5": metrics["top5"]}
                if context.ema is not None:
                    record["ema_test_top1"] = test(context.ema.module)["top1"]
                _log_epoch(record, progress, writer, out_dir, config)
                improved = metrics["top1"] > progress.best_top1
                progress.best_top1 = max(progress.best_top1, metrics["top1"])
                save_run(out_dir / "last.safetensors", context, progress)
                if improved:
                    save_run(out_dir / "best.safetensors", context, progress)
                _maybe_inject_kill(epoch + 1, out_dir)
            barrier(runtime)
    finally:
        if writer is not None:
            writer.close()
    summary: dict[str, Any] = {}
    if runtime.is_main:
        summary = _summarise(model, metrics or test(model), data, config, preprocessing, progress, notes,
                             time.perf_counter() - started,
                             runtime.world_size)
    barrier(runtime)
    return summary


def _run_preprocessing(config: TrainConfig, resume: str | os.PathLike | None) -> tuple[str | tuple, Preprocessing | None]:
    """How this run prepares its inputs: as its checkpoint recorded when it resumes (the weights file may be gone;
    a checkpoint from before preprocessing was recorded used the data set's own), else as the recipe says."""
    if resume is None or is_paired(config.dataset):
        return recipe_preprocessing(config, config.dataset)
    _, recorded = recorded_preprocessing(resume)
    return ("weights", recorded) if recorded is not None else ("dataset", None)


def _trainable(model: nn.Module, config: TrainConfig, ddp_device: torch.device | None) -> nn.Module:
    """What the loop steps: ``model`` wrapped for DDP (when ``ddp_device`` is given) and compiled as asked —
    regionally in place (a model without attention, a sweep's control, stays eager), or whole."""
    mode = compile_mode(config.compile)
    if mode == "regional" and compiled_regions(model):
        plugattn_compile(model, "regional")
    if ddp_device is not None:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ddp_device] if ddp_device.type == "cuda" else None)
    return plugattn_compile(model, "full") if mode == "full" else model


def _ema(model: nn.Module, decay: float | None) -> nn.Module | None:
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _open_logs(out_dir: pathlib.Path, config: TrainConfig, resumed_step: int | None) -> Any:
    """The run folder with its ``config.json``, and a TensorBoard writer (continuing at ``resumed_step``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    require("tensorboard", "train")
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=resumed_step)


def _log_epoch(record: dict[str, float], progress: RunProgress, writer: Any, out_dir: pathlib.Path,
               config: TrainConfig) -> None:
    progress.history.append(record)
    for name, value in record.items():
        if name != "epoch":
            writer.add_scalar(name, value, progress.step)
    write_metrics(out_dir / "metrics.csv", progress.history)
    if config.progress:
        print(f"epoch {record['epoch']}/{config.epochs}: train loss {record['train_loss']:.4f} "
              f"acc {record['train_acc']:.2%} | test loss {record['test_loss']:.4f} top-1 "
              f"{record['test_top1']:.2%} | {record['epoch_seconds']:.0f} s, "
              f"{record['images_per_second']:.0f} img/s", flush=True)


def _summarise(model: nn.Module, final: Mapping[str, Any], data: DataBundle, config: TrainConfig,
               preprocessing: Preprocessing, progress: RunProgress,
               notes: list[str], wall_seconds: float, world_size: int) -> dict[str, Any]:
    """``summary.json`` and ``confusion.png`` of a finished run."""
    device = next(model.parameters()).device
    if isinstance(data, PairedBundle):
        sample = tuple(x.to(device) for x in data.example_input())
        shape: Any = {name: list(value) for name, value in data.shapes.items()}
    else:
        sample = (torch.zeros(1, data.in_channels, *data.image_size, device=device),)
        shape = [data.in_channels, *data.image_size]
    summary = {
        "config": dataclasses.asdict(config), "classes": list(data.classes),
        "input_shape": shape, **final,
        "best_top1": progress.best_top1, "start_metrics": progress.start_metrics, "params": count_parameters(model),
        "preprocessing": preprocessing.to_dict(),
        "macs": count_macs(model.eval(), *sample), "train_seconds": sum(r["epoch_seconds"] for r in progress.history),
        "wall_seconds": wall_seconds, "world_size": world_size, "epochs": config.epochs, "model_notes": notes,
    }
    out_dir = pathlib.Path(config.out_dir)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    from plugattn.visualisation import plot_confusion

    plot_confusion(final["confusion"], data.classes, out_dir / "confusion.png",
                   title=f"{config.model} + {config.attention or 'none'}: top-1 {final['top1']:.2%}")
    return summary


def _maybe_inject_kill(epoch: int, out_dir: pathlib.Path, variable: str = "PLUGATTN_FAULT_KILL_AFTER") -> None:
    """Fault injection for the kill-and-resume tests: ``PLUGATTN_FAULT_KILL_AFTER=EPOCH[@TEXT]`` SIGKILLs this
    process right after epoch EPOCH's checkpoint, ``PLUGATTN_FAULT_KILL_AT_STEP=STEP[@TEXT]`` right after optimiser
    step STEP (counted over the run, inside an epoch); only in runs whose folder name contains TEXT."""
    target = os.environ.get(variable)
    if target:
        wanted, _, text = target.partition("@")
        if int(wanted) == epoch and text in out_dir.name:
            os.kill(os.getpid(), signal.SIGKILL)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed every global generator a step may draw from (torch on the CPU and every CUDA device — dropout, a
    model's own randomness —, Python's ``random``, NumPy's) from (seed, epoch, rank), so that an epoch's draws do
    not depend on what ran before it: a resumed run repeats the uninterrupted one, and DDP ranks draw
    different dropout masks."""
    derived = (seed * 1_000_003 + epoch * 7_919 + rank * 104_729 + 1) % 2**63
    torch.manual_seed(derived)
    random.seed(derived)
    np.random.seed(derived % 2**32)


def train_one_epoch(context: EpochContext, epoch: int, *, frozen: bool = False) -> dict[str, float]:
    """One pass over ``context.loader``: a step per batch; returns the epoch's training record. Augmentation
    draws from a generator seeded by (seed, epoch, rank), and the global generators are seeded from the same
    (``seed_epoch``), so a resumed run sees the same batches and draws the same dropout masks."""
    tqdm = require("tqdm", "train").tqdm
    config, runtime, model, optimizer, scaler = context.config, context.runtime, context.model, context.optimizer, context.scaler
    model.train()
    if frozen:
        set_backbone_frozen(unwrap(model), True)
    context.sampler.set_epoch(epoch)
    seed_epoch(config.seed, epoch, runtime.rank)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7919 + runtime.rank)
    loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
    started = time.perf_counter()
    bar = tqdm(context.loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
               disable=not (config.progress and runtime.is_main))
    for index, batch in enumerate(bar):
        images, labels = batch
        skipped += getattr(batch, "skipped", 0)
        if not len(labels):
            continue
        x = to_device(context.transform(images, generator), runtime.device, context.memory_format)
        labels = labels.to(runtime.device)
        with context.autocast:
            logits = model(*x)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        context.scheduler.step()
        if context.ema is not None:
            context.ema.update_parameters(unwrap(model))
        _maybe_inject_kill(epoch * len(context.loader) + index + 1, pathlib.Path(config.out_dir),
                           "PLUGATTN_FAULT_KILL_AT_STEP")
        loss_sum += loss.item() * labels.numel()
        correct += (logits.argmax(1) == labels).sum().item()
        seen += labels.numel()
        elapsed = time.perf_counter() - started
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                        img_s=f"{seen * runtime.world_size / max(elapsed, 1e-9):.0f}")
    elapsed = time.perf_counter() - started
    return {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss_sum / max(1, seen),
            "train_acc": correct / max(1, seen), "epoch_seconds": elapsed,
            "images_per_second": seen * runtime.world_size / max(elapsed, 1e-9), "skipped_images": skipped}
