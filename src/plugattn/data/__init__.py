"""Data sources by kind: images (Fashion-MNIST, CIFAR, image folders; ``plugattn.data.images``), audio (WAV
files, log-mel spectrograms; :mod:`plugattn.data.audio`) and paired audio-visual digits (AV-MNIST;
:mod:`plugattn.data.avmnist`); every one raises :class:`~plugattn.data.DataError` naming what was expected and what was found."""

from plugattn.data.errors import DataError
from plugattn.data.images import (
    AUGMENTATIONS,
    CACHE_LIMIT,
    DATASETS,
    BatchTransform,
    DataBundle,
    EpochTaggedSampler,
    FolderImages,
    Geometry,
    TensorImages,
    collate_skipping,
    load_cifar,
    load_data,
    load_fashion_mnist,
    load_image_folder,
    random_resized_crop,
    read_idx,
)

__all__ = [
    "AUGMENTATIONS",
    "CACHE_LIMIT",
    "DATASETS",
    "BatchTransform",
    "DataBundle",
    "DataError",
    "EpochTaggedSampler",
    "FolderImages",
    "Geometry",
    "TensorImages",
    "collate_skipping",
    "load_cifar",
    "load_data",
    "load_fashion_mnist",
    "load_image_folder",
    "random_resized_crop",
    "read_idx",
]
