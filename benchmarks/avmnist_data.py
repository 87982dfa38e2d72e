"""AV-MNIST data preparation and loading: the first load (IDX files read, every recording decoded, noised and turned
into a log-mel map, PCA fitted, all written to the cache) against later loads (the cache read), and the training
loader's throughput (pairs per second, with the normalisation and modality dropout the trainer applies) against
what a training step consumes.

Run:  .venv/bin/python benchmarks/avmnist_data.py [--data-dir ../shared/data] [--loads 3] [--batches 60]

Each load is timed in a fresh process (nothing warm but the operating system's file cache; plugattn and torch
imported before the clock starts) with an empty cache folder for the first: what ``plugattn train --dataset
avmnist`` spends on its data before it builds the model.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler

from plugattn.data import collate_skipping
from plugattn.data.paired import load_paired
from plugattn.recipe import ModelRecipe, build_multimodal

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
LOAD = "import sys, time; from plugattn.data.paired import load_paired; t = time.perf_counter(); " \
       "load_paired('avmnist', sys.argv[1]); print(time.perf_counter() - t)"


def load_seconds(data_dir: str, cache: str) -> float:
    """Seconds a fresh process spends in ``load_paired('avmnist', …)`` with the cache in ``cache``."""
    done = subprocess.run([sys.executable, "-c", LOAD, data_dir], env={**os.environ, "PLUGATTN_CACHE": cache},
                          check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def pairs_per_second(data, batch: int, batches: int, workers: int) -> float:
    """The training loader's throughput, transform included (as the trainer builds it)."""
    sampler = DistributedSampler(data.train, 1, 0, shuffle=True, seed=0, drop_last=True)
    loader = DataLoader(data.train, batch, sampler=sampler, drop_last=True, num_workers=workers,
                        collate_fn=collate_skipping, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    transform, generator = data.transform(), torch.Generator().manual_seed(0)
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        inputs, _ = next(iterator)
        transform(inputs, generator)
    return batch * batches / (time.perf_counter() - started)


def step_pairs_per_second(data, batch: int, steps: int = 6) -> float:
    """What the demo's network (two ResNet-8 streams, MMTM at stages 2 and 3) consumes in training."""
    recipe = ModelRecipe(model="image=resnet8,audio=resnet8", fusion="mmtm", fusion_stages=[2, 3])
    model = build_multimodal(recipe, num_classes=len(data.classes), shapes=data.shapes, load_weights=False)[0]
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs, labels = data.test_batch(batch)
    inputs = data.transform()(inputs)
    for index in range(steps + 1):
        if index == 1:
            started = time.perf_counter()
        loss = F.cross_entropy(model(*inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--loads", type=int, default=3, help="Later loads timed (the median is reported).")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        first = load_seconds(args.data_dir, cache)
        later = [load_seconds(args.data_dir, cache) for _ in range(args.loads)]
        os.environ["PLUGATTN_CACHE"] = cache
        data = load_paired("avmnist", args.data_dir)
    throughput = {workers: pairs_per_second(data, args.batch_size, args.batches, workers) for workers in (0, 2)}
    step = step_pairs_per_second(data, args.batch_size)
    result = {"first_load_s": first, "later_load_s": later, "ratio": statistics.median(later) / first,
              "loader_pairs_per_s": throughput, "training_step_pairs_per_s": step,
              "threads": torch.get_num_threads(), "batch_size": args.batch_size}
    lines = ["| AV-MNIST (60,000 + 10,000 pairs) | value |", "|---|---|",
             f"| first load (decode 3,000 WAVs, log-mel, PCA, write cache) | {first:.1f} s |",
             f"| later load (cache read), median of {len(later)} | {statistics.median(later):.2f} s "
             f"(**{result['ratio']:.1%}** of the first) |"]
    lines += [f"| training loader, {workers} worker(s), batch {args.batch_size}, normalised | "
              f"{rate:,.0f} pairs/s |" for workers, rate in throughput.items()]
    lines.append(f"| training step, two ResNet-8 streams + MMTM (what the loader must feed) | {step:,.0f} pairs/s |")
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "avmnist_data.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "avmnist_data.md").write_text(f"Command: `.venv/bin/python benchmarks/avmnist_data.py`\n\n{table}\n")


if __name__ == "__main__":
    main()
