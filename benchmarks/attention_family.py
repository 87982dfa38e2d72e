"""Every attention block, and none, under one recipe: the comparison published papers do not make.

Two settings users meet, each a resumable part with its own budget (finished runs are skipped, interrupted ones
resume when the script is run again):
- ``scratch``: ResNet-20 trained from scratch on the CIFAR-10 JPEG copy in ../shared/data, each block at the
  zoo's official placement (every residual unit; BAM between stages; GC in stages 2-3) with its own defaults;
- ``finetune``: the same blocks inserted as the exact identity with the insertion default
  (``init=identity-boost``) into the ResNet-20 that benchmarks/finetune_attention.py pretrains on classes 0-4, then
  fine-tuned on all ten classes; with them ``static``, a learnt per-channel scale ``x·σ(b)`` that ignores its
  input, started alike: the control for "the attention, or just a learnt scale of each residual branch?";
- ``starts``: the identity starts compared (``identity-boost`` from the finetune part, ``identity``,
  ``zero-sigmoid``, ``zero-tanh``) on SE, CBAM and coordinate attention under the finetune part's recipe, with
  each run's top-1 on 5,000 held-out training images (validation: the images no run trains on) and how much
  its gates vary after fine-tuning (:func:`plugattn.inspection.gate_spread` on 1,000 of those images).
The first two report top-1 mean ± std over seeds and Δ against the control (the plain net, same budget and seeds),
parameters, MACs and training time. ``--costs`` times, on an otherwise idle machine, each block's forward at batch 1
and 8 and its training step over the plain net's, interleaved (the training runs do not time anything: they share
the machine with whatever else runs).

Run:  .venv/bin/python benchmarks/attention_family.py [--part scratch|finetune|starts|all] [--seeds 0,1,2]
Writes runs/attention_family/{scratch,finetune,starts}/results.{csv,md,png}, runs/attention_family/results.{md,png}
and runs/attention_family/starts.{md,png,csv}; the summaries (tables, per-run rows, costs) are copied to
benchmarks/results/attention_family/, which is kept in the repository.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import shutil
import statistics
import time

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from _cifar10 import ARCHIVE, cifar10_folder
from finetune_attention import first_task_network
from plugattn import create_model, list_attention, register_attention
from plugattn.blocks import INSERTION_INIT, GateActivation, find_attention_blocks
from plugattn.data import collate_skipping
from plugattn.inspection import gate_spread
from plugattn.profiling import measure_latency, measure_step_times
from plugattn.sweep import sweep
from plugattn.training import TrainConfig, evaluate_model
from plugattn.training.evaluation import load_trained
from plugattn.training.setup import subset_order

FAMILY = ("se", "cbam", "bam", "eca", "coord", "simam", "triplet", "gc", "scse")
PARTS = ("scratch", "finetune")
STARTS = ("identity-boost", "identity", "zero-sigmoid", "zero-tanh")
CONTROL_BLOCK = "static"
STARTS_BLOCKS = ("se", "cbam", "coord")
VALIDATION = 5000
KEPT = pathlib.Path(__file__).parent / "results" / "attention_family"


class StaticGate(nn.Module):
    """``x·σ(b)``: a learnt scale per channel that ignores its input (``b`` from 0, so 0.5 at first, as SE's gates
    start near 0.5). Inserted like the blocks, it asks whether their gain is attention or a learnt branch scale."""

    def __init__(self, channels: int, **_options: object) -> None:
        super().__init__()
        self.logit = nn.Parameter(torch.zeros(channels))
        self.gate = GateActivation("channel")

    def forward(self, x: Tensor) -> Tensor:
        weights = self.gate(self.logit.repeat(x.shape[0], 1))  # a copy: a view of a parameter made under no_grad
        # would require grad without a grad_fn, which the FLOP counter's module tracker refuses
        return x * weights.view(*weights.shape, *(1,) * (x.dim() - 2))


register_attention(CONTROL_BLOCK, StaticGate, overwrite=True)


def budget(part: str, args: argparse.Namespace) -> str:
    """One line stating a part's training budget."""
    epochs, subset, lr = (args.epochs, args.train_subset, 0.1) if part == "scratch" else (
        args.finetune_epochs, args.finetune_subset, args.finetune_lr)
    start = ("from scratch" if part == "scratch" else
             f"from the ResNet-20 pretrained on classes 0-4 ({args.pretrain_epochs} epochs x 25,000 images), "
             + (f"blocks inserted as the identity (init={INSERTION_INIT})" if part == "finetune" else
                "blocks inserted with each identity start"))
    return (f"{part}: {start}; {epochs} epochs x {subset:,} training images, batch 128, SGD (Nesterov, momentum 0.9, "
            f"wd 5e-4) lr {lr} cosine, {len(args.seeds)} seeds, each block's own defaults, "
            + (f"first {args.test_subset:,} test images" if args.test_subset else "full 10,000-image test set"))


def run_part(part: str, tree: pathlib.Path, args: argparse.Namespace) -> None:
    """Run (or resume) one part's sweep and print its table, budget and wall time."""
    started = time.perf_counter()
    common = dict(model="resnet20", dataset=f"imagefolder:{tree}", batch_size=128, momentum=0.9, weight_decay=5e-4,
                  schedule="cosine", reduction=None, progress=False, test_subset=args.test_subset)
    if part == "scratch":
        base = TrainConfig(**common, epochs=args.epochs, train_subset=args.train_subset, lr=0.1, warmup_epochs=0.2)
        grid = {"attention": ["none", *args.blocks], "seed": args.seeds}
    else:
        _, weights = first_task_network(tree, args.pretrained, args.pretrain_epochs, None, args.test_subset)
        base = TrainConfig(**common, weights=str(weights), epochs=args.finetune_epochs, train_subset=args.finetune_subset,
                           lr=args.finetune_lr, warmup_epochs=0.1, init=INSERTION_INIT)
        if part == "finetune":  # the blocks the starts part compares first: it reads their runs with the default start
            first = [name for name in STARTS_BLOCKS if name in args.blocks]
            grid = {"attention": ["none", *first, CONTROL_BLOCK, *(name for name in args.blocks if name not in first)],
                    "seed": args.seeds}
        else:
            grid = {"attention": list(STARTS_BLOCKS), "init": [init for init in STARTS if init != INSERTION_INIT],
                    "seed": args.seeds}
    sweep(base, grid, args.out / part, control=part != "starts", latency_rounds=0)
    wall = time.perf_counter() - started
    print((args.out / part / "results.md").read_text())
    print(budget(part, args) + f"; wall time {wall / 60:.1f} min on {torch.get_num_threads()} threads")


def measure_costs(blocks: list[str], path: pathlib.Path, rounds: int = 7) -> None:
    """Each block's ResNet-20 (CIFAR size) over the plain net's, per interleaved round: forward in eval mode at
    batch 1 and 8 (the median of 20 calls per round) and the training step at batch 128; written to ``path``."""
    torch.manual_seed(0)
    names = ["none", *blocks]
    models = [create_model("resnet20", attention=name) for name in names]
    costs: dict[str, dict[str, list[float]]] = {}
    for batch_size in (1, 8):
        sample = torch.randn(batch_size, 3, 32, 32)
        per_round = [measure_latency(models, sample, rounds=20) for _ in range(rounds)]
        costs[f"latency_b{batch_size}"] = {name: [seconds[index] / seconds[0] for seconds in per_round]
                                           for index, name in enumerate(names)}
    times = measure_step_times(models, torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,)), rounds=rounds)
    costs["train_step"] = {name: [t / plain for t, plain in zip(own, times[0])] for name, own in zip(names, times)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rounds": rounds, "threads": torch.get_num_threads(), **costs}, indent=1))


def validation_indices(train_size: int, subset: int) -> list[int]:
    """The last ``VALIDATION`` images of the fixed permutation whose first ``subset`` the runs train on: images
    no run sees."""
    if subset + VALIDATION > train_size:
        raise SystemExit(f"--finetune-subset {subset} leaves fewer than {VALIDATION} images for validation")
    return subset_order(train_size)[-VALIDATION:]


def run_statistics(run_dir: pathlib.Path, subset: int) -> dict[str, float]:
    """Validation top-1 and the gates' spread and shift (mean over blocks) of a finished run; cached."""
    cached = run_dir / "validation.json"
    if cached.exists():
        return json.loads(cached.read_text())
    model, data, _, _ = load_trained(run_dir / "last.safetensors")
    held_out = Subset(data.train, validation_indices(len(data.train), subset))
    transform = data.transform()
    loader = DataLoader(held_out, 250, collate_fn=collate_skipping)
    stats = {"val_top1": evaluate_model(model, loader, transform, data.num_classes, torch.device("cpu"))["top1"]}
    if find_attention_blocks(model):
        images = torch.stack([held_out[i][0] for i in range(1000)])
        per_block = gate_spread(model, transform(images))
        for key in sorted({key for block in per_block.values() for key in block}):
            stats[key] = statistics.fmean(block[key] for block in per_block.values() if key in block)
    cached.write_text(json.dumps(stats))
    return stats


def starts_report(args: argparse.Namespace) -> None:
    """The identity starts' table and plot from the finetune and starts parts (those finished)."""
    rows = []
    for part in ("finetune", "starts"):
        path = args.out / part / "results.csv"
        if not path.exists():
            continue
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row["attention"] not in ("none", *STARTS_BLOCKS, CONTROL_BLOCK):
                    continue
                init = "none" if row["attention"] == "none" else row.get("init") or INSERTION_INIT
                stats = run_statistics(args.out / part / row["run"], args.finetune_subset)
                rows.append({"attention": row["attention"], "init": init, "seed": row["seed"],
                             "top1": float(row["top1"]), **stats})
    if not rows:
        return
    control = [row for row in rows if row["attention"] == "none"]
    lines = ["| block | start | runs | validation top-1 | test top-1 | Δ test vs plain | gate spread | gate shift |",
             "|" + "---|" * 8]
    figure_rows = []
    for attention in ("none", CONTROL_BLOCK, *STARTS_BLOCKS):
        for init in ("none",) if attention == "none" else STARTS:
            members = [row for row in rows if row["attention"] == attention and row["init"] == init]
            if not members:
                continue
            spread, shift = (gate_measure(members, "spread"), gate_measure(members, "shift"))
            cells = [attention, "—" if init == "none" else init, str(len(members))]
            for values in ([m["val_top1"] for m in members], [m["top1"] for m in members]):
                cells.append(f"{statistics.fmean(values):.2%} ± {stdev(values):.2%}")
            if attention == "none" or not control:  # the control's runs are the finetune part's
                cells.append("control" if attention == "none" else "")
            else:
                delta = statistics.fmean(m["top1"] for m in members) - statistics.fmean(m["top1"] for m in control)
                cells.append(f"{delta * 100:+.2f} pp")
            cells += [f"{statistics.fmean(v):.4f} ± {stdev(v):.4f}" if v else "" for v in (spread, shift)]
            lines.append("| " + " | ".join(cells) + " |")
            if attention not in ("none", CONTROL_BLOCK):
                figure_rows.append((attention, init, [m["val_top1"] for m in members], spread))
    (args.out / "starts.md").write_text("\n".join(lines) + "\n")
    with (args.out / "starts.csv").open("w", newline="") as handle:  # every run's validation and gate measures
        writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
        writer.writeheader()
        writer.writerows(rows)
    print("\n".join(lines))
    plot_starts(figure_rows, args.out / "starts.png")


def gate_measure(members: list[dict[str, float]], measure: str) -> list[float]:
    """Per run, the mean over gate kinds of ``measure`` (``spread`` or ``shift``); runs without gates give none."""
    return [statistics.fmean(v for k, v in m.items() if k.endswith(f" {measure}")) for m in members
            if any(k.endswith(f" {measure}") for k in m)]


def stdev(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def plot_starts(rows: list[tuple[str, str, list[float], list[float]]], path: pathlib.Path) -> None:
    """Validation top-1 and gate spread per block and start, error bars: std over seeds."""
    figure = Figure(figsize=(10, 4), dpi=100)
    panels = figure.subplots(1, 2)
    blocks = list(dict.fromkeys(row[0] for row in rows))
    width = 0.8 / len(STARTS)
    for offset, init in enumerate(STARTS):
        chosen = {row[0]: row for row in rows if row[1] == init}
        positions = np.array([index + (offset - (len(STARTS) - 1) / 2) * width for index, block in enumerate(blocks)
                              if block in chosen])
        present = [block for block in blocks if block in chosen]
        for axes, values in zip(panels, (2, 3)):
            means = [statistics.fmean(chosen[block][values]) * (100 if values == 2 else 1) for block in present]
            spreads = [stdev(chosen[block][values]) * (100 if values == 2 else 1) for block in present]
            axes.bar(positions, means, width, yerr=spreads, capsize=2, label=init)
    for axes, label in zip(panels, ("validation top-1 (%)", "gate spread after fine-tuning")):
        axes.set_xticks(range(len(blocks)), blocks)
        axes.set_ylabel(label)
        axes.legend(fontsize=8)
    low = min(statistics.fmean(row[2]) for row in rows) * 100
    panels[0].set_ylim(low - 3, None)
    figure.suptitle("identity starts inserted into a pretrained ResNet-20, fine-tuned on CIFAR-10; std over seeds",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def read_groups(path: pathlib.Path) -> dict[str, dict[str, float]]:
    """Per attention block: top-1 mean and std over seeds, parameters, MACs, latencies and training time."""
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    groups: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(row["attention"] for row in rows):
        members = [row for row in rows if row["attention"] == name]
        top1 = [float(row["top1"]) for row in members]
        groups[name] = {"runs": len(members), "mean": statistics.fmean(top1),
                        "std": stdev(top1),
                        "params": float(members[0]["params"]), "macs": float(members[0]["macs"]),
                        "train_seconds": statistics.fmean(float(row["train_seconds"]) for row in members)}
    return groups


def combined_table(parts: dict[str, dict[str, dict[str, float]]], costs: dict[str, dict[str, list[float]]]) -> str:
    """One row per block: both settings' top-1 and Δ against their control, parameters, MACs and training time
    from the first part the block ran in (scratch; the static control runs in finetune only), and the forward latencies and training step over the plain net's (median and quartiles
    of the interleaved rounds) when ``--costs`` measured them."""
    lines = [f"| attention | from scratch | Δ | fine-tuned, {INSERTION_INIT} start | Δ | params | MACs | latency b1 |"
             " latency b8 | train step | train s |", "|" + "---|" * 11]
    names = list(dict.fromkeys(name for groups in parts.values() for name in groups))
    for name in names:
        costs_from = next(groups for groups in parts.values() if name in groups)  # scratch where it ran
        control = costs_from["none"]
        cells = [name]
        for part in PARTS:
            group = parts.get(part, {}).get(name)
            if group is None:
                cells += ["", ""]
                continue
            base = parts[part]["none"]
            cells += [f"{group['mean']:.2%} ± {group['std']:.2%}",
                      "control" if name == "none" else f"{(group['mean'] - base['mean']) * 100:+.2f} pp"]
        cost = costs_from[name]
        cells += [f"{cost['params'] / 1e6:.4f} M" + ("" if name == "none" else f" ({cost['params'] / control['params'] - 1:+.1%})"),
                  f"{cost['macs'] / 1e6:.2f} M" + ("" if name == "none" else f" ({cost['macs'] / control['macs'] - 1:+.1%})"),
                  *(quartiles(costs[key][name]) if name in costs.get(key, {}) else ""
                    for key in ("latency_b1", "latency_b8", "train_step")),
                  f"{cost['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def quartiles(ratios: list[float]) -> str:
    """``×median (lower–upper quartile)``."""
    low, median, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"×{median:.2f} ({low:.2f}–{high:.2f})"


def plot(parts: dict[str, dict[str, dict[str, float]]], path: pathlib.Path, title: str) -> None:
    """Δ top-1 against each setting's control, one panel per setting, error bars: std over seeds."""
    figure = Figure(figsize=(5 * len(parts) + 1.5, 4.4), dpi=100)
    for axes, (part, groups) in zip(np.atleast_1d(figure.subplots(1, len(parts), sharey=False)), parts.items()):
        names = [name for name in groups if name != "none"]
        control = groups["none"]
        deltas = np.array([(groups[name]["mean"] - control["mean"]) * 100 for name in names])
        spreads = np.array([groups[name]["std"] * 100 for name in names])
        positions = np.arange(len(names))
        colours = ["tab:green" if delta > 0 else "tab:red" for delta in deltas]
        axes.axvspan(-control["std"] * 100, control["std"] * 100, color="0.88", label="control ± std", zorder=0)
        axes.barh(positions, deltas, xerr=spreads, capsize=3, color=colours, zorder=2)
        axes.axvline(0, color="0.3", linewidth=1)
        axes.set_yticks(positions, names)
        axes.invert_yaxis()
        axes.set_xlabel("Δ test top-1 against the plain net (points)")
        axes.set_title(f"{part}: control {control['mean']:.2%} ± {control['std']:.2%}", fontsize=9)
        axes.legend(loc="best", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=(*PARTS, "starts", "all", "report"), default="all",
                        help="report: rebuild the combined table and plot from the finished parts")
    parser.add_argument("--blocks", default=",".join(FAMILY))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3, help="from-scratch epochs")
    parser.add_argument("--train-subset", type=int, default=10000, help="from-scratch training images (of 50,000)")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--finetune-subset", type=int, default=10000, help="fine-tuning images (of 50,000)")
    parser.add_argument("--finetune-lr", type=float, default=0.02)
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--costs", action="store_true", help="time each block's forward (batch 1, 8) and training "
                        "step against the plain net (interleaved rounds; run on an otherwise idle machine) into costs.json")
    parser.add_argument("--pretrained", type=pathlib.Path, default=pathlib.Path("runs/finetune_attention"),
                        help="where finetune_attention.py keeps (or this script makes) the first-task network")
    parser.add_argument("--test-subset", type=int, default=None, help="for a quick check only")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/attention_family"))
    parser.add_argument("--archive", type=pathlib.Path, default=ARCHIVE)
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.blocks = [name for name in args.blocks.split(",") if name]
    unknown = sorted(set(args.blocks) - set(list_attention()))
    if unknown:
        parser.error(f"--blocks: unknown attention {unknown}; registered: {list_attention()}")
    tree = cifar10_folder(args.archive)
    if tree is None:
        raise SystemExit(f"{args.archive} not found: this benchmark needs the shared CIFAR-10 copy")
    for part in (*PARTS, "starts") if args.part == "all" else () if args.part == "report" else (args.part,):
        run_part(part, tree, args)
    if args.costs:
        measure_costs(args.blocks, args.out / "costs.json")
    starts_report(args)
    parts = {part: read_groups(args.out / part / "results.csv") for part in PARTS
             if (args.out / part / "results.csv").exists()}
    if parts:
        costs_file = args.out / "costs.json"
        costs = json.loads(costs_file.read_text()) if costs_file.exists() else {}
        table = combined_table(parts, costs)
        (args.out / "results.md").write_text(table + "\n" + "\n".join(budget(part, args) for part in parts) + "\n")
        plot(parts, args.out / "results.png", "ResNet-20, CIFAR-10: every block under one recipe; error bars: std over seeds")
        print(table)
    keep_summaries(args.out)


def keep_summaries(out: pathlib.Path) -> None:
    """Copy the tables, plots, per-run rows and costs (not the checkpoints) to ``KEPT``."""
    KEPT.mkdir(parents=True, exist_ok=True)
    for name in ("results.md", "results.png", "starts.md", "starts.png", "starts.csv", "costs.json"):
        if (out / name).exists():
            shutil.copyfile(out / name, KEPT / name)
    for part in (*PARTS, "starts"):
        if (out / part / "results.csv").exists():
            shutil.copyfile(out / part / "results.csv", KEPT / f"{part}_runs.csv")


if __name__ == "__main__":
    main()
