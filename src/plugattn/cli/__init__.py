"""The ``plugattn`` command line."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import torch

from plugattn.extras import require

typer = require("typer", "cli")
require("rich", "cli")
from rich.console import Console  # noqa: E402  (after the check that names the extra)
from rich.table import Table  # noqa: E402
from rich.text import Text  # noqa: E402

from plugattn.blocks import attention_options, create_attention, find_gates, list_attention
from plugattn.insertion import without_attention
from plugattn.models import create_model, model_entry
from plugattn.profiling import count_macs, count_parameters
from plugattn.profiling import profile as profile_model

if TYPE_CHECKING:
    from plugattn.data import DataBundle
    from plugattn.training import TrainConfig

app = typer.Typer(help="Plug-and-play channel and spatial attention (SE, CBAM) for PyTorch.", no_args_is_help=True)


def console(*, stderr: bool = False) -> Console:
    """A console that prints text verbatim: no rich markup, so bracketed lists and paths in messages survive."""
    return Console(stderr=stderr, markup=False, highlight=False)


def parse_shape(text: str, *, argument: str) -> tuple[int, ...]:
    """Parse ``"64x32x32"`` into ``(64, 32, 32)``, naming ``argument`` when the text is malformed."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(size < 1 for size in shape):
        raise typer.BadParameter(f"expected sizes joined by 'x' such as 64x32x32, got {text!r}", param_hint=argument)
    return shape


def _summarise(values: torch.Tensor) -> str:
    return f"{values.min():.3f} / {values.mean():.3f} / {values.max():.3f}"


@app.callback()
def main_options() -> None:
    """Plug-and-play channel and spatial attention (SE, CBAM) for PyTorch."""


@app.command()
def blocks(
    shape: str = typer.Option("64x32x32", "--shape", help="Feature map C x H x W (or C x L, C x D x H x W)."),
    reduction: int = typer.Option(16, help="Reduction ratio r of every block."),
    seed: int = typer.Option(0, help="Seed for the weights and the sample input."),
) -> None:
    """Every registered block on one sample feature map: cost, output shape and the attention it computes."""
    channels, *spatial = parse_shape(shape, argument="--shape")
    if not spatial:
        raise typer.BadParameter("needs at least one spatial size, e.g. 64x32x32", param_hint="--shape")
    torch.manual_seed(seed)
    x = torch.randn(1, channels, *spatial)
    table = Table(title=f"plugattn blocks on a (1, {', '.join(map(str, (channels, *spatial)))}) feature map, r={reduction}")
    for column in ("block", "params", "MACs", "output shape", "channel weights min/mean/max", "spatial map min/mean/max"):
        table.add_column(column, justify="left" if column in ("block", "output shape") else "right")
    for name in list_attention():
        wanted = {"dims": len(spatial), "reduction": reduction}
        accepted = attention_options(name)
        options = {key: value for key, value in wanted.items() if accepted is None or key in accepted}
        block = create_attention(name, channels, **options).eval()
        recorded: dict[str, torch.Tensor] = {}
        handles = [
            gate.register_forward_hook(lambda module, args, output: recorded.__setitem__(module.kind, output))
            for _, gate in find_gates(block)
        ]
        out = block(x)
        macs = count_macs(block, x)
        for handle in handles:
            handle.remove()
        table.add_row(
            name,
            f"{count_parameters(block):,}",
            f"{macs:,}",
            str(tuple(out.shape)),
            _summarise(recorded["channel"]) if "channel" in recorded else "-",
            _summarise(recorded["spatial"]) if "spatial" in recorded else "-",
        )
    console().print(table)


# Model options shared by `profile`, `train` and `sweep`.
MODEL_OPTION = typer.Option("resnet20", help="Zoo name (plugattn.list_models()), torchvision:NAME, timm:NAME or "
                            "package.module:factory (your own builder).")
WEIGHTS_OPTION = typer.Option(None, help="Weights to start from (torchvision, timm, plugattn or any layout "
                              "load_pretrained reads); the classifier is replaced for the data set's classes.")
WHERE_OPTION = typer.Option("residual", help="Where attention goes: residual, a glob over module names, re:REGEX, "
                            "or comma-separated names (see plugattn.insertion_points).")
SPEC_OPTION = typer.Option(None, "--model", help="Instead of a checkpoint: a zoo name, torchvision:NAME, timm:NAME or "
                           "package.module:factory, with --weights.")
INIT_OPTION = typer.Option(None, help="identity (blocks start as the exact identity) or paper; default: identity "
                           "when --weights are loaded and attention is inserted, else paper.")
NORMALIZE_OPTION = typer.Option(None, help="weights (the statistics, and for image folders the eval resize/crop and "
                                "interpolation, the weights were trained with), dataset (the data set's own) or "
                                "MEAN,STD numbers (2, or C means then C stds); default: weights when --weights are "
                                "given, else dataset.")


@app.command()
def profile(
    name: str = typer.Argument(..., help="Zoo model (cbam_resnet50, se_resnet20, resnet50_v1, …), torchvision:NAME, "
                                         "timm:NAME or package.module:factory."),
    attention: str = typer.Option(None, help="Attention to insert (any registry name); zoo se_/cbam_ names carry theirs."),
    where: str = WHERE_OPTION,
    reduction: int = typer.Option(16, help="Reduction ratio r of inserted blocks."),
    input: str = typer.Option(None, "--input", help="Sample shape C x H x W; default: the model's natural size "
                              "(3x224x224 outside the zoo)."),
    num_classes: int = typer.Option(None, help="Classifier outputs; default 1000 (ImageNet-style) or 10 (CIFAR-style)."),
    rounds: int = typer.Option(5, help="Timed rounds per batch size (median reported)."),
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes for latency."),
    latency: bool = typer.Option(True, help="Measure latency against the same model without attention."),
) -> None:
    """Parameters, MACs (conv + linear multiply-accumulates, the papers' "FLOPs"), the attention's share, and
    latency relative to the same network without attention, measured in one run."""
    from plugattn.cli.parsing import parse_where
    from plugattn.recipe import ModelRecipe, build_model

    zoo = ":" not in name
    try:
        classes = num_classes or (model_entry(name).default_classes if zoo else 1000)
        recipe = ModelRecipe(model=name, attention=attention, reduction=reduction,
                             where=parse_where(where))
        model, _ = build_model(recipe, num_classes=classes)
    except (TypeError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="NAME") from error
    natural = model_entry(name).input_size if zoo else (3, 224, 224)
    shape = parse_shape(input, argument="--input") if input else natural
    try:
        sizes = tuple(int(size) for size in batch_sizes.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated ints such as 1,8, got {batch_sizes!r}", param_hint="--batch-sizes") from None
    torch.manual_seed(0)
    report = profile_model(
        model, shape, baseline=without_attention(model) if latency else None, batch_sizes=sizes, rounds=rounds
    )
    table = Table(title=f"{name} on {'x'.join(map(str, shape))} (MACs: conv + linear multiply-accumulates)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{report.params / 1e6:.3f} M")
    table.add_row("MACs", f"{report.macs / 1e9:.4f} G")
    table.add_row("attention blocks", str(report.attention_blocks))
    table.add_row("attention parameters", f"{report.attention_params / 1e6:.3f} M ({report.attention_param_share:.2%})")
    table.add_row("attention MACs", f"{report.attention_macs / 1e6:.3f} M ({report.attention_mac_share:.3%})")
    for batch_size in report.latency_ms:
        table.add_row(
            f"latency, batch {batch_size}",
            f"{report.latency_ms[batch_size]:.1f} ms vs {report.baseline_latency_ms[batch_size]:.1f} ms plain "
            f"(x{report.latency_ratio(batch_size):.3f})",
        )
    console().print(table)
    if report.latency_ms:
        console().print(f"threads: {torch.get_num_threads()}; median of {rounds} interleaved rounds")


AUGMENT_OPTION = typer.Option("cifar", help="cifar (pad-crop + flip), imagenet (RandomResizedCrop + flip; Resize + "
                             "CenterCrop to evaluate; streams the folder) or none.")
IMAGE_SIZE_OPTION = typer.Option(None, help="Square input size for imagefolder data (shorter side resized, then cropped).")

# Fine-tuning options shared by `train` and `sweep`.
ATTENTION_LR_MULT_OPTION = typer.Option(1.0, help="Learning rate of the attention blocks relative to --lr.")
FREEZE_OPTION = typer.Option(0, help="Epochs at the start during which only attention and classifier train "
                             "(backbone BatchNorms keep their statistics).")
EMA_OPTION = typer.Option(None, help="Keep an exponential moving average of the weights with this decay (e.g. 0.999); "
                          "evaluated every epoch as ema_test_top1.")

# Optimiser and schedule options shared by `train` and `sweep`.
OPTIMIZER_OPTION = typer.Option("sgd", help="sgd (with momentum) or adamw.")
MOMENTUM_OPTION = typer.Option(0.9)
NESTEROV_OPTION = typer.Option(True, help="Nesterov momentum for sgd; --no-nesterov as He et al. trained.")
WEIGHT_DECAY_OPTION = typer.Option(5e-4)
WARMUP_EPOCHS_OPTION = typer.Option(0.0)
MILESTONES_OPTION = typer.Option("30,60,90", help="Epochs at which the step schedule divides the lr by 10.")
LABEL_SMOOTHING_OPTION = typer.Option(0.0)
SCHEDULE_OPTION = typer.Option("cosine", help="cosine, step (x0.1 at each of --milestones) or constant.")


def _fail(error: Exception, hint: str | None = None) -> typer.Exit:
    message = Text("error: ", style="bold red")
    message.append(f"{error}" + (f"\n{hint}" if hint else ""))
    console(stderr=True).print(message)
    return typer.Exit(2)


def _train_config(**values: object) -> "TrainConfig":
    from plugattn.cli.parsing import parse_int_list, parse_options, parse_where
    from plugattn.training import TrainConfig

    values["stages"] = parse_int_list(values.pop("stages"), "--stages")
    values["milestones"] = parse_int_list(values["milestones"], "--milestones") or []
    values["block_options"] = parse_options(values.pop("option") or [])
    values["attention"] = None if values["attention"] in (None, "none") else values["attention"]
    if isinstance(values.get("where"), str):
        values["where"] = parse_where(values["where"])
    return TrainConfig(**values)


@app.command()
def train(
    model: str = MODEL_OPTION,
    weights: str = WEIGHTS_OPTION,
    attention: str = typer.Option("none", help="none, se, cbam, cbam-channel, … (any registry name)."),
    where: str = WHERE_OPTION,
    init: str = INIT_OPTION,
    normalize: str = NORMALIZE_OPTION,
    reduction: int = typer.Option(16, help="Reduction ratio r."),
    position: str = typer.Option("standard", help="standard, pre, post or identity."),
    stages: str = typer.Option(None, help="Stages with attention, e.g. 3,4 (default: all)."),
    option: list[str] = typer.Option(None, "--option", "-o", help="Block option key=value (repeatable), e.g. kernel_size=3, pool_types=avg+max."),
    dataset: str = typer.Option("fashion-mnist", help="fashion-mnist, cifar10, cifar100 or imagefolder:PATH."),
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
    compile: bool = typer.Option(False, "--compile", help="torch.compile the model."),
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
    """Train a zoo model; under `torchrun --nproc_per_node N` it trains with DDP."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.training import train as run_training

    try:
        config = _train_config(
            model=model, weights=weights, where=where, init=init, normalize=normalize, attention=attention, reduction=reduction, position=position, stages=stages, option=option,
            dataset=dataset, data_dir=data_dir, augment=augment, image_size=image_size, download=download, train_subset=train_subset, test_subset=test_subset,
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


@app.command("eval")
def evaluate(
    checkpoint: str = typer.Argument(None, help="A checkpoint written by `plugattn train` (or give --model and --weights)."),
    model: str = SPEC_OPTION,
    weights: str = typer.Option(None, help="With --model: the weights to evaluate (their classifier is kept)."),
    attention: str = typer.Option(None, help="With --model: attention to insert (as the identity by default)."),
    where: str = WHERE_OPTION,
    init: str = INIT_OPTION,
    normalize: str = NORMALIZE_OPTION,
    reduction: int = typer.Option(16),
    stages: str = typer.Option(None),
    dataset: str = typer.Option(None, help="With a checkpoint: another data set with the same classes; with --model: "
                                "the data set (its classes must be the classifier's)."),
    data_dir: str = typer.Option(None),
    augment: str = AUGMENT_OPTION,
    image_size: int = IMAGE_SIZE_OPTION,
    output: str = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
) -> None:
    """Top-1/top-5 and per-class accuracy on a test split: of a training checkpoint, or of any model with its
    published weights (--model, --weights, --dataset)."""
    import json

    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.training import evaluate_checkpoint, evaluate_on_test

    try:
        if model is None:
            metrics = evaluate_checkpoint(_checkpoint_argument(checkpoint), dataset=dataset, data_dir=data_dir)
            title = f"{checkpoint} (epoch {metrics['epoch']})"
        else:
            network, data = _published(checkpoint, model, weights, attention, where, init, normalize, reduction, stages,
                                       dataset, data_dir, augment, image_size)
            metrics = {"model": model, "weights": weights, "classes": list(data.classes), **evaluate_on_test(network, data)}
            title = f"{model} with {weights} on {data.name}"
    except (DataError, CheckpointError, ValueError, TypeError) as error:
        raise _fail(error) from None
    table = Table(title=f"{title}: top-1 {metrics['top1']:.2%}, top-5 {metrics['top5']:.2%}")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, accuracy in zip(metrics["classes"], metrics["per_class_accuracy"]):
        table.add_row(name, f"{accuracy:.2%}")
    console().print(table)
    if output:
        pathlib.Path(output).write_text(json.dumps(metrics, indent=2))


def _checkpoint_argument(checkpoint: str | None) -> str:
    if checkpoint is None:
        raise ValueError("give a CHECKPOINT written by `plugattn train`, or --model SPEC --weights FILE --dataset DATA")
    return checkpoint


def _published(checkpoint: str | None, model: str, weights: str | None, attention: str | None, where: str,
               init: str | None, normalize: str | None, reduction: int, stages: str | None, dataset: str | None, data_dir: str | None,
               augment: str, image_size: int | None) -> tuple[torch.nn.Module, "DataBundle"]:
    """The network ``--model`` names with ``--weights`` as they are (attention inserted when asked), on ``--dataset``."""
    from plugattn.cli.parsing import parse_int_list, parse_where
    from plugattn.recipe import ModelRecipe
    from plugattn.training import load_published

    if checkpoint is not None:
        raise ValueError(f"give either a CHECKPOINT ({checkpoint!r}) or --model ({model!r}), not both")
    if dataset is None:
        raise ValueError("--model needs --dataset: the data set whose test split the model is run on")
    recipe = ModelRecipe(model=model, weights=weights, attention=None if attention in (None, "none") else attention,
                         where=parse_where(where), init=init, normalize=normalize, reduction=reduction,
                         stages=parse_int_list(stages, "--stages"))
    network, data, notes = load_published(recipe, dataset, data_dir=data_dir, image_size=image_size, augment=augment)
    for note in notes:
        console().print(f"model: {note}")
    return network, data


@app.command()
def sweep(
    grid: list[str] = typer.Argument(..., help="key=v1,v2 … e.g. attention=none,se,cbam reduction=8,16 seeds=0,1,2 "
                                     "where=layer3.*,layer4.* init=identity,paper"),
    model: str = MODEL_OPTION,
    weights: str = WEIGHTS_OPTION,
    normalize: str = NORMALIZE_OPTION,
    dataset: str = typer.Option("fashion-mnist"),
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


@app.command()
def demo(
    out: str = typer.Option("runs/demo", help="Where the runs, table and plots go."),
    data_dir: str = typer.Option(None, help="Folder with the Fashion-MNIST IDX files (default: Debian's)."),
    train_subset: int = typer.Option(30000, help="Training images per run (the same subset for all)."),
    epochs: int = typer.Option(1, help="Epochs of the plain network before attention is inserted."),
    finetune_epochs: int = typer.Option(1, help="Epochs after insertion (and of the plain network trained on)."),
    seed: int = typer.Option(0),
) -> None:
    """The main job: train a plain ResNet-20 on Fashion-MNIST, insert SE and CBAM as the identity, fine-tune them
    against the plain network trained on for the same budget; compare and draw what the attention learned."""
    from plugattn.data import DataError
    from plugattn.demo import run_demo

    try:
        run_demo(out, data_dir=data_dir, train_subset=train_subset, epochs=epochs, finetune_epochs=finetune_epochs,
                 seed=seed)
    except (DataError, ValueError) as error:
        raise _fail(error) from None


@app.command()
def viz(
    checkpoint: str = typer.Argument(None, help="Checkpoint of a model with attention, written by `plugattn train` "
                                     "(or give --model, --weights and --dataset)."),
    plain: str = typer.Option(None, help="Checkpoint of the plain model, for the Grad-CAM comparison."),
    model: str = SPEC_OPTION,
    weights: str = typer.Option(None, help="With --model: the weights to look into (e.g. published CBAM weights)."),
    attention: str = typer.Option(None, help="With --model: attention to insert."),
    where: str = WHERE_OPTION,
    init: str = INIT_OPTION,
    normalize: str = NORMALIZE_OPTION,
    reduction: int = typer.Option(16),
    stages: str = typer.Option(None),
    dataset: str = typer.Option(None, help="With --model: the images to look at (the classifier's classes)."),
    data_dir: str = typer.Option(None),
    augment: str = AUGMENT_OPTION,
    image_size: int = IMAGE_SIZE_OPTION,
    out: str = typer.Option("runs/viz", help="Folder for the PNG files."),
    images: int = typer.Option(6, help="Test images in the spatial and Grad-CAM grids."),
    classes: str = typer.Option(None, help="Class indices for the excitation plot (default: the first four)."),
    samples: int = typer.Option(2000, help="Test images behind the excitation statistics."),
    groups: str = typer.Option(None, help="Channel groups for the modality plot, e.g. rgb=0-2,depth=3."),
    block: str = typer.Option(None, help="Block for the channel-group plot (default: the first)."),
) -> None:
    """Draw what the attention learned: spatial maps per stage, Grad-CAM (plain vs attention), SENet-style
    excitations per class and stage, and mean weights per channel group."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.cli.parsing import parse_int_list
    from plugattn.training import load_trained
    from plugattn.visualisation import visualise

    try:
        if model is None:
            network, data, _, _ = load_trained(_checkpoint_argument(checkpoint))
        else:
            network, data = _published(checkpoint, model, weights, attention, where, init, normalize, reduction, stages,
                                       dataset, data_dir, augment, image_size)
        plain_model = load_trained(plain)[0] if plain else None
        written = visualise(network, data, out, plain=plain_model, images=images, samples=samples,
                            classes=parse_int_list(classes, "--classes"), groups=groups, block=block)
    except (DataError, CheckpointError, ValueError, TypeError) as error:
        raise _fail(error) from None
    for kind, path in written.items():
        console().print(f"{kind}: {path}")


@app.command()
def export(
    source: str = typer.Argument(..., help="Zoo model name (random weights) or a checkpoint from `plugattn train`."),
    onnx: str = typer.Option(None, "--onnx", help="Write an ONNX file here (dynamic batch), checked with ONNX Runtime."),
    torchscript: str = typer.Option(None, "--torchscript", help="Write a TorchScript file here."),
    input: str = typer.Option(None, "--input", help="Sample shape C x H x W (default: the model's)."),
    opset: int = typer.Option(18, help="ONNX opset (>= 17)."),
) -> None:
    """Export a model to ONNX (verified against PyTorch in ONNX Runtime) and/or TorchScript."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.export import export_onnx, script_model
    from plugattn.training import load_trained

    if not onnx and not torchscript:
        raise typer.BadParameter("give --onnx PATH and/or --torchscript PATH", param_hint="--onnx")
    import json

    try:
        recorded: dict[str, str] = {}
        if pathlib.Path(source).is_file():
            model, data, _, meta = load_trained(source)
            shape = (data.in_channels, *data.image_size)
            if meta.get("preprocessing"):  # what a deployment must do to its inputs, carried in the exported file
                recorded = {"plugattn.preprocessing": json.dumps(meta["preprocessing"])}
                console().print(f"inputs: {data.image_size[0]}x{data.image_size[1]}, normalised with mean "
                                f"{list(data.mean)} and std {list(data.std)} ({meta['preprocessing']['source']}); "
                                "recorded in the exported files")
        else:
            model, shape = create_model(source), model_entry(source).input_size
        shape = parse_shape(input, argument="--input") if input else shape
        if onnx:
            report = export_onnx(model, onnx, shape, opset=opset, metadata=recorded)
            differences = ", ".join(f"batch {b}: {d:.2e}" for b, d in report.max_abs_difference.items())
            console().print(f"{onnx}: opset {opset}, dynamic batch; ONNX Runtime vs PyTorch max |difference| {differences}")
        if torchscript:
            extra = {"preprocessing.json": recorded["plugattn.preprocessing"]} if recorded else {}
            script_model(model).save(torchscript, _extra_files=extra)
            console().print(f"{torchscript}: TorchScript")
    except (DataError, CheckpointError, ValueError, TypeError) as error:
        raise _fail(error) from None


@app.command()
def convert(
    source: str = typer.Argument(..., help="Weights file: safetensors, or a torch file (loaded with weights_only=True)."),
    destination: str = typer.Argument(..., help="Output safetensors file in plugattn's layout."),
    layout: str = typer.Option(None, "--from", help="cbam-official, senet.pytorch, cadene, timm, torchvision, plugattn (default: detect)."),
) -> None:
    """Convert published SE/CBAM weights to plugattn's layout."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.interop import convert_file, describe_architecture

    try:
        detected, architecture = convert_file(source, destination, layout=layout)
    except (CheckpointError, ValueError) as error:
        raise _fail(error) from None
    console().print(f"{destination}: converted from layout {detected!r}"
                    + (f"; load it into a model with {describe_architecture(architecture)}" if architecture else ""))
