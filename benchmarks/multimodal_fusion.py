"""Attention across modalities on AV-MNIST (MNIST digits paired with spoken digits, both degraded): unimodal streams,
late, early and mid fusion with and without SE/CBAM, ESANet's SE-sum and MMTM — one recipe, one budget, three seeds.

    .venv/bin/python benchmarks/multimodal_fusion.py [--data-dir ../shared/data] [--seeds 0,1,2] [--quick]

Every network is built by plugattn's recipe (``build_multimodal``): ResNet-8 streams (CIFAR ResNet, one unit per
stage) on the 28×28 image and the 40×64 log-mel map, fusion blocks after stages 2 and 3, logits averaged. Each run
trains on a fixed subset of the training pairs and is measured on a held-out validation subset of the training
pairs and on a fixed subset of the test pairs. The data's degradations are chosen on validation: the candidates
below are tried in order, and the first for which late fusion beats the best single modality by ≥ 2 points
(3-seed means) is kept; the best SE-based fusion for modality dropout is chosen on validation too. Test accuracy
is reported clean and with each modality corrupted at two strengths, with each attention fusion's per-modality
weights; the training step of each fusion is timed against late fusion in one process (interleaved rounds).

Writes benchmarks/results/multimodal_fusion.{json,md} and multimodal_fusion_{accuracy,weights}.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from plugattn.data.avmnist import AVMNISTOptions
from plugattn.data.paired import PairedBundle, PairedTensors, avmnist_bundle
from plugattn.inspection import capture
from plugattn.profiling import count_macs, count_parameters, measure_step_times
from plugattn.recipe import ModelRecipe, build_multimodal

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CANDIDATES = [AVMNISTOptions(image_energy=0.25, snr_db=0.0), AVMNISTOptions(image_energy=0.25, snr_db=10.0),
              AVMNISTOptions(image_energy=0.15, snr_db=10.0), AVMNISTOptions(image_energy=0.15, snr_db=20.0)]
"""Degradations tried in order: AV-MNIST's quarter of the image energy with audio at 0 dB, then cleaner audio (the
audio stream is the weaker one), then less image energy."""
STAGES = [2, 3]
CONFIGS = {
    "image only": dict(model="image=resnet8"),
    "audio only": dict(model="audio=resnet8"),
    "late fusion": dict(model="resnet8"),
    "early": dict(model="resnet8", fusion="early", fusion_attention=None),
    "early + SE": dict(model="resnet8", fusion="early", fusion_attention="se"),
    "early + CBAM": dict(model="resnet8", fusion="early", fusion_attention="cbam"),
    "concat": dict(model="resnet8", fusion="concat", fusion_stages=STAGES, fusion_attention=None),
    "concat + SE": dict(model="resnet8", fusion="concat", fusion_stages=STAGES, fusion_attention="se"),
    "concat + CBAM": dict(model="resnet8", fusion="concat", fusion_stages=STAGES, fusion_attention="cbam"),
    "se-sum": dict(model="resnet8", fusion="se-sum", fusion_stages=STAGES),
    "mmtm (σ gate, code)": dict(model="resnet8", fusion="mmtm", fusion_stages=STAGES, fusion_options={"gate": "sigmoid"}),
    "mmtm (2σ gate)": dict(model="resnet8", fusion="mmtm", fusion_stages=STAGES, fusion_options={"gate": "2sigmoid"}),
    "concat + SE (identity start)": dict(model="resnet8", fusion="concat", fusion_stages=STAGES, fusion_attention="se",
                                        init="identity"),
}
CONTROLS = ("image only", "audio only", "late fusion", "early", "concat")
"""Configurations without attention (no per-modality weights to record)."""
SE_FUSIONS = ("early + SE", "concat + SE", "se-sum", "concat + SE (identity start)")
DROPOUT = 0.3
CORRUPTIONS = {"image noise 1σ": {"image": ("noise", 1.0)}, "image noise 2σ": {"image": ("noise", 2.0)},
               "audio −5 dB": {"audio": ("noise", -5.0)}, "audio −10 dB": {"audio": ("noise", -10.0)}}


@dataclasses.dataclass
class Budget:
    train: int = 4000
    validation: int = 2000
    test: int = 2000
    epochs: int = 4
    batch_size: int = 128
    lr: float = 0.05


def _materialise(split: PairedTensors, indices: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    return [split.modality(m)[indices] for m in range(len(split.inputs))], split.labels[indices]


def prepare(data: PairedBundle, budget: Budget) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
    """Fixed train / validation subsets of the training pairs (disjoint) and a test subset, normalised."""
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(2024))
    test_order = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(2025))[:budget.test]
    transform = data.transform()
    parts = {"train": _materialise(data.train, order[:budget.train]),
             "validation": _materialise(data.train, order[budget.train:budget.train + budget.validation])}
    parts["test"] = _materialise(data.test, test_order)
    for name, corruption in CORRUPTIONS.items():
        parts[name] = _materialise(data.corrupted(corruption, seed=7).test, test_order)
    return {name: (list(transform(inputs)), labels) for name, (inputs, labels) in parts.items()}


def build(name: str, data: PairedBundle, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_multimodal(ModelRecipe(**CONFIGS[name]), num_classes=10, shapes=data.shapes)[0]


def train_one(model: torch.nn.Module, train: tuple[list[torch.Tensor], torch.Tensor], budget: Budget, seed: int,
              dropout: float) -> float:
    """SGD (momentum 0.9, Nesterov, weight decay 5e-4, cosine) for ``budget.epochs``; returns seconds."""
    from plugattn.data.paired import PairedTransform

    inputs, labels = train
    generator = torch.Generator().manual_seed(seed)
    drop = PairedTransform([[0.0]] * len(inputs), [[1.0]] * len(inputs), dropout)
    optimizer = torch.optim.SGD(model.parameters(), lr=budget.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = budget.epochs * (len(labels) // budget.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    started = time.perf_counter()
    model.train()
    for _ in range(budget.epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels) - budget.batch_size + 1, budget.batch_size):
            batch = order[start:start + budget.batch_size]
            x = [t[batch] for t in inputs]
            if dropout:
                x = list(drop(x, generator))
            loss = F.cross_entropy(model(*x), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return time.perf_counter() - started


@torch.no_grad()
def measure(model: torch.nn.Module, part: tuple[list[torch.Tensor], torch.Tensor], weights: bool) -> dict:
    """Top-1 on ``part`` and, for attention fusions, each fusion block's mean weight per modality."""
    model.eval()
    inputs, labels = part
    result: dict = {}
    if weights:
        with capture(model) as seen:
            logits = torch.cat([model(*[t[s:s + 500] for t in inputs]) for s in range(0, len(labels), 500)])
        result["weights"] = {name: seen.modality_weights(name).mean(0).tolist() for name in seen.fusion_names}
    else:
        logits = torch.cat([model(*[t[s:s + 500] for t in inputs]) for s in range(0, len(labels), 500)])
    result["top1"] = float((logits.argmax(1) == labels).float().mean())
    return result


def run(name: str, data: PairedBundle, parts: dict, budget: Budget, seed: int, dropout: float = 0.0) -> dict:
    model = build(name, data, seed)
    seconds = train_one(model, parts["train"], budget, seed, dropout)
    weighs = name not in CONTROLS
    record = {"config": name, "seed": seed, "dropout": dropout, "train_seconds": seconds,
              "params": count_parameters(model),
              "macs": count_macs(model.eval(), *[t[:1] for t in parts["test"][0]])}
    for part in ("validation", "test", *CORRUPTIONS):
        record[part] = measure(model, parts[part], weighs and part != "validation")
    print(f"  {name}{f' + dropout {dropout}' if dropout else ''} seed {seed}: validation "
          f"{record['validation']['top1']:.2%}, test {record['test']['top1']:.2%} ({seconds:.0f} s)", flush=True)
    return record


def best_se_fusion(records: list[dict]) -> str:
    """The SE-based fusion with the best mean validation top-1 (without modality dropout) among those run."""
    means = {name: mean_std([r["validation"]["top1"] for r in records if r["config"] == name and not r["dropout"]])[0]
             for name in SE_FUSIONS if any(r["config"] == name for r in records)}
    return max(means, key=means.get)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def step_costs(data: PairedBundle, parts: dict, rounds: int = 7, steps: int = 4) -> dict[str, list[float]]:
    """Seconds per training step (batch 128) of each fusion and late fusion, interleaved per round."""
    names = ["late fusion", "mmtm (σ gate, code)", "mmtm (2σ gate)", "se-sum", "concat + SE", "concat + SE (identity start)",
             "concat + CBAM", "early + SE"]
    models = [build(name, data, 0) for name in names]
    inputs, labels = parts["train"]
    times = measure_step_times(models, tuple(t[:128] for t in inputs), labels[:128], rounds=rounds, steps=steps)
    return dict(zip(names, times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true", help="A tiny budget to check the script runs (numbers meaningless).")
    parser.add_argument("--costs", action="store_true", help="Time the training steps again (alone, or with --add).")
    parser.add_argument("--add", help="Only run these configurations (comma-separated names) on the data and budget the "
                        "last full run chose, and add them to its results.")
    args = parser.parse_args()
    if args.add or args.costs:
        add(args.add.split(",") if args.add else [], args.data_dir, costs=args.costs)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    budget = Budget(train=512, validation=256, test=256, epochs=1) if args.quick else Budget()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    records: list[dict] = []
    chosen = None
    for options in CANDIDATES:
        print(f"data: image energy {options.image_energy}, audio SNR {options.snr_db} dB", flush=True)
        data = avmnist_bundle(args.data_dir, options)
        parts = prepare(data, budget)
        trial = [run(name, data, parts, budget, seed) for name in ("image only", "audio only", "late fusion")
                 for seed in seeds]
        validation = {name: mean_std([r["validation"]["top1"] for r in trial if r["config"] == name])[0]
                      for name in ("image only", "audio only", "late fusion")}
        margin = validation["late fusion"] - max(validation["image only"], validation["audio only"])
        print(f"  validation: {validation}; late fusion − best single = {margin:+.2%}", flush=True)
        records += [dict(r, options=dataclasses.asdict(options)) for r in trial]
        if margin >= 0.02:
            chosen = options
            break
    if chosen is None:
        chosen = options
        print("no candidate met the 2-point margin on validation; the last one is kept and the result says so")
    records = [r for r in records if r["options"] == dataclasses.asdict(chosen)]
    for name in CONFIGS:
        if name in ("image only", "audio only", "late fusion"):
            continue
        records += [dict(run(name, data, parts, budget, seed), options=dataclasses.asdict(chosen)) for seed in seeds]
    best_se = best_se_fusion(records)
    for name in ("mmtm (σ gate, code)", best_se):
        records += [dict(run(name, data, parts, budget, seed, DROPOUT), options=dataclasses.asdict(chosen))
                    for seed in seeds]
    costs = step_costs(data, parts)
    summary = {"budget": dataclasses.asdict(budget), "seeds": seeds, "data": dataclasses.asdict(chosen),
               "candidates_tried": CANDIDATES.index(chosen) + 1, "best_se_fusion_on_validation": best_se,
               "threads": torch.get_num_threads(), "records": records, "step_seconds": costs,
               "wall_seconds": time.perf_counter() - started}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "multimodal_fusion.json").write_text(json.dumps(summary, indent=2))
    table = report(summary)
    (RESULTS / "multimodal_fusion.md").write_text(table)
    print(table)
    plots(summary)
    print(f"{time.perf_counter() - started:.0f} s in all", file=sys.stderr)


def add(names: list[str], data_dir: str, costs: bool = False) -> None:
    """Run ``names`` (``NAME + dropout``: with modality dropout) with the recorded data, budget and seeds; append them
    to the results (``costs``: time the training steps again) and redraw."""
    runs = [(name.removesuffix(" + dropout"), DROPOUT if name.endswith(" + dropout") else 0.0) for name in names]
    unknown = [name for name, _ in runs if name not in CONFIGS]
    if unknown:
        raise SystemExit(f"--add: unknown configurations {unknown}; known: {list(CONFIGS)}")
    summary = json.loads((RESULTS / "multimodal_fusion.json").read_text())
    options, budget = AVMNISTOptions(**summary["data"]), Budget(**summary["budget"])
    data = avmnist_bundle(data_dir, options)
    parts = prepare(data, budget)
    started = time.perf_counter()
    for name, dropout in runs:
        summary["records"] = [r for r in summary["records"] if (r["config"], r["dropout"]) != (name, dropout)]
        summary["records"] += [dict(run(name, data, parts, budget, seed, dropout), options=summary["data"])
                               for seed in summary["seeds"]]
    if costs:
        summary["step_seconds"] = step_costs(data, parts)
    summary["best_se_fusion_on_validation"] = best_se_fusion(summary["records"])
    summary["wall_seconds"] += time.perf_counter() - started
    (RESULTS / "multimodal_fusion.json").write_text(json.dumps(summary, indent=2))
    table = report(summary)
    (RESULTS / "multimodal_fusion.md").write_text(table)
    print(table)
    plots(summary)


def _variants(records: list[dict]) -> dict[str, list[dict]]:
    variants: dict[str, list[dict]] = {}
    for record in records:
        label = record["config"] + (f" + dropout {record['dropout']}" if record["dropout"] else "")
        variants.setdefault(label, []).append(record)
    return variants


def report(summary: dict) -> str:
    """The Markdown table: top-1 mean ± std (clean, corrupted), params, MACs, time, step cost."""
    variants = _variants(summary["records"])
    costs = summary["step_seconds"]
    late_step = statistics.median(costs["late fusion"])
    lines = ["| fusion | validation | test clean | " + " | ".join(CORRUPTIONS) + " | params | MACs | train s | "
             "step × late (median, IQR) |", "|---" * (8 + len(CORRUPTIONS)) + "|"]
    for label, runs in variants.items():
        cells = [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in
                 (mean_std([r[part]["top1"] for r in runs]) for part in ("validation", "test", *CORRUPTIONS))]
        name = runs[0]["config"]
        if name in costs and not runs[0]["dropout"]:
            ratios = sorted(t / late_step for t in costs[name])
            q = statistics.quantiles(ratios, n=4)
            step = f"×{statistics.median(ratios):.3f} ({q[0]:.3f}–{q[2]:.3f})"
        else:
            step = ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {runs[0]['params']:,} | {runs[0]['macs'] / 1e6:.1f} M | "
                     f"{statistics.mean(r['train_seconds'] for r in runs):.0f} | {step} |")
    lines += ["", "Mean weight per modality (image / audio) of each attention fusion's blocks, test subset, 3-seed mean:",
              "", "| fusion | block | clean | image noise 2σ | audio −10 dB |", "|---|---|---|---|---|"]
    for label, runs in variants.items():
        if "weights" not in runs[0]["test"]:
            continue
        for block in runs[0]["test"]["weights"]:
            cells = []
            for part in ("test", "image noise 2σ", "audio −10 dB"):
                pairs = [r[part]["weights"][block] for r in runs]
                cells.append(" / ".join(f"{statistics.mean(p[i] for p in pairs):.3f}" for i in range(2)))
            lines.append(f"| {label} | {block} | " + " | ".join(cells) + " |")
    data = summary["data"]
    lines += ["", f"Data: AV-MNIST, images keep {data['image_energy']:.0%} of their variance, recordings at "
              f"{data['snr_db']:g} dB SNR (candidate {summary['candidates_tried']} of {len(CANDIDATES)}, chosen on "
              f"validation); {summary['budget']['train']} training pairs, {summary['budget']['epochs']} epochs, "
              f"seeds {summary['seeds']}; best SE fusion on validation: {summary['best_se_fusion_on_validation']}; "
              f"{summary['threads']} threads, {summary['wall_seconds'] / 60:.0f} min in all."]
    return "\n".join(lines) + "\n"


def plots(summary: dict) -> None:
    from plugattn.visualisation import plot_bars, _figure

    variants = _variants(summary["records"])
    labels = list(variants)
    clean = [mean_std([r["test"]["top1"] for r in variants[label]]) for label in labels]
    late = statistics.mean(r["test"]["top1"] for r in variants["late fusion"])
    plot_bars(labels, [m for m, _ in clean], [s for _, s in clean], RESULTS / "multimodal_fusion_accuracy.png",
              title="AV-MNIST test top-1 (mean ± std, 3 seeds)", reference=late, reference_label="late fusion")
    weighing = [label for label in labels if "weights" in variants[label][0]["test"]]
    figure = _figure(figsize=(max(6.0, 1.3 * len(weighing) + 2), 4), dpi=100)
    axes = figure.subplots()
    conditions = [("test", "clean"), ("image noise 2σ", "image 2σ"), ("audio −10 dB", "audio −10 dB")]
    width = 0.8 / len(conditions)
    for c, (part, short) in enumerate(conditions):
        shares = []
        for label in weighing:
            values = [r[part]["weights"][block] for r in variants[label] for block in r[part]["weights"]]
            shares.append(statistics.mean(v[0] / (v[0] + v[1]) for v in values))
        axes.bar([i + (c - 1) * width for i in range(len(weighing))], shares, width, label=short)
    axes.axhline(0.5, color="0.3", linestyle="--", linewidth=1)
    axes.set_xticks(range(len(weighing)), weighing, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel("image's share of the mean weights")
    axes.set_title("Does the attention move towards the clean modality? (blocks and seeds averaged)", fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(RESULTS / "multimodal_fusion_weights.png")


if __name__ == "__main__":
    main()
