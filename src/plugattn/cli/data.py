"""`fetch`: download a data set's sources (for users who are online)."""

from __future__ import annotations

from plugattn.cli.common import _fail, app, console, typer


@app.command()
def fetch(
    dataset: str = typer.Argument(..., help="avmnist: MNIST's four IDX files and the Free Spoken Digit Dataset."),
    out: str = typer.Option("data", help="Folder to write mnist/ and fsdd/recordings/ into (then --data-dir OUT)."),
) -> None:
    """Download a data set's sources from where they are published, checked against known digests."""
    from plugattn.data import DataError
    from plugattn.data.fetch import fetch_avmnist

    if dataset != "avmnist":
        raise typer.BadParameter(f"expected avmnist, got {dataset!r} (Fashion-MNIST installs with apt-get install "
                                 "dataset-fashion-mnist; CIFAR with train --download)", param_hint="DATASET")
    try:
        root = fetch_avmnist(out, report=console().print)
    except (DataError, OSError) as error:
        raise _fail(error) from None
    console().print(f"ready: plugattn train --dataset avmnist --data-dir {root}")
