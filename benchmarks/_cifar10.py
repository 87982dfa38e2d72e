"""The CIFAR-10 JPEG copy the benchmarks use: ../shared/data/cifar10-jpg, extracted once into the cache."""

from __future__ import annotations

import os
import pathlib
import tarfile

ARCHIVE = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg" / "cifar10_jpg.tar.xz"
CACHE = pathlib.Path(os.environ.get("PLUGATTN_CACHE", pathlib.Path.home() / ".cache" / "plugattn"))


def cifar10_folder(archive: pathlib.Path = ARCHIVE) -> pathlib.Path | None:
    """``CIFAR-10-images`` (train/ and test/, one folder per class), or None when the archive is missing."""
    target = CACHE / "cifar10-jpg"
    root = target / "CIFAR-10-images"
    if (root / "test").is_dir():
        return root
    if not archive.is_file():
        return None
    print(f"extracting {archive} into {target} (once)")
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as handle:
        handle.extractall(target, filter="data")
    return root
