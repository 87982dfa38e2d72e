"""`eval` and `viz`: measuring and looking into a trained or published model."""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import torch
from rich.table import Table

from plugattn.cli.common import (
    AUGMENT_OPTION,
    IMAGE_SIZE_OPTION,
    INIT_OPTION,
    NORMALIZE_OPTION,
    SPEC_OPTION,
    WHERE_OPTION,
    _fail,
    app,
    console,
    typer,
)

if TYPE_CHECKING:
    from plugattn.data import DataBundle

@app.command("eval")
def evaluate(
    checkpoint: str = typer.Argument(None, help="A checkpoint written by `plugattn train` (or give --model and --weights)."),
    model: str = SPEC_OPTION,
    weights: str = typer.Option(None, help="With --model: the weights to evaluate (their classifier is kept)."),
    attention: str = typer.Option(None, help="With --model: attention to insert (as the identity by default)."),
    where: str = WHERE_OPTION,
    init: str = INIT_OPTION,
    normalize: str = NORMALIZE_OPTION,
    reduction: int = typer.Option(None, help="Reduction ratio r (default: each block's own)."),
    stages: str = typer.Option(None),
    dataset: str = typer.Option(None, help="With a checkpoint: another data set with the same classes; with --model: "
                                "the data set (its classes must be the classifier's)."),
    data_dir: str = typer.Option(None),
    augment: str = AUGMENT_OPTION,
    image_size: int = IMAGE_SIZE_OPTION,
    output: str = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    corrupt: list[str] = typer.Option(None, help="Paired data: also evaluate with modalities corrupted, e.g. "
                                      "image=blank, audio=noise:0 (AV-MNIST audio: SNR in dB; else noise:S adds S "
                                      "training stds), image=noise:1,audio=silence; repeatable."),
) -> None:
    """Top-1/top-5 and per-class accuracy on a test split: of a training checkpoint, or of any model with its
    published weights (--model, --weights, --dataset)."""
    import json

    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.training import evaluate_checkpoint, evaluate_on_test

    try:
        if model is None:
            metrics = evaluate_checkpoint(_checkpoint_argument(checkpoint), dataset=dataset, data_dir=data_dir,
                                          corrupt=corrupt or ())
            title = f"{checkpoint} (epoch {metrics['epoch']})"
        else:
            if corrupt:
                raise ValueError("--corrupt evaluates a checkpoint of a multimodal run (plugattn train --dataset "
                                 "avmnist …), not --model")
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
    if metrics.get("corrupted"):
        table = Table(title="under corruption")
        table.add_column("test split")
        table.add_column("top-1", justify="right")
        table.add_column("change", justify="right")
        table.add_row("clean", f"{metrics['top1']:.2%}", "")
        for condition, result in metrics["corrupted"].items():
            table.add_row(condition, f"{result['top1']:.2%}", f"{result['top1'] - metrics['top1']:+.2%}")
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
    reduction: int = typer.Option(None, help="Reduction ratio r (default: each block's own)."),
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
