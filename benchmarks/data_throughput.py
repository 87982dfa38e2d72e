"""Training-loader throughput: plugattn's streamed image folders against torchvision's own ImageFolder with the
same transforms (RandomResizedCrop + horizontal flip), batch size and worker count, in one process.

Run:  .venv/bin/python benchmarks/data_throughput.py [--workers 2] [--batches 40] [--rounds 2]

Data: the CIFAR-10 JPEG copy in ../shared/data/cifar10-jpg (extracted once into ~/.cache/plugattn) at 32 px,
and a folder of mixed-size JPEGs (80–400 px, every aspect ratio) that the script generates, at 128 px.
Prints images per second (median over interleaved rounds) and the peak resident memory of the main process
and of the worker processes.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import statistics
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, DistributedSampler

from _cifar10 import ARCHIVE, CACHE, cifar10_folder
from plugattn.data import EpochTaggedSampler, collate_skipping, load_data


def mixed_folder(images_per_class: int = 200, classes: int = 5) -> pathlib.Path:
    root = CACHE / f"mixed-sizes-{classes}x{images_per_class}"
    if (root / "test").is_dir():
        return root
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", images_per_class), ("test", max(1, images_per_class // 5))):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                height, width = (int(v) for v in torch.randint(80, 401, (2,), generator=generator))
                pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
                Image.fromarray(pixels.numpy()).save(folder / f"{index:05d}.jpg", quality=85)
    return root


def plugattn_loader(root: pathlib.Path, size: int, batch: int, workers: int) -> DataLoader:
    data = load_data(f"imagefolder:{root}", image_size=size, augment="imagenet", progress=False)
    sampler = EpochTaggedSampler(DistributedSampler(data.train, 1, 0, shuffle=True, seed=0, drop_last=True), len(data.train))
    return DataLoader(data.train, batch, sampler=sampler, drop_last=True, num_workers=workers,
                      collate_fn=collate_skipping, persistent_workers=workers > 0)


def torchvision_loader(root: pathlib.Path, size: int, batch: int, workers: int) -> DataLoader:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    transform = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()])
    dataset = ImageFolder(str(root / "train"), transform=transform)
    return DataLoader(dataset, batch, shuffle=True, drop_last=True, num_workers=workers,
                      persistent_workers=workers > 0)


def images_per_second(loader: DataLoader, batches: int) -> float:
    iterator = iter(loader)
    for _ in range(2):  # warm-up: workers start, first files are read
        next(iterator)
    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        try:
            images, labels = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            images, labels = next(iterator)
        seen += len(labels)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = {}
    cifar = cifar10_folder()
    if cifar is not None:
        sets["CIFAR-10 JPEG, 50,000 images, 32 px"] = (cifar, 32)
    else:
        print(f"CIFAR-10 JPEG copy not found at {ARCHIVE}: skipped")
    sets["mixed sizes 80–400 px, 1,000 JPEGs, 128 px"] = (mixed_folder(), 128)
    print(f"torch {torch.__version__}, {args.workers} workers, batch {args.batch_size}, {args.batches} batches per "
          f"round, median of {args.rounds} interleaved rounds\n")
    print("| data | plugattn img/s | torchvision ImageFolder img/s | ratio |")
    print("|---|---|---|---|")
    for name, (root, size) in sets.items():
        loaders = {"plugattn": plugattn_loader(root, size, args.batch_size, args.workers),
                   "torchvision": torchvision_loader(root, size, args.batch_size, args.workers)}
        rates: dict[str, list[float]] = {key: [] for key in loaders}
        for _ in range(args.rounds):
            for key, loader in loaders.items():
                rates[key].append(images_per_second(loader, args.batches))
        ours, theirs = statistics.median(rates["plugattn"]), statistics.median(rates["torchvision"])
        print(f"| {name} | {ours:.0f} | {theirs:.0f} | ×{ours / theirs:.2f} |")
        del loaders
    main_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\npeak resident memory: main process {main_rss:.0f} MiB, largest worker {worker_rss:.0f} MiB "
          "(both loaders together; no image is held beyond its batch)")


if __name__ == "__main__":
    main()
