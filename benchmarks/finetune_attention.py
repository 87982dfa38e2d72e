"""Insert SE / CBAM into a trained network and fine-tune it on a second task: does it forget at insertion,
and does the attention pay off afterwards?

The script pretrains its own ResNet-20 on CIFAR-10 classes 0-4 (the JPEG copy in ../shared/data), then continues
from those weights on all ten classes (a new 10-way classifier) as: plain; + SE and + CBAM as the papers build
them (``init=paper``); + SE and + CBAM starting as the exact identity, with the plain blend
(``init=identity``) and with the insertion default (``init=identity-boost``); each with several seeds and the
same budget. It reports each variant's accuracy on the first task right after insertion (before
any step, with the pretrained 5-way classifier), the 10-class accuracy after fine-tuning (also split into the
five old and five new classes), parameters, MACs and training time.

Run:  .venv/bin/python benchmarks/finetune_attention.py [--pretrain-epochs 5 --epochs 2 --train-subset 15000]
Writes runs/finetune_attention/{results.csv,results.md,finetune_attention.png} (copied to
benchmarks/results/finetune_attention/, kept in the repository); finished runs are skipped and interrupted ones
resume when run again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import shutil
import statistics
import time

import torch
from torch.utils.data import DataLoader

from _cifar10 import ARCHIVE, cifar10_folder
from plugattn.data import DataBundle, collate_skipping, load_data
from plugattn.recipe import ModelRecipe, build_model
from plugattn.sweep import sweep
from plugattn.training import TrainConfig, evaluate_model, train
from plugattn.visualisation import plot_before_after

STARTS = ("paper", "identity", "identity-boost")
VARIANTS = (("none", None), *((attention, init) for attention in ("se", "cbam") for init in STARTS))


def task_tree(source: pathlib.Path, classes: list[str], target: pathlib.Path) -> pathlib.Path:
    """An ImageFolder tree of ``classes`` only: symbolic links to the class folders of ``source``."""
    for split in ("train", "test"):
        (target / split).mkdir(parents=True, exist_ok=True)
        for name in classes:
            link = target / split / name
            if not link.exists():
                os.symlink(source / split / name, link, target_is_directory=True)
    return target


def pretrain(config: TrainConfig) -> pathlib.Path:
    """Train (or resume, or reuse) the first-task network; returns its last checkpoint."""
    out = pathlib.Path(config.out_dir)
    last = out / "last.safetensors"
    if not (out / "summary.json").exists():
        train(config, resume=last if last.exists() else None)
    summary = json.loads((out / "summary.json").read_text())
    print(f"pretrained on {config.dataset}: top-1 {summary['top1']:.2%} after {config.epochs} epochs, "
          f"{summary['train_seconds']:.0f} s")
    return last


def first_task_network(tree: pathlib.Path, out: pathlib.Path, epochs: int, subset: int | None,
                       test_subset: int | None) -> tuple[str, pathlib.Path]:
    """The first task's data set spec and the pretrained network's checkpoint (trained once under ``out``,
    shared by every benchmark that fine-tunes it): ResNet-20 on CIFAR-10 classes 0-4, SGD lr 0.1 cosine."""
    classes = sorted(p.name for p in (tree / "train").iterdir() if p.is_dir())
    first_task = f"imagefolder:{task_tree(tree, classes[:5], out / 'first-task-data')}"
    config = TrainConfig(model="resnet20", dataset=first_task, epochs=epochs, train_subset=subset, batch_size=128,
                         lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine", warmup_epochs=0.2,
                         test_subset=test_subset, progress=False, seed=0, out_dir=str(out / "pretrain"))
    return first_task, pretrain(config)


def accuracy_at_insertion(weights: pathlib.Path, attention: str | None, init: str | None, seed: int, reduction: int,
                          data: DataBundle) -> float:
    """First-task top-1 (on ``data``) of the pretrained network with attention inserted as the fine-tuning run
    inserts it."""
    torch.manual_seed(seed)
    recipe = ModelRecipe(model="resnet20", weights=str(weights), attention=attention, init=init, reduction=reduction)
    model, _ = build_model(recipe, num_classes=data.num_classes, in_channels=data.in_channels)
    loader = DataLoader(data.test, 256, collate_fn=collate_skipping)
    return evaluate_model(model, loader, data.transform(), data.num_classes, torch.device("cpu"))["top1"]


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--pretrain-subset", type=int, default=None, help="pretraining images (of 25,000)")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    parser.add_argument("--train-subset", type=int, default=15000, help="fine-tuning images (of 50,000)")
    parser.add_argument("--lr", type=float, default=0.02, help="fine-tuning learning rate (pretraining: 0.1)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--reduction", type=int, default=4, help="r=16 would leave SE a 1-wide hidden layer at 16 channels")
    parser.add_argument("--test-subset", type=int, default=None, help="for a quick check only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/finetune_attention"))
    parser.add_argument("--archive", type=pathlib.Path, default=ARCHIVE)
    args = parser.parse_args()
    tree = cifar10_folder(args.archive)
    if tree is None:
        raise SystemExit(f"{args.archive} not found: this benchmark needs the shared CIFAR-10 copy")
    started = time.perf_counter()
    common = dict(model="resnet20", batch_size=128, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                  reduction=args.reduction, test_subset=args.test_subset, progress=False)
    first_task, weights = first_task_network(tree, args.out, args.pretrain_epochs, args.pretrain_subset, args.test_subset)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = TrainConfig(**common, weights=str(weights), dataset=f"imagefolder:{tree}", epochs=args.epochs, lr=args.lr,
                       warmup_epochs=0.1, train_subset=args.train_subset)
    runs = sweep(base, {"attention": ["none", "se", "cbam"], "init": list(STARTS), "seed": seeds},
                 args.out / "finetune")
    first_task_data = load_data(first_task, progress=False)
    rows = []
    for run in runs:
        summary = json.loads((args.out / "finetune" / run["run"] / "summary.json").read_text())
        attention = None if run["attention"] == "none" else run["attention"]
        per_class = summary["per_class_accuracy"]
        rows.append({"attention": run["attention"], "init": run.get("init") if attention else None, "seed": run["seed"],
                     "first_task_top1_at_insertion": accuracy_at_insertion(weights, attention, run.get("init"), run["seed"],
                                                                           args.reduction, first_task_data),
                     "top1": summary["top1"], "top1_before_finetuning": summary["start_metrics"]["top1"],
                     "old_classes_top1": statistics.fmean(per_class[:5]), "new_classes_top1": statistics.fmean(per_class[5:]),
                     "params": summary["params"], "macs": summary["macs"], "train_seconds": summary["train_seconds"]})
    with (args.out / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    wall = time.perf_counter() - started
    lines = ["| variant | runs | first task at insertion | 10 classes after | old 5 after | new 5 after | params | MACs | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    labels, before, after = [], [], []
    for attention, init in VARIANTS:
        members = [r for r in rows if r["attention"] == attention and r["init"] == init]
        label = "plain" if init is None else f"{attention} {init}"
        columns = ("first_task_top1_at_insertion", "top1", "old_classes_top1", "new_classes_top1")
        stats = {c: mean_std([m[c] for m in members]) for c in columns}
        lines.append(f"| {label} | {len(members)} | " + " | ".join(f"{m:.2%} ± {s:.2%}" for m, s in stats.values())
                     + f" | {members[0]['params'] / 1e6:.4f} M | {members[0]['macs'] / 1e6:.2f} M | "
                     f"{statistics.fmean(m['train_seconds'] for m in members):.0f} |")
        labels.append(label)
        before.append(stats["first_task_top1_at_insertion"])
        after.append(stats["top1"])
    table = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(table)
    plot_before_after(labels, before, after, args.out / "finetune_attention.png",
                      before_label="first task (5 classes), at insertion", after_label="10 classes, after fine-tuning",
                      title=f"ResNet-20 pretrained on CIFAR-10 classes 0-4, fine-tuned on all 10; {len(seeds)} seeds")
    kept = pathlib.Path(__file__).parent / "results" / "finetune_attention"
    kept.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "results.md", "finetune_attention.png"):
        shutil.copyfile(args.out / name, kept / name)
    print(table)
    print(f"budget: pretraining {args.pretrain_epochs} epochs x {args.pretrain_subset or 25000} images (classes 0-4, lr 0.1); fine-tuning "
          f"{args.epochs} epochs x {args.train_subset} images (10 classes, lr {args.lr}, cosine, 0.1-epoch warm-up), "
          f"batch 128, r={args.reduction}; wall time {wall / 60:.1f} min on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
