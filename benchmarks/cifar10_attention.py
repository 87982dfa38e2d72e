"""ResNet-20 plain / SE / CBAM on the CIFAR-10 JPEG copy in ../shared/data, several seeds, one budget.

Run:  .venv/bin/python benchmarks/cifar10_attention.py [--epochs 3 --train-subset 20000 --seeds 0,1,2]
Writes runs/cifar10_attention/{results.csv,results.md,results.png} and prints the table and wall time.
The archive is extracted once into ~/.cache/plugattn/ and decoded once (cached as safetensors).
"""

from __future__ import annotations

import argparse
import pathlib
import time

import torch

from _cifar10 import ARCHIVE, cifar10_folder
from plugattn.sweep import sweep
from plugattn.training import TrainConfig

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=20000)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--reduction", type=int, default=4, help="r=16 would leave SE a 1-wide hidden layer at 16 channels")
    parser.add_argument("--out", default="runs/cifar10_attention")
    parser.add_argument("--archive", type=pathlib.Path, default=ARCHIVE)
    args = parser.parse_args()
    tree = cifar10_folder(args.archive)
    if tree is None:
        raise SystemExit(f"{args.archive} not found: this benchmark needs the shared CIFAR-10 copy")
    base = TrainConfig(model="resnet20", dataset=f"imagefolder:{tree}", epochs=args.epochs, train_subset=args.train_subset,
                       batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine", warmup_epochs=0.2,
                       reduction=args.reduction, progress=False)
    started = time.perf_counter()
    grid = {"attention": ["none", "se", "cbam"], "seed": [int(s) for s in args.seeds.split(",")]}
    sweep(base, grid, args.out)
    wall = time.perf_counter() - started
    print(pathlib.Path(args.out, "results.md").read_text())
    print(f"budget: {args.epochs} epochs x {args.train_subset} training images, batch 128, SGD lr 0.1 cosine, "
          f"r={args.reduction}; full 10,000-image test set; wall time {wall / 60:.1f} min on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
