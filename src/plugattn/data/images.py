"""Image classification data: Fashion-MNIST (the embedded default), CIFAR-10/100, any ImageFolder tree, and the
IDX reader the MNIST family shares.

Every data set yields uint8 images (C, H, W) and integer labels; augmentation and normalisation run on
whole batches (:class:`BatchTransform`) with a generator seeded per epoch, so a run is reproducible and
a resumed run sees exactly the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import os
import pathlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from plugattn.data.cache import cache_root, files_fingerprint
from plugattn.data.errors import DataError
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
    batch_flip: bool = True
    """Whether training batches get a random horizontal flip in :class:`BatchTransform` (streamed sets with
    ImageNet-style augmentation flip per image instead)."""

    def transform(self) -> "BatchTransform":
        """The batch transform for this data set's training and evaluation batches."""
        return BatchTransform(self.mean, self.std, self.crop_padding, flip=self.batch_flip)

    def test_batch(self, count: int) -> tuple[Tensor, Tensor]:
        """The first ``count`` test images (uint8) and labels, from any kind of data set."""
        test = self.test
        if isinstance(test, TensorImages):
            return test.images[:count], test.labels[:count]
        pairs = [test[index] for index in range(min(count, len(test)))]
        pairs = [pair for pair in pairs if pair is not None]
        return torch.stack([image for image, _ in pairs]), torch.tensor([label for _, label in pairs])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return len(self.mean)


def read_idx(path: pathlib.Path, expected_magic: int) -> np.ndarray:
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


def idx_file(path: pathlib.Path) -> pathlib.Path:
    """``path`` (``….gz``), or the decompressed file beside it when only that exists."""
    return path if path.exists() or not path.with_suffix("").exists() else path.with_suffix("")


def read_idx_pair(images_path: pathlib.Path, labels_path: pathlib.Path) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 1, H, W) and int64 labels (N,) from an MNIST-family pair of IDX files."""
    images = torch.from_numpy(read_idx(images_path, 0x803).copy()).unsqueeze(1)
    return images, torch.from_numpy(read_idx(labels_path, 0x801).astype(np.int64))


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> DataBundle:
    """Fashion-MNIST from the four standard IDX files (Debian's ``dataset-fashion-mnist`` installs them)."""
    root = pathlib.Path(data_dir) if data_dir else FASHION_MNIST_DIR
    splits = {}
    for split, (images_name, labels_name) in FASHION_MNIST_FILES.items():
        paths = [idx_file(root / images_name), idx_file(root / labels_name)]
        for path in paths:
            if not path.exists():
                raise DataError(
                    f"Fashion-MNIST file {path} not found (expected {', '.join(sum(FASHION_MNIST_FILES.values(), ()))} "
                    f"in {root}). Install it with `apt-get install dataset-fashion-mnist` (Debian) or pass --data-dir "
                    "to a folder holding the files from https://github.com/zalandoresearch/fashion-mnist"
                )
        splits[split] = TensorImages(*read_idx_pair(*paths))
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


def _image_folder_cache(root: pathlib.Path, variant: str) -> pathlib.Path:
    return cache_root() / f"imagefolder-{files_fingerprint([root], root, variant)}.safetensors"


AUGMENTATIONS = ("cifar", "imagenet", "none")
"""cifar: pad-4 random crop and flip on whole batches; imagenet: RandomResizedCrop + flip per image in
training, Resize + CenterCrop (crop 0.875) for evaluation; none: no augmentation."""
CACHE_LIMIT = 60_000
"""Image folders with at most this many training images (and ``--augment`` cifar or none) are decoded once
into memory (and cached on disk); larger ones, and every ``--augment imagenet`` run, stream from disk."""
STATISTICS_SAMPLE = 512
"""Images (an evenly spread sample of the training split) behind a streamed folder's normalisation statistics."""


def _class_folders(split_dir: pathlib.Path, classes: Sequence[str]) -> list[tuple[pathlib.Path, int]]:
    """Every image file of ``split_dir/<class>/`` (torchvision's image extensions), with its label; an empty
    class folder is an error naming it."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS) \
            if folder.is_dir() else []
        if not found:
            raise DataError(f"class folder {folder} holds no image files ({', '.join(IMG_EXTENSIONS)})")
        files += [(path, label) for path in found]
    return files


def _open(path: pathlib.Path, mode: str) -> Tensor:
    """The image file decoded as uint8 (C, H, W) in ``mode`` (``RGB`` or ``L``); DataError naming the file."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with Image.open(path) as handle:
            return pil_to_tensor(handle.convert(mode))
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot decode image file {path}: {error}") from error


def _image_mode(files: Sequence[tuple[pathlib.Path, int]]) -> str:
    """``L`` when the first images are all grey, else ``RGB``."""
    from PIL import Image

    for path, _ in files[:8]:
        try:
            with Image.open(path) as handle:
                if handle.mode not in ("L", "1", "I;16", "I"):
                    return "RGB"
        except OSError:
            continue
    return "L"


@dataclass(frozen=True)
class Geometry:
    """How an image is brought to the network's input size: the shorter side resized to ``resize`` (default
    ``size``) with ``interpolation`` (antialiased), then the centre ``size`` square; ``size`` None keeps the image."""

    size: int | None = None
    resize: int | None = None
    interpolation: str = "bilinear"

    def fit(self, image: Tensor) -> Tensor:
        """The evaluation transform: no aspect-ratio distortion."""
        from torchvision.transforms.v2.functional import center_crop, resize

        if self.size is None:
            return image
        return center_crop(resize(image, [self.resize or self.size], interpolation=self.mode, antialias=True),
                           [self.size, self.size])

    @property
    def mode(self) -> Any:
        from torchvision.transforms import InterpolationMode

        return InterpolationMode(self.interpolation)


def _decode_folder(files: Sequence[tuple[pathlib.Path, int]], mode: str, geometry: Geometry,
                   progress: bool, split: str) -> tuple[Tensor, Tensor]:
    tqdm = require("tqdm", "train").tqdm

    images, labels, sizes = [], [], {}
    for path, label in tqdm(files, desc=f"decoding {split}", unit="img", disable=not progress, leave=False):
        image = geometry.fit(_open(path, mode))
        sizes.setdefault(tuple(image.shape[1:]), path)
        if len(sizes) > 1:
            (first, first_path), (other, other_path) = list(sizes.items())[:2]
            raise DataError(f"images differ in size ({first_path}: {first[0]}×{first[1]}, {other_path}: "
                            f"{other[0]}×{other[1]}); pass --image-size to resize them (shorter side, then centre crop)")
        images.append(image)
        labels.append(label)
    return torch.stack(images), torch.tensor(labels)


class EpochTaggedSampler(torch.utils.data.Sampler):
    """Yields ``epoch · N + index`` for each index of ``sampler`` (N the data set's size), so that a streamed
    data set draws each image's augmentation from a seed of (epoch, index): the same in every worker layout
    and after a resume."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler, size: int) -> None:
        self.sampler, self.size, self.epoch = sampler, size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        return (self.epoch * self.size + index for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class FolderImages(Dataset):
    """Images streamed from disk: each item decoded, transformed to ``geometry.size`` (``train``: the augmentation's
    random part drawn from a generator seeded by (epoch, index), as :class:`EpochTaggedSampler` tags it, so it
    touches no global RNG; else Resize + CenterCrop as ``geometry`` says)
    and returned as uint8 (C, S, S). An undecodable file gives None (the loader's :func:`collate_skipping`
    drops it and counts it) and is reported once on stderr, by path."""

    def __init__(self, files: Sequence[tuple[pathlib.Path, int]], mode: str, geometry: Geometry, augment: str,
                 train: bool, seed: int = 0) -> None:
        self.files, self.mode, self.geometry = list(files), mode, geometry
        self.augment, self.train, self.seed = augment, train, seed
        self.labels = torch.tensor([label for _, label in self.files])

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, indices: Sequence[int]) -> "FolderImages":
        """The same stream over the files at ``indices`` (epoch tags then count within the subset)."""
        return FolderImages([self.files[i] for i in indices], self.mode, self.geometry, self.augment, self.train,
                            self.seed)

    def _transform(self, image: Tensor, generator: torch.Generator) -> Tensor:
        from torchvision.transforms.v2 import functional

        geometry = self.geometry
        if self.train and self.augment == "imagenet":
            top, left, height, width = random_resized_crop(image.shape[-2], image.shape[-1], generator)
            image = functional.resized_crop(image, top, left, height, width, [geometry.size] * 2,
                                            interpolation=geometry.mode, antialias=True)
            return functional.horizontal_flip(image) if torch.rand((), generator=generator) < 0.5 else image
        return geometry.fit(image)

    def __getitem__(self, tagged: int) -> tuple[Tensor, int] | None:
        index = tagged % len(self.files)
        path, label = self.files[index]
        try:
            image = _open(path, self.mode)
        except DataError as error:
            print(f"plugattn: skipped {error}", file=sys.stderr, flush=True)
            return None
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + tagged)
        return self._transform(image, generator), label


def random_resized_crop(height: int, width: int, generator: torch.Generator, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop as torchvision's RandomResizedCrop draws it (area share in
    ``scale``, log-uniform aspect ratio in ``ratio``, ten tries, then the centre crop of the nearest ratio),
    drawn from ``generator`` so that each image's crop depends on its own seed only."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target = area * torch.empty(()).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(()).uniform_(log_ratio[0].item(), log_ratio[1].item(), generator=generator).item())
        crop_width, crop_height = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(torch.randint(0, height - crop_height + 1, (), generator=generator))
            left = int(torch.randint(0, width - crop_width + 1, (), generator=generator))
            return top, left, crop_height, crop_width
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_width, crop_height = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_height, crop_width = height, int(round(height * ratio[1]))
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


class SkippingBatch(tuple):
    """A collated (images, labels) batch that also says how many undecodable images it left out."""

    skipped = 0


def collate_skipping(items: Sequence[tuple[Tensor, int] | None]) -> SkippingBatch:
    """Collate the decodable items; the rest are counted in ``batch.skipped``."""
    kept = [item for item in items if item is not None]
    if not kept:
        batch = SkippingBatch((torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)))
    else:  # default_collate writes straight into shared memory inside a worker: no copy on the way back
        batch = SkippingBatch(torch.utils.data.default_collate(kept))
    batch.skipped = len(items) - len(kept)
    return batch


def _statistics(files: Sequence[tuple[pathlib.Path, int]], mode: str, geometry: Geometry) -> tuple[tuple[float, ...], ...]:
    step = max(1, len(files) // STATISTICS_SAMPLE)
    sample = []
    for path, _ in files[::step][:STATISTICS_SAMPLE]:
        try:
            sample.append(geometry.fit(_open(path, mode)).float().div_(255))
        except DataError:
            continue  # reported when training meets it
    if not sample:
        raise DataError(f"none of the {len(files[::step][:STATISTICS_SAMPLE])} sampled training images could be decoded "
                        f"(first: {files[0][0]})")
    stacked = torch.stack(sample)
    return tuple(stacked.mean((0, 2, 3)).tolist()), tuple(stacked.std((0, 2, 3)).tolist())


def load_image_folder(path: str | os.PathLike, *, image_size: int | None = None, augment: str = "cifar",
                      progress: bool = True, seed: int = 0, resize_size: int | None = None,
                      interpolation: str = "bilinear") -> DataBundle:
    """A class-per-folder tree: ``PATH/train/<class>/*`` and ``PATH/test/<class>/*`` (``val`` also accepted),
    grey or RGB. Small folders (≤ :data:`CACHE_LIMIT` training images, ``augment`` cifar or none) are decoded once
    into memory and cached on disk; their images must share one size unless ``image_size`` is given (shorter
    side resized, then centre-cropped), and an undecodable file is an error naming it. Larger folders and
    ``augment="imagenet"`` stream from disk through DataLoader workers (``image_size`` required; undecodable
    files are skipped, reported by path and counted in the run log). Evaluation images (and, cached, every image)
    have their shorter side resized to ``resize_size`` (default: ``image_size``, or ``image_size / 0.875`` with
    ``augment="imagenet"``) with ``interpolation``, then the centre square cropped."""
    if augment not in AUGMENTATIONS:
        raise DataError(f"augment must be one of {list(AUGMENTATIONS)}; got {augment!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive int (pixels of the square input), got {image_size!r}")
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
    train_files = _class_folders(root / "train", classes)
    test_files = _class_folders(root / test_name, classes)
    mode = _image_mode(train_files)
    if augment == "imagenet" or len(train_files) > CACHE_LIMIT:
        if image_size is None:
            raise DataError(f"imagefolder {root} streams from disk ({len(train_files)} training images, augment "
                            f"{augment!r}): pass --image-size (e.g. 224)")
        geometry = Geometry(image_size, resize_size or (int(round(image_size / 0.875)) if augment == "imagenet" else None),
                            interpolation)
        mean, std = _statistics(train_files, mode, geometry)
        return DataBundle(f"imagefolder:{root}", FolderImages(train_files, mode, geometry, augment, True, seed),
                          FolderImages(test_files, mode, geometry, augment, False, seed), classes, mean, std,
                          (image_size, image_size), 4 if augment == "cifar" else 0, batch_flip=augment == "cifar")
    geometry = Geometry(image_size, resize_size, interpolation)
    cache = _image_folder_cache(root, f"{mode}-{image_size}" + (f"-{resize_size}-{interpolation}" if resize_size else ""))
    if cache.exists():
        from safetensors.torch import load_file

        tensors = load_file(str(cache))
    else:
        train_x, train_y = _decode_folder(train_files, mode, geometry, progress, "train")
        test_x, test_y = _decode_folder(test_files, mode, geometry, progress, test_name)
        if train_x.shape[1:] != test_x.shape[1:]:
            raise DataError(f"{root / test_name} images are {tuple(test_x.shape[2:])}, the training images "
                            f"{tuple(train_x.shape[2:])}; pass --image-size to bring both to one size")
        tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
        from plugattn.checkpoint import atomic_save_tensors

        atomic_save_tensors(tensors, cache)
    train = TensorImages(tensors["train_x"], tensors["train_y"])
    scaled = tensors["train_x"].float().div_(255)
    mean = tuple(scaled.mean((0, 2, 3)).tolist())
    std = tuple(scaled.std((0, 2, 3)).tolist())
    size = tuple(train.images.shape[2:])
    cifar = augment == "cifar"
    return DataBundle(f"imagefolder:{root}", train, TensorImages(tensors["test_x"], tensors["test_y"]), classes,
                      mean, std, size, max(1, size[0] // 8) if cifar else 0, batch_flip=cifar)


def load_data(dataset: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
              progress: bool = True, image_size: int | None = None, augment: str = "cifar", seed: int = 0,
              resize_size: int | None = None, interpolation: str = "bilinear") -> DataBundle:
    """Load ``dataset``: ``fashion-mnist``, ``cifar10``, ``cifar100`` or ``imagefolder:PATH`` (``image_size``,
    ``augment``, ``resize_size`` and ``interpolation``: see :func:`load_image_folder`; the built-in sets take
    ``augment`` cifar or none, at their own size)."""
    if dataset.startswith("imagefolder:"):
        return load_image_folder(dataset.partition(":")[2], image_size=image_size, augment=augment,
                                 progress=progress, seed=seed, resize_size=resize_size, interpolation=interpolation)
    if dataset not in ("fashion-mnist", *_CIFAR):
        raise DataError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    if augment not in ("cifar", "none") or image_size is not None:
        raise DataError(f"{dataset} takes augment cifar or none at its own size; --augment imagenet and --image-size "
                        f"are for imagefolder:PATH data sets (got augment {augment!r}, image_size {image_size!r})")
    bundle = load_fashion_mnist(data_dir) if dataset == "fashion-mnist" else load_cifar(dataset, data_dir, download)
    if augment == "none":
        bundle = dataclasses.replace(bundle, crop_padding=0, batch_flip=False)
    return bundle


class BatchTransform:
    """uint8 batch -> normalised float batch; in training, a random crop (zero padding ``padding``) and (with
    ``flip``) a random horizontal flip per image, drawn from ``generator``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], padding: int = 0, *, flip: bool = True) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.padding = padding
        self.flip = flip

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
        if not self.flip:
            return x
        flip = torch.rand(n, generator=generator) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)


def _crop(padded: Tensor, top: Tensor, left: Tensor, h: int, w: int) -> Tensor:
    """Per-image crops of size (h, w) at offsets ``top``/``left`` from a padded batch."""
    n, c = padded.shape[:2]
    rows = (top.view(n, 1) + torch.arange(h)).view(n, 1, h, 1).expand(n, c, h, padded.shape[3])
    x = padded.gather(2, rows)
    cols = (left.view(n, 1) + torch.arange(w)).view(n, 1, 1, w).expand(n, c, h, w)
    return x.gather(3, cols)
