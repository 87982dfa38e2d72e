"""`demo`: the main job on the embedded data set."""

from __future__ import annotations

from plugattn.cli.common import _fail, app, typer

@app.command()
def demo(
    out: str = typer.Option("runs/demo", help="Where the runs, table and plots go."),
    data_dir: str = typer.Option(None, help="Folder with the Fashion-MNIST IDX files (default: Debian's)."),
    train_subset: int = typer.Option(30000, help="Training images per run (the same subset for all)."),
    epochs: int = typer.Option(1, help="Epochs of the plain network before attention is inserted."),
    finetune_epochs: int = typer.Option(1, help="Epochs after insertion (and of the plain network trained on)."),
    seed: int = typer.Option(0),
    av_data_dir: str = typer.Option(None, help="Folder holding AV-MNIST's mnist/ and fsdd/ (default: ../shared/data or "
                                    "data, when there; `plugattn fetch avmnist --out data` downloads them)."),
    av_train_pairs: int = typer.Option(6000, help="AV-MNIST training pairs for the multimodal part."),
) -> None:
    """The main job: train a plain ResNet-20 on Fashion-MNIST, insert SE and CBAM as the identity, fine-tune them
    against the plain network trained on for the same budget; compare and draw what the attention learned; then
    SE across modalities (MMTM) on AV-MNIST when its sources are found."""
    from plugattn.data import DataError
    from plugattn.demo import run_demo

    try:
        run_demo(out, data_dir=data_dir, train_subset=train_subset, epochs=epochs, finetune_epochs=finetune_epochs,
                 seed=seed, av_data_dir=av_data_dir, av_train_pairs=av_train_pairs)
    except (DataError, ValueError) as error:
        raise _fail(error) from None
