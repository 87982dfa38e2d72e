"""Setting a run up: where it runs (one process or DDP), its model, optimiser, schedule and precision."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from collections.abc import Sequence
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from plugattn.blocks import find_attention_blocks
from plugattn.data import (
    BatchTransform,
    DataBundle,
    DataError,
    EpochTaggedSampler,
    FolderImages,
    collate_skipping,
    load_data,
)
from plugattn.data.paired import PairedBundle, is_paired, load_paired
from plugattn.preprocessing import Preprocessing, explicit_preprocessing, weights_preprocessing
from plugattn.recipe import ModelRecipe, build_multimodal, classifier_of
from plugattn.recipe import build_model as build_from_recipe
from plugattn.training.config import TrainConfig

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


def barrier(runtime: Runtime) -> None:
    if runtime.world_size > 1:
        dist.barrier()


Data = DataBundle | PairedBundle


def recipe_preprocessing(recipe: ModelRecipe, dataset: str = "") -> tuple[str | tuple, Preprocessing | None]:
    """The recipe's normalisation mode and, for ``weights``, the preprocessing its weights were trained with
    (None when nothing records it); paired data are normalised with their own statistics."""
    if is_paired(dataset):
        recipe.multimodal_normalize()
        return "dataset", None
    mode = recipe.normalize_mode()
    return mode, (weights_preprocessing(recipe.model, recipe.weights) if mode == "weights" else None)


def load_normalized(dataset: str, data_dir: str | None, mode: str | tuple, source: Preprocessing | None, *,
                    image_size: int | None, augment: str, download: bool = False, progress: bool = True,
                    seed: int = 0) -> tuple[Data, Preprocessing]:
    """The data set prepared as ``mode`` says (``weights`` with ``source``'s statistics and, for image folders,
    its evaluation resize, crop and interpolation — ``image_size`` overrides the crop; ``dataset``; or a (mean,
    std) pair), and the preprocessing actually applied, as checkpoints record it. Paired data (``avmnist``,
    ``pairs:…``) use their modalities' own statistics, recorded one after the other."""
    if is_paired(dataset):
        paired = load_paired(dataset, data_dir, seed=seed)
        source = f"the data set's own statistics ({paired.name}: {', '.join(paired.modalities)}, per channel)"
        return paired, Preprocessing(sum(paired.mean, ()), sum(paired.std, ()), source=source)
    folder = dataset.startswith("imagefolder:")
    crop, resize = source.geometry_for(image_size) if source is not None and folder else (image_size, None)
    interpolation = source.interpolation if source is not None and folder else "bilinear"
    data = load_data(dataset, data_dir, download=download, progress=progress, image_size=crop, augment=augment,
                     seed=seed, resize_size=resize, interpolation=interpolation)
    if isinstance(mode, tuple):
        used = explicit_preprocessing(mode, data.in_channels)
    elif source is not None:
        used = source.for_channels(data.in_channels)
    else:
        why = "" if mode == "dataset" else ": nothing records how these weights' inputs were prepared"
        used = Preprocessing(data.mean, data.std, source=f"the data set's own statistics ({data.name}){why}")
    used = dataclasses.replace(used, crop_size=crop, resize_size=resize, interpolation=interpolation)
    return dataclasses.replace(data, mean=used.mean, std=used.std), used


def describe_preprocessing(used: Preprocessing) -> str:
    """One line for the run log: the values used and where they come from."""
    numbers = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(used.mean, used.std))
    geometry = (f"; evaluation: resize {used.resize_size or used.crop_size}, centre crop {used.crop_size}, "
                f"{used.interpolation}" if used.crop_size else "")
    return f"input: normalised with mean/std {numbers} per channel — {used.source}{geometry}"


def build_model(config: TrainConfig, data: Data, *, load_weights: bool = True) -> tuple[nn.Module, list[str]]:
    """The run's model for ``data`` (classifier and input channels fitted; for paired data a network per
    modality and their fusion) and what was done to build it; ``load_weights=False`` when a checkpoint will
    fill it."""
    if isinstance(data, PairedBundle):
        return build_multimodal(config, num_classes=data.num_classes, shapes=data.shapes, load_weights=load_weights)
    return build_from_recipe(config, num_classes=data.num_classes, in_channels=data.in_channels,
                             load_weights=load_weights)


def subset_order(length: int) -> list[int]:
    """The fixed permutation of ``length`` indices whose first ``size`` make every ``train_subset``/``test_subset``
    (the rest are images no such run sees)."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(1234)).tolist()


def subset(dataset: torch.utils.data.Dataset, size: int | None, name: str) -> torch.utils.data.Dataset:
    if size is None or size >= len(dataset):
        return dataset
    if size < 1:
        raise ValueError(f"{name} must be >= 1, got {size}")
    order = subset_order(len(dataset))[:size]
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


def autocast_for(config: TrainConfig, device: torch.device) -> Any:
    if config.precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    if config.precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs CUDA; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=torch.bfloat16 if config.precision == "bf16" else torch.float16)


def to_device(x: Tensor | Sequence[Tensor], device: torch.device,
              memory_format: torch.memory_format = torch.contiguous_format) -> tuple[Tensor, ...]:
    """A batch's input(s) on ``device`` as a tuple of model arguments (one per modality for paired data); 4-D
    maps in ``memory_format``."""
    inputs = (x,) if isinstance(x, Tensor) else tuple(x)
    return tuple(t.to(device).contiguous(memory_format=memory_format if t.dim() == 4 else torch.contiguous_format)
                 for t in inputs)


def unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


@dataclass
class Loaders:
    """A run's training loader with its sampler (``set_epoch`` each epoch), and its test loader."""

    train: DataLoader
    sampler: DistributedSampler | EpochTaggedSampler
    test: DataLoader


def make_loaders(config: TrainConfig, data: DataBundle, runtime: Runtime) -> Loaders:
    """Loaders over the configured subsets; each process sees its share of the training set."""
    train_set = subset(data.train, config.train_subset, "train_subset")
    test_set = subset(data.test, config.test_subset, "test_subset")
    per_rank = math.ceil(len(train_set) / runtime.world_size)
    if config.batch_size > per_rank:
        raise DataError(f"batch_size {config.batch_size} is larger than the training set seen by each process "
                        f"({per_rank} images of {len(train_set)} over {runtime.world_size} process(es))")
    sampler = DistributedSampler(train_set, runtime.world_size, runtime.rank, shuffle=True, seed=config.seed,
                                 drop_last=True)
    if isinstance(train_set, FolderImages):  # streamed: each image's augmentation is seeded by (epoch, index)
        sampler = EpochTaggedSampler(sampler, len(train_set))
    # Each loader draws its workers' base seed from a generator of its own, never from the global one (whose
    # state would then depend on how many iterators a run had opened); plugattn's data sets draw nothing in the
    # workers' global generators (streamed images seed their own per (epoch, index)).
    loader = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True, num_workers=config.workers,
                        persistent_workers=config.workers > 0, collate_fn=collate_skipping,
                        generator=torch.Generator().manual_seed(config.seed + 7 * runtime.rank))
    test_loader = DataLoader(test_set, 256, shuffle=False, num_workers=config.workers, collate_fn=collate_skipping,
                             generator=torch.Generator().manual_seed(config.seed))
    return Loaders(loader, sampler, test_loader)


@dataclass
class EpochContext:
    """Everything an epoch of training touches; fixed for the whole run."""

    model: nn.Module
    """What is stepped: the model itself, or its DDP / compiled wrapper."""
    loader: DataLoader
    sampler: Any
    transform: BatchTransform
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    config: TrainConfig
    runtime: Runtime
    autocast: Any = None
    memory_format: torch.memory_format = torch.contiguous_format
    ema: nn.Module | None = None
    """An ``AveragedModel`` updated after every step, or None."""
    preprocessing: Preprocessing | None = None
    """How inputs are prepared (recorded in every checkpoint)."""

    def __post_init__(self) -> None:
        if self.autocast is None:
            self.autocast = autocast_for(self.config, self.runtime.device)
