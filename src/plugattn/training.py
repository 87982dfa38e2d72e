"""Train and evaluate zoo models on real data: one process or DDP (``torchrun``), exact resume,
progress bars, TensorBoard + CSV logs, a JSON summary and a confusion-matrix plot."""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import os
import pathlib
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

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
from plugattn.blocks import INITS, find_attention_blocks
from plugattn.data import (
    AUGMENTATIONS,
    BatchTransform,
    DataBundle,
    DataError,
    EpochTaggedSampler,
    FolderImages,
    collate_skipping,
    load_data,
)
from plugattn.extras import require
from plugattn.profiling import count_macs, count_parameters
from plugattn.recipe import ModelRecipe, classifier_of
from plugattn.recipe import build_model as build_from_recipe

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
ARCHITECTURE_FIELDS = ("model", "attention", "reduction", "position", "stages", "where", "init", "block_options",
                       "dataset", "image_size")
"""Config fields a checkpoint must agree on to be resumed or evaluated (hyper-parameters may change)."""


@dataclass
class TrainConfig:
    """Everything a training run depends on; stored in every checkpoint."""

    model: str = "resnet20"
    weights: str | None = None
    attention: str | None = None
    reduction: int = 16
    position: str = "standard"
    stages: list[int] | None = None
    where: str | list[str] = "residual"
    init: str | None = None
    block_options: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | None = None
    augment: str = "cifar"
    download: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])
    label_smoothing: float = 0.0
    attention_lr_mult: float = 1.0
    freeze_backbone_epochs: int = 0
    ema: float | None = None
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = False
    clip_grad: float | None = None
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    out_dir: str = "runs/train"
    progress: bool = True

    def validate(self) -> None:
        """Raise a clear error on values no run can use."""
        for name in ("epochs", "batch_size", "reduction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, value, choices in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not self.attention_lr_mult > 0:
            raise ValueError(f"attention_lr_mult must be > 0, got {self.attention_lr_mult}")
        if isinstance(self.freeze_backbone_epochs, bool) or not isinstance(self.freeze_backbone_epochs, int) \
                or self.freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be an int >= 0, got {self.freeze_backbone_epochs!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be a decay in (0, 1) such as 0.999, got {self.ema}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}; got {self.augment!r}")
        if self.image_size is not None and (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                                            or self.image_size < 1):
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        if self.init not in (None, *INITS):
            raise ValueError(f"init must be one of {list(INITS)} (or unset: identity with weights, paper without); "
                             f"got {self.init!r}")

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}


# ---------------------------------------------------------------- distributed helpers

@dataclass
class Runtime:
    """Where this process runs: device, rank and world size."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str = "auto") -> Runtime:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    target = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu") if device in ("auto", "cuda") else torch.device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    return Runtime(target, rank, world_size, local_rank)


def _barrier(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        dist.barrier()


# ---------------------------------------------------------------- building blocks

def recipe_of(config: TrainConfig) -> ModelRecipe:
    """The model part of a run's config (every :class:`~plugattn.recipe.ModelRecipe` field is a config field)."""
    return ModelRecipe(**{f.name: copy.deepcopy(getattr(config, f.name)) for f in dataclasses.fields(ModelRecipe)})


def build_model(config: TrainConfig, data: DataBundle, *, load_weights: bool = True) -> tuple[nn.Module, list[str]]:
    """The run's model for ``data`` (classifier and input channels fitted) and what was done to build it;
    ``load_weights=False`` when a checkpoint will fill it."""
    return build_from_recipe(recipe_of(config), num_classes=data.num_classes, in_channels=data.in_channels,
                             load_weights=load_weights)


def _subset(dataset: torch.utils.data.Dataset, size: int | None, name: str) -> torch.utils.data.Dataset:
    if size is None or size >= len(dataset):
        return dataset
    if size < 1:
        raise ValueError(f"{name} must be >= 1, got {size}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(1234))[:size].tolist()
    return dataset.subset(order) if isinstance(dataset, FolderImages) else Subset(dataset, order)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Any:
    total = config.epochs * steps_per_epoch
    warmup = int(config.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if config.schedule == "step":
            return 0.1 ** sum(step >= m * steps_per_epoch for m in config.milestones)
        return 1.0

    return factor


def attention_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters that belong to attention blocks (zoo, attached or registered)."""
    return {id(p) for _, block in find_attention_blocks(model) for p in block.parameters()}


def parameter_groups(config: TrainConfig, model: nn.Module) -> list[dict[str, Any]]:
    """Four groups: backbone and attention (learning rate × ``attention_lr_mult``), each with weight decay on
    weights of rank ≥ 2 only — no decay on BatchNorm scales and shifts, biases, or IdentityStart's alpha."""
    attention = attention_parameters(model)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for parameter in model.parameters():
        groups.setdefault((id(parameter) in attention, parameter.ndim >= 2), []).append(parameter)
    return [{"params": params, "lr": config.lr * (config.attention_lr_mult if is_attention else 1.0),
             "weight_decay": config.weight_decay if decays else 0.0}
            for (is_attention, decays), params in sorted(groups.items())]


def make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(config, model)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


def set_backbone_frozen(model: nn.Module, frozen: bool) -> None:
    """Freeze (or release) everything but the attention blocks and the classifier: no gradients, and the
    backbone's BatchNorms keep their statistics (eval mode) while frozen."""
    attention = attention_parameters(model)
    head = {id(p) for p in classifier_of(model)[1].parameters()}
    for parameter in model.parameters():
        if id(parameter) not in attention and id(parameter) not in head:
            parameter.requires_grad_(not frozen)
    if frozen:
        inside = {id(m) for _, block in find_attention_blocks(model) for m in block.modules()}
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and id(module) not in inside:
                module.eval()


def _autocast(config: TrainConfig, device: torch.device) -> Any:
    if config.precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if config.precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs CUDA; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16)


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
        x = transform(images.to(device)).contiguous(memory_format=memory_format)
        labels = labels.to(device)
        with autocast or torch.autocast(device.type, enabled=False):
            logits = model(x).float()
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


# ---------------------------------------------------------------- checkpoints of a run

def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def _save(path: pathlib.Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any,
          config: TrainConfig, epoch: int, step: int, best: float, history: list[dict], ema: nn.Module | None) -> None:
    optimizer_tensors, optimizer_meta = optimizer_to_checkpoint(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in _unwrap(model).state_dict().items()} | optimizer_tensors | rng_tensors()
    if ema is not None:
        tensors |= {f"ema.{k}": v for k, v in ema.state_dict().items()}
    meta = {
        "config": dataclasses.asdict(config), "epoch": epoch, "step": step, "best_top1": best,
        "optimizer": optimizer_meta, "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None, "history": history,
        "torch": torch.__version__,
    }
    save_checkpoint(path, tensors, meta)


def check_compatible(meta: Mapping[str, Any], config: TrainConfig, path: os.PathLike | str) -> None:
    """Refuse a checkpoint whose architecture or data set differs from ``config``, naming each difference."""
    stored = meta.get("config", {})
    wanted = json.loads(json.dumps(config.architecture()))
    differences = [f"{name}: checkpoint has {stored.get(name)!r}, this run has {wanted[name]!r}"
                   for name in ARCHITECTURE_FIELDS if stored.get(name) != wanted[name]]
    if differences:
        raise CheckpointError(f"checkpoint {path} does not match this run — " + "; ".join(differences))


def config_from_checkpoint(meta: Mapping[str, Any]) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in meta["config"].items() if k in names})


# ---------------------------------------------------------------- the training loop

def _write_metrics(path: pathlib.Path, history: list[dict]) -> None:
    if not history:
        return
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train(config: TrainConfig, *, resume: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train ``config`` to completion (or continue from ``resume``, a checkpoint path) and return the
    summary that is also written to ``out_dir/summary.json``."""
    config.validate()
    runtime = setup_runtime(config.device)
    out_dir = pathlib.Path(config.out_dir)
    torch.manual_seed(config.seed)
    data = load_data(config.dataset, config.data_dir, download=config.download, progress=config.progress and runtime.is_main,
                     image_size=config.image_size, augment=config.augment, seed=config.seed)
    train_set = _subset(data.train, config.train_subset, "train_subset")
    test_set = _subset(data.test, config.test_subset, "test_subset")
    per_rank = math.ceil(len(train_set) / runtime.world_size)
    if config.batch_size > per_rank:
        raise DataError(f"batch_size {config.batch_size} is larger than the training set seen by each process "
                        f"({per_rank} images of {len(train_set)} over {runtime.world_size} process(es))")
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    if isinstance(train_set, FolderImages):  # streamed: each image's augmentation is seeded by (epoch, index)
        sampler = EpochTaggedSampler(sampler, len(train_set))
    loader = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True, num_workers=config.workers,
                        persistent_workers=config.workers > 0, collate_fn=collate_skipping)
    test_loader = DataLoader(test_set, 256, shuffle=False, num_workers=config.workers, collate_fn=collate_skipping)
    transform = data.transform()

    model, notes = build_model(config, data, load_weights=resume is None)
    model = model.to(runtime.device)
    if runtime.is_main and config.progress:
        for note in notes:
            print(f"model: {note}", flush=True)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(config, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(loader)))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=config.precision == "fp16")
    start_epoch, step, best, history = 0, 0, -1.0, []
    if resume is not None:
        tensors, meta = load_checkpoint(resume)
        check_compatible(meta, config, resume)
        model.load_state_dict(split_prefix(tensors, "model"))
        optimizer.load_state_dict(optimizer_from_checkpoint(tensors, meta["optimizer"]))
        scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        restore_rng(tensors)
        start_epoch, step, best, history = meta["epoch"], meta["step"], meta["best_top1"], meta["history"]
    ema = None
    if config.ema is not None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        if resume is not None:
            ema.load_state_dict(split_prefix(tensors, "ema"))
    if config.freeze_backbone_epochs and runtime.world_size > 1:
        raise ValueError("freeze_backbone_epochs needs a single process: DDP fixes the set of trained parameters")
    trainable = model
    if runtime.world_size > 1:
        trainable = nn.parallel.DistributedDataParallel(model, device_ids=[runtime.device] if runtime.device.type == "cuda" else None)
    if config.compile:
        trainable = torch.compile(trainable)
    autocast = _autocast(config, runtime.device)
    writer = None
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
        require("tensorboard", "train")
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=step if resume else None)
    started = time.perf_counter()
    try:
        for epoch in range(start_epoch, config.epochs):
            frozen = epoch < config.freeze_backbone_epochs
            if config.freeze_backbone_epochs:
                set_backbone_frozen(model, frozen)
            record = train_one_epoch(trainable, loader, sampler, transform, optimizer, scheduler, scaler, autocast, config,
                                     runtime, epoch, memory_format, frozen=frozen, ema=ema)
            step += len(loader)
            if runtime.is_main:
                metrics = evaluate_model(model, test_loader, transform, data.num_classes, runtime.device, autocast, memory_format)
                record |= {"test_loss": metrics["loss"], "test_top1": metrics["top1"], "test_top5": metrics["top5"]}
                if ema is not None:
                    record["ema_test_top1"] = evaluate_model(ema.module, test_loader, transform, data.num_classes,
                                                             runtime.device, autocast, memory_format)["top1"]
                history.append(record)
                for name, value in record.items():
                    if name != "epoch":
                        writer.add_scalar(name, value, step)
                _write_metrics(out_dir / "metrics.csv", history)
                if config.progress:
                    print(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
                          f"acc {record['train_acc']:.2%} | test loss {record['test_loss']:.4f} top-1 "
                          f"{record['test_top1']:.2%} | {record['epoch_seconds']:.0f} s, "
                          f"{record['images_per_second']:.0f} img/s", flush=True)
                improved = metrics["top1"] > best
                best = max(best, metrics["top1"])
                state = (model, optimizer, scheduler, scaler, config, epoch + 1, step, best, history, ema)
                _save(out_dir / "last.safetensors", *state)
                if improved:
                    _save(out_dir / "best.safetensors", *state)
                _maybe_inject_kill(epoch + 1, out_dir)
            _barrier(runtime)
    finally:
        if writer is not None:
            writer.close()
    summary: dict[str, Any] = {}
    if runtime.is_main:
        final = evaluate_model(model, test_loader, transform, data.num_classes, runtime.device, autocast, memory_format)
        sample = torch.zeros(1, data.in_channels, *data.image_size, device=runtime.device)
        summary = {
            "config": dataclasses.asdict(config), "classes": list(data.classes), **final,
            "best_top1": best, "params": count_parameters(model), "macs": count_macs(model.eval(), sample),
            "train_seconds": sum(r["epoch_seconds"] for r in history), "wall_seconds": time.perf_counter() - started,
            "world_size": runtime.world_size, "epochs": config.epochs, "model_notes": notes,
        }
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        from plugattn.visualisation import plot_confusion

        plot_confusion(final["confusion"], data.classes, out_dir / "confusion.png",
                       title=f"{config.model} + {config.attention or 'none'}: top-1 {final['top1']:.2%}")
    _barrier(runtime)
    return summary


def _maybe_inject_kill(epoch: int, out_dir: pathlib.Path) -> None:
    """Fault injection for the kill-and-resume tests: ``PLUGATTN_FAULT_KILL_AFTER=EPOCH[@TEXT]`` SIGKILLs this
    process right after epoch EPOCH's checkpoint (only in runs whose folder name contains TEXT)."""
    target = os.environ.get("PLUGATTN_FAULT_KILL_AFTER")
    if target:
        wanted_epoch, _, text = target.partition("@")
        if int(wanted_epoch) == epoch and text in out_dir.name:
            os.kill(os.getpid(), signal.SIGKILL)


def train_one_epoch(model: nn.Module, loader: DataLoader, sampler: DistributedSampler, transform: BatchTransform,
                    optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, autocast: Any, config: TrainConfig,
                    runtime: Runtime, epoch: int, memory_format: torch.memory_format, *, frozen: bool = False,
                    ema: nn.Module | None = None) -> dict[str, float]:
    tqdm = require("tqdm", "train").tqdm

    model.train()
    if frozen:
        set_backbone_frozen(_unwrap(model), True)
    sampler.set_epoch(epoch)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch * 7919 + runtime.rank)
    loss_sum, correct, seen, skipped = 0.0, 0, 0, 0
    started = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
               disable=not (config.progress and runtime.is_main))
    for batch in bar:
        images, labels = batch
        skipped += getattr(batch, "skipped", 0)
        if not len(labels):
            continue
        x = transform(images, generator).to(runtime.device).contiguous(memory_format=memory_format)
        labels = labels.to(runtime.device)
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.clip_grad:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(_unwrap(model))
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


def load_trained(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None
                 ) -> tuple[nn.Module, DataBundle, TrainConfig, dict[str, Any]]:
    """The model of a checkpoint written by :func:`train` (eval mode), its data set (or ``dataset``, which
    must have as many classes), its config and the checkpoint's metadata."""
    tensors, meta = load_checkpoint(path)
    config = config_from_checkpoint(meta)
    data = load_data(dataset or config.dataset, data_dir or config.data_dir, progress=False,
                     image_size=config.image_size, augment=config.augment)
    model, _ = build_model(config, data, load_weights=False)
    try:
        model.load_state_dict(split_prefix(tensors, "model"))
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} (trained on {config.dataset}) does not fit model {config.model} "
                              f"on {data.name}: {error}") from error
    return model.eval(), data, config, meta


def evaluate_checkpoint(path: str | os.PathLike, *, dataset: str | None = None, data_dir: str | None = None,
                        batch_size: int = 256, device: str = "auto") -> dict[str, Any]:
    """Evaluate a checkpoint written by :func:`train` on its data set's test split (or ``dataset``'s)."""
    model, data, _, meta = load_trained(path, dataset=dataset, data_dir=data_dir)
    runtime_device = setup_runtime(device).device
    loader = DataLoader(data.test, batch_size, shuffle=False, collate_fn=collate_skipping)
    metrics = evaluate_model(model.to(runtime_device), loader, data.transform(), data.num_classes,
                             runtime_device)
    return {"checkpoint": str(path), "epoch": meta["epoch"], "classes": list(data.classes), **metrics}


def parse_int_list(text: str | None, name: str) -> list[int] | None:
    """``"3,4"`` -> [3, 4]; None or "" -> None; ``name`` is the option reported on malformed text."""
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated ints such as 3,4; got {text!r}") from None


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["kernel_size=3", "pool_types=avg+max"]`` -> block options (``+`` joins list values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"block option must look like key=value, got {pair!r}")
        options[key] = parse_value(value)
    return options


def parse_value(text: str) -> Any:
    """Interpret a command-line value: int, float, bool, none, ``a+b`` lists, else the string."""
    if "+" in text:
        return [parse_value(part) for part in text.split("+")]
    lowered = text.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
