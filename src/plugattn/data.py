"""Image classification data: Fashion-MNIST (the embedded default), CIFAR-10/100, any ImageFolder tree.

Every data set yields uint8 images (C, H, W) and integer labels; augmentation and normalisation run on
whole batches (:class:`BatchTransform`) with a generator seeded per epoch, so a run is reproducible and
a resumed run sees exactly the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from plugattn.extras import require

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DATASETS = ("fashion-mnist", "cifar10", "cifar100", "imagefolder:PATH")


class DataError(ValueError):
    """A data set that is missing, malformed or unusable, with what was expected and what was found."""


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W) with labels (N,)."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or labels.shape != (images.shape[0],):
            raise DataError(f"expected uint8 images (N, C, H, W) and labels (N,), got {tuple(images.shape)} {images.dtype} "
                            f"and {tuple(labels.shape)}")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.labels[index])


@dataclass
class DataBundle:
    """Train and test splits plus what a model and the batch transform need to know about them."""

    name: str
    train: Dataset
    test: Dataset
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: tuple[int, int]
    crop_padding: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return len(self.mean)


def _read_idx(path: pathlib.Path, expected_magic: int) -> np.ndarray:
    """Read one (gzipped) IDX file of the MNIST family."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path} is not an IDX file of the expected kind: magic {magic:#x}, expected {expected_magic:#x}")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> DataBundle:
    """Fashion-MNIST from the four standard IDX files (Debian's ``dataset-fashion-mnist`` installs them)."""
    root = pathlib.Path(data_dir) if data_dir else FASHION_MNIST_DIR
    splits = {}
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        paths = [root / images_name, root / labels_name]
        for path in paths:
            if not path.exists() and not path.with_suffix("").exists():
                raise DataError(
                    f"Fashion-MNIST file {path} not found (expected {', '.join(sum(FASHION_MNIST_FILES.values(), ()))} "
                    f"in {root}). Install it with `apt-get install dataset-fashion-mnist` (Debian) or pass --data-dir "
                    "to a folder holding the files from https://github.com/zalandoresearch/fashion-mnist"
                )
        paths = [p if p.exists() else p.with_suffix("") for p in paths]
        images = torch.from_numpy(_read_idx(paths[0], 0x803).copy()).unsqueeze(1)
        labels = torch.from_numpy(_read_idx(paths[1], 0x801).astype(np.int64))
        splits[split] = TensorImages(images, labels)
    return DataBundle("fashion-mnist", splits["train"], splits["test"], FASHION_MNIST_CLASSES,
                      (0.2860,), (0.3530,), (28, 28), 2)


_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "…", "data_batch_5", "test_batch", "batches.meta"),
                (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ("CIFAR100", "cifar-100-python", ("train", "test", "meta"),
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def load_cifar(name: str, data_dir: str | os.PathLike | None, download: bool = False) -> DataBundle:
    """CIFAR-10/100 through torchvision; downloads only when ``download`` is set."""
    import torchvision

    class_name, folder, files, mean, std = _CIFAR[name]
    root = pathlib.Path(data_dir or "data")
    if not download and not (root / folder).is_dir():
        raise DataError(
            f"{name} not found: expected {root / folder}/ holding {', '.join(files)} (torchvision's python "
            f"version). Pass --data-dir to the folder that contains {folder}/, or --download to fetch it"
        )
    cls = getattr(torchvision.datasets, class_name)
    try:
        train, test = (cls(str(root), train=flag, download=download) for flag in (True, False))
    except RuntimeError as error:
        raise DataError(f"{name} in {root / folder} is incomplete or corrupt ({error}); pass --download to repair it") from error
    splits = [TensorImages(torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(d.targets))
              for d in (train, test)]
    return DataBundle(name, splits[0], splits[1], tuple(train.classes), mean, std, (32, 32), 4)


def _image_folder_cache(root: pathlib.Path) -> pathlib.Path:
    stamp = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stamp.update(f"{path.relative_to(root)}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
    cache_root = pathlib.Path(os.environ.get("PLUGATTN_CACHE", pathlib.Path.home() / ".cache" / "plugattn"))
    return cache_root / f"imagefolder-{stamp.hexdigest()[:16]}.safetensors"


def _decode_folder(split_dir: pathlib.Path, classes: Sequence[str], image_size: tuple[int, int] | None,
                   progress: bool) -> tuple[Tensor, Tensor]:
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor, resize
    tqdm = require("tqdm", "train").tqdm

    files = [(path, label) for label, cls in enumerate(classes) for path in sorted((split_dir / cls).iterdir())
             if path.is_file()]
    if not files:
        raise DataError(f"{split_dir} holds no image files under its class folders {list(classes)}")
    images, labels = [], []
    for path, label in tqdm(files, desc=f"decoding {split_dir.name}", unit="img", disable=not progress, leave=False):
        try:
            with Image.open(path) as handle:
                image = pil_to_tensor(handle.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise DataError(f"cannot decode image file {path}: {error}") from error
        if image_size is None:
            image_size = tuple(image.shape[1:])
        if tuple(image.shape[1:]) != image_size:
            image = resize(image, list(image_size), antialias=True)
        images.append(image)
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def load_image_folder(path: str | os.PathLike, *, progress: bool = True) -> DataBundle:
    """A class-per-folder tree: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (``val`` also accepted).
    Images are decoded once into memory (and cached on disk) and resized to the first image's size."""
    root = pathlib.Path(path)
    if not root.is_dir():
        raise DataError(f"imagefolder path {root} is not a directory")
    test_name = next((name for name in ("test", "val") if (root / name).is_dir()), None)
    if not (root / "train").is_dir() or test_name is None:
        raise DataError(f"imagefolder {root} must contain train/ and test/ (or val/) folders, found "
                        f"{sorted(p.name for p in root.iterdir() if p.is_dir())}")
    classes = tuple(sorted(p.name for p in (root / "train").iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DataError(f"imagefolder {root / 'train'} must hold at least 2 class folders, found {list(classes)}")
    cache = _image_folder_cache(root)
    if cache.exists():
        from safetensors.torch import load_file

        tensors = load_file(str(cache))
    else:
        train_x, train_y = _decode_folder(root / "train", classes, None, progress)
        test_x, test_y = _decode_folder(root / test_name, classes, tuple(train_x.shape[2:]), progress)
        tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        from plugattn.checkpoint import atomic_save_tensors

        atomic_save_tensors(tensors, cache)
    train = TensorImages(tensors["train_x"], tensors["train_y"])
    scaled = tensors["train_x"].float().div_(255)
    mean = tuple(scaled.mean((0, 2, 3)).tolist())
    std = tuple(scaled.std((0, 2, 3)).tolist())
    size = tuple(train.images.shape[2:])
    return DataBundle(f"imagefolder:{root}", train, TensorImages(tensors["test_x"], tensors["test_y"]), classes,
                      mean, std, size, max(1, size[0] // 8))


def load_data(dataset: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
              progress: bool = True) -> DataBundle:
    """Load ``dataset``: ``fashion-mnist``, ``cifar10``, ``cifar100`` or ``imagefolder:PATH``."""
    if dataset == "fashion-mnist":
        return load_fashion_mnist(data_dir)
    if dataset in _CIFAR:
        return load_cifar(dataset, data_dir, download)
    if dataset.startswith("imagefolder:"):
        return load_image_folder(dataset.partition(":")[2], progress=progress)
    raise DataError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")


class BatchTransform:
    """uint8 batch -> normalised float batch; in training, a random crop (zero padding ``padding``) and a
    random horizontal flip per image, drawn from ``generator``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 0) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.padding = padding

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = images.float().div_(255)
        if generator is not None:
            x = self._augment(x, generator)
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def _augment(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, _, h, w = x.shape
        p = self.padding
        if p:
            top = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            left = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            x = _crop(F.pad(x, (p, p, p, p)), top, left, h, w)
        flip = torch.rand(n, generator=generator) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)


def _crop(padded: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    """Per-image crops of size (h, w) at offsets ``top``/``left`` from a padded batch."""
    n, c = padded.shape[:2]
    rows = (top.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, padded.shape[3])
    x = padded.gather(2, rows)
    cols = (left.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    return x.gather(3, cols)
