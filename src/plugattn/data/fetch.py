"""Download AV-MNIST's sources from where they are published, checked against known digests: MNIST's four IDX
files (torchvision's mirror, then Yann LeCun's page; the decompressed files' sha256 as published) and the Free
Spoken Digit Dataset's recordings (the GitHub archive of the commit plugattn was built against; a digest of every
recording's name and sha256, since GitHub's archives are not byte-stable). Files are written through a temporary
name and renamed once checked: an interrupted or failed download leaves nothing half-written."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pathlib
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable

from plugattn.data.errors import DataError

MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""sha256 of each file *decompressed* (the published values; gzip wrappers differ between mirrors)."""
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_URL = f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{FSDD_COMMIT}.tar.gz"
FSDD_DIGEST = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"
"""sha256 over the 3,000 recordings sorted by name: each name, a NUL byte, and the sha256 of its bytes."""


def recordings_digest(recordings: dict[str, bytes]) -> str:
    """The digest :data:`FSDD_DIGEST` is of, for ``recordings`` (file name -> bytes)."""
    digest = hashlib.sha256()
    for name in sorted(recordings):
        digest.update(name.encode() + b"\0" + hashlib.sha256(recordings[name]).digest())
    return digest.hexdigest()


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        raise DataError(f"cannot download {url}: {error} (offline? copy the files by hand — see the README's "
                        "AV-MNIST section — and pass their folder as --data-dir)") from error


def _write(path: pathlib.Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def fetch_mnist(out: pathlib.Path, *, timeout: float = 60, report: Callable[[str], None] = print) -> None:
    """The four MNIST IDX files into ``out/mnist`` (kept when already there and correct)."""
    folder = out / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name, expected in MNIST_SHA256.items():
        path = folder / name
        if path.exists() and hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == expected:
            report(f"{path}: present, checksum correct")
            continue
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                data = _download(mirror + name, timeout)
            except DataError as error:
                errors.append(str(error))
                continue
            found = hashlib.sha256(gzip.decompress(data)).hexdigest()
            if found != expected:
                errors.append(f"{mirror + name}: sha256 of the decompressed file is {found}, expected {expected}")
                continue
            _write(path, data)
            report(f"{path}: downloaded from {mirror}, checksum correct")
            break
        else:
            raise DataError(f"could not fetch MNIST {name}: " + "; ".join(errors))


def fetch_fsdd(out: pathlib.Path, *, timeout: float = 120, report: Callable[[str], None] = print) -> None:
    """The FSDD recordings into ``out/fsdd/recordings`` (from the archive of commit :data:`FSDD_COMMIT`)."""
    folder = out / "fsdd" / "recordings"
    if folder.is_dir():
        present = {path.name: path.read_bytes() for path in folder.glob("*.wav")}
        if recordings_digest(present) == FSDD_DIGEST:
            report(f"{folder}: present, digest correct")
            return
    data = _download(FSDD_URL, timeout)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        recordings = {pathlib.Path(member.name).name: archive.extractfile(member).read()
                      for member in archive.getmembers()
                      if member.isfile() and "/recordings/" in member.name and member.name.endswith(".wav")}
    found = recordings_digest(recordings)
    if found != FSDD_DIGEST:
        raise DataError(f"{FSDD_URL}: the {len(recordings)} recordings' digest is {found}, expected {FSDD_DIGEST}")
    staging = folder.with_name("recordings.part")
    staging.mkdir(parents=True, exist_ok=True)
    for name, content in recordings.items():
        (staging / name).write_bytes(content)
    if folder.exists():
        for stale in folder.glob("*"):
            stale.unlink()
        folder.rmdir()
    os.replace(staging, folder)
    report(f"{folder}: {len(recordings)} recordings downloaded, digest correct")


def fetch_avmnist(out: str | os.PathLike, *, report: Callable[[str], None] = print) -> pathlib.Path:
    """MNIST and FSDD into ``out`` (``out/mnist``, ``out/fsdd/recordings``), ready for ``--dataset avmnist
    --data-dir OUT``; returns ``out``."""
    root = pathlib.Path(out)
    fetch_mnist(root, report=report)
    fetch_fsdd(root, report=report)
    return root
