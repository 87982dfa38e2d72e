"""`train` and `sweep`: runs and ablation grids."""

from __future__ import annotations

import pathlib

from plugattn.cli.common import (
    ATTENTION_LR_MULT_OPTION,
    AUGMENT_OPTION,
    EMA_OPTION,
    FREEZE_OPTION,
    FUSION_ATTENTION_OPTION,
    FUSION_OPTION,
    FUSION_OPTION_OPTION,
    FUSION_STAGES_OPTION,
    IMAGE_SIZE_OPTION,
    INIT_OPTION,
    LABEL_SMOOTHING_OPTION,
    LATE_OPTION,
    MILESTONES_OPTION,
    MODEL_OPTION,
    MOMENTUM_OPTION,
    NESTEROV_OPTION,
    NORMALIZE_OPTION,
    OPTIMIZER_OPTION,
    SCHEDULE_OPTION,
    WARMUP_EPOCHS_OPTION,
    WEIGHT_DECAY_OPTION,
    WEIGHTS_OPTION,
    WHERE_OPTION,
    _fail,
    _train_config,
    app,
    console,
    typer,
)

@app.command()
def train(
    model: str = MODEL_OPTION,
    weights: str = WEIGHTS_OPTION,
    attention: str = typer.Option("none", help="none, se, cbam, cbam-channel, … (any registry name)."),
    where: str = WHERE_OPTION,
    init: str = INIT_OPTION,
    normalize: str = NORMALIZE_OPTION,
    reduction: int = typer.Option(None, help="Reduction ratio r (default: each block's own: 16 for SE and CBAM)."),
    position: str = typer.Option(None, help="standard, pre, post, identity or prenorm (before the branch's last "
                                 "BatchNorm); default: the block's official place (prenorm for simam, else standard)."),
    stages: str = typer.Option(None, help="Stages with attention, e.g. 3,4 (default: all)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Block option key=value (repeatable), e.g. kernel_size=3, pool_types=avg+max."),
    dataset: str = typer.Option("fashion-mnist", help="fashion-mnist, cifar10, cifar100, imagefolder:PATH, or paired "
                                "data: avmnist (--data-dir holding mnist/ and fsdd/) or pairs:MANIFEST.csv."),
    fusion: str = FUSION_OPTION,
    fusion_stages: str = FUSION_STAGES_OPTION,
    fusion_attention: str = FUSION_ATTENTION_OPTION,
    fusion_option: list[str] = FUSION_OPTION_OPTION,
    late: str = LATE_OPTION,
    modality_dropout: float = typer.Option(0.0, help="Paired data: probability that a training sample's modality is "
                                           "replaced by its mean (never every modality of a sample)."),
    data_dir: str = typer.Option(None, help="Folder holding the data set's files."),
    augment: str = AUGMENT_OPTION,
    image_size: int = IMAGE_SIZE_OPTION,
    download: bool = typer.Option(False, help="Download CIFAR when missing (never by default)."),
    train_subset: int = typer.Option(None, help="Train on this many images (a fixed random subset)."),
    test_subset: int = typer.Option(None, help="Evaluate on this many test images."),
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(128),
    optimizer: str = OPTIMIZER_OPTION,
    lr: float = typer.Option(0.1),
    momentum: float = MOMENTUM_OPTION,
    nesterov: bool = NESTEROV_OPTION,
    weight_decay: float = WEIGHT_DECAY_OPTION,
    schedule: str = SCHEDULE_OPTION,
    warmup_epochs: float = WARMUP_EPOCHS_OPTION,
    milestones: str = MILESTONES_OPTION,
    label_smoothing: float = LABEL_SMOOTHING_OPTION,
    attention_lr_mult: float = ATTENTION_LR_MULT_OPTION,
    freeze_backbone_epochs: int = FREEZE_OPTION,
    ema: float = EMA_OPTION,
    precision: str = typer.Option("fp32", help="fp32, bf16 (CPU or CUDA) or fp16 (CUDA)."),
    compile: str = typer.Option("none", "--compile", help="none; regional: the attention blocks compiled, the rest "
                                "eager (plugattn.compile); full: torch.compile of the whole model. A bare --compile "
                                "means full."),
    channels_last: bool = typer.Option(False, "--channels-last"),
    clip_grad: float = typer.Option(None, help="Clip the gradient norm to this value."),
    seed: int = typer.Option(0),
    workers: int = typer.Option(0, help="DataLoader worker processes."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    out: str = typer.Option("runs/train", help="Run folder: checkpoints, logs, summary, plots."),
    resume: str = typer.Option(None, help="Checkpoint to continue from ('auto': OUT/last.safetensors when it exists, "
                               "else start)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Train any model recipe (or, on paired data, a network per modality and their fusion); under `torchrun
    --nproc_per_node N` it trains with DDP."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.training import train as run_training

    try:
        config = _train_config(
            model=model, weights=weights, where=where, init=init, normalize=normalize, attention=attention, reduction=reduction, position=position, stages=stages, option=option,
            fusion=fusion, fusion_stages=fusion_stages, fusion_attention=fusion_attention, late=late,
            fusion_option=fusion_option,
            modality_dropout=modality_dropout, dataset=dataset, data_dir=data_dir, augment=augment, image_size=image_size, download=download, train_subset=train_subset, test_subset=test_subset,
            epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, milestones=milestones,
            label_smoothing=label_smoothing, attention_lr_mult=attention_lr_mult,
            freeze_backbone_epochs=freeze_backbone_epochs, ema=ema, precision=precision, compile=compile, channels_last=channels_last,
            clip_grad=clip_grad, seed=seed, workers=workers, device=device, out_dir=out, progress=progress,
        )
        last = pathlib.Path(out, "last.safetensors")
        checkpoint = (str(last) if last.exists() else None) if resume == "auto" else resume
        summary = run_training(config, resume=checkpoint)
    except (DataError, CheckpointError, ValueError, TypeError, OSError) as error:
        raise _fail(error) from None
    except KeyboardInterrupt:
        raise _fail(KeyboardInterrupt("interrupted"), f"the last complete epoch is in {out}/last.safetensors; "
                    "continue with --resume auto") from None
    if summary:
        console().print(f"top-1 {summary['top1']:.2%}, top-5 {summary['top5']:.2%} after {config.epochs} epochs "
                        f"({summary['train_seconds']:.0f} s training); {out}/summary.json, {out}/confusion.png")


@app.command()
def sweep(
    grid: list[str] = typer.Argument(..., help="key=v1,v2 … e.g. attention=none,se,cbam reduction=8,16 seeds=0,1,2 "
                                     "where=layer3.*,layer4.* init=identity,paper"),
    model: str = MODEL_OPTION,
    weights: str = WEIGHTS_OPTION,
    normalize: str = NORMALIZE_OPTION,
    dataset: str = typer.Option("fashion-mnist", help="As for train (paired data too: vary fusion=none,mmtm,se-sum "
                                "in the grid)."),
    fusion: str = FUSION_OPTION,
    fusion_stages: str = FUSION_STAGES_OPTION,
    fusion_attention: str = FUSION_ATTENTION_OPTION,
    fusion_option: list[str] = FUSION_OPTION_OPTION,
    late: str = LATE_OPTION,
    modality_dropout: float = typer.Option(0.0, help="Paired data: modality dropout probability in training."),
    data_dir: str = typer.Option(None),
    augment: str = AUGMENT_OPTION,
    image_size: int = IMAGE_SIZE_OPTION,
    epochs: int = typer.Option(10),
    batch_size: int = typer.Option(128),
    lr: float = typer.Option(0.1),
    optimizer: str = OPTIMIZER_OPTION,
    momentum: float = MOMENTUM_OPTION,
    nesterov: bool = NESTEROV_OPTION,
    weight_decay: float = WEIGHT_DECAY_OPTION,
    schedule: str = SCHEDULE_OPTION,
    warmup_epochs: float = WARMUP_EPOCHS_OPTION,
    milestones: str = MILESTONES_OPTION,
    label_smoothing: float = LABEL_SMOOTHING_OPTION,
    attention_lr_mult: float = ATTENTION_LR_MULT_OPTION,
    freeze_backbone_epochs: int = FREEZE_OPTION,
    ema: float = EMA_OPTION,
    train_subset: int = typer.Option(None),
    test_subset: int = typer.Option(None),
    precision: str = typer.Option("fp32"),
    workers: int = typer.Option(0),
    out: str = typer.Option("runs/sweep"),
    control: bool = typer.Option(True, help="Add attention=none runs (same budget and seeds) when the grid lacks them."),
    latency_rounds: int = typer.Option(20, help="Rounds timing each variant against the control (0: skip)."),
    progress: bool = typer.Option(True),
) -> None:
    """Run an ablation grid (resumable: finished runs are skipped) and write results.csv/.md/.png: top-1 mean ±
    std over seeds, its difference to the control, parameters, MACs and latency."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.cli.parsing import parse_grid
    from plugattn.sweep import sweep as run_sweep

    try:
        base = _train_config(
            model=model, weights=weights, normalize=normalize, attention=None, stages=None, option=None, dataset=dataset,
            fusion=fusion, fusion_stages=fusion_stages, fusion_attention=fusion_attention, late=late,
            fusion_option=fusion_option,
            modality_dropout=modality_dropout,
            data_dir=data_dir,
            augment=augment, image_size=image_size, epochs=epochs,
            batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs, milestones=milestones,
            label_smoothing=label_smoothing, attention_lr_mult=attention_lr_mult,
            freeze_backbone_epochs=freeze_backbone_epochs, ema=ema, train_subset=train_subset, test_subset=test_subset, precision=precision,
            workers=workers, progress=progress,
        )
        run_sweep(base, parse_grid(grid), out, control=control, latency_rounds=latency_rounds)
    except (DataError, CheckpointError, ValueError, TypeError) as error:
        raise _fail(error) from None
    console().print(pathlib.Path(out, "results.md").read_text())
    console().print(f"{out}/results.csv, {out}/results.png")
