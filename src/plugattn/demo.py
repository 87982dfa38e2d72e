"""The main job behind ``make demo``, the story our users live: a trained network first (plain ResNet-20 on
Fashion-MNIST); then SE and CBAM inserted into it as the exact identity (the insertion default,
``init="identity-boost"``: accuracy unchanged at insertion, shown) and fine-tuned, against the plain network
trained on for the same budget — compared in a table (accuracy at insertion and after, parameters, MACs, latency),
by how far the inserted gates moved (their spread across channels and positions) and in pictures of what the
inserted attention learned. Plus the seed's multimodal idea on real data when AV-MNIST's sources are found (MNIST
digits and spoken digits: a two-stream network with MMTM fusion, its per-modality weights, clean and with each
modality corrupted); where they are not, the demo says how to fetch them and shows the idea on a stand-in: an SE
block weighing three input "modalities" (the image, its edges, and pure noise)."""

from __future__ import annotations

import json
import pathlib
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from plugattn.blocks import INSERTION_INIT, SqueezeExcite
from plugattn.data import BatchTransform, DataBundle, DataError, TensorImages, load_fashion_mnist
from plugattn.inspection import gate_spread
from plugattn.models import create_model
from plugattn.sweep import run_once, sweep
from plugattn.training import (
    EpochContext,
    Runtime,
    TrainConfig,
    evaluate_checkpoint,
    load_trained,
    lr_factor,
    make_optimizer,
    train_one_epoch,
)
from plugattn.visualisation import channel_group_figure, plot_before_after, visualise

MODALITIES = {"image": [0], "edges": [1], "noise": [2]}


def modality_stack(images: Tensor, seed: int) -> Tensor:
    """(N, 1, H, W) uint8 -> (N, 3, H, W) uint8: the image, its Sobel edge magnitude, and uniform noise."""
    x = images.float()
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    edges = (F.conv2d(x, sobel, padding=1) ** 2 + F.conv2d(x, sobel.transpose(2, 3), padding=1) ** 2).sqrt()
    edges = edges / edges.amax((1, 2, 3), keepdim=True).clamp(min=1) * 255
    noise = torch.randint(0, 256, x.shape, generator=torch.Generator().manual_seed(seed)).float()
    return torch.cat([x, edges, noise], 1).round().to(torch.uint8)


def modality_experiment(data: DataBundle, out: pathlib.Path, *, seed: int = 0, train_images: int = 10000) -> dict[str, float]:
    """Train an SE block on the three stacked modalities in front of ResNet-20 for one epoch and plot the
    mean weight it gives each modality (``modalities.png``)."""
    torch.manual_seed(seed)
    train_x = modality_stack(data.train.images[:train_images], seed)
    test_x = modality_stack(data.test.images[:1000], seed + 1)
    scaled = train_x.float().div(255)
    transform = BatchTransform(scaled.mean((0, 2, 3)).tolist(), scaled.std((0, 2, 3)).tolist(), padding=2)
    train_set = TensorImages(train_x, data.train.labels[:train_images])
    model = nn.Sequential(OrderedDict(
        modality_attention=SqueezeExcite(3, 1, bias=True),
        network=create_model("resnet20", in_channels=3, num_classes=data.num_classes),
    ))
    config = TrainConfig(epochs=1, lr=0.1, warmup_epochs=0.2, seed=seed, progress=True)
    sampler = DistributedSampler(train_set, 1, 0, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(train_set, config.batch_size, sampler=sampler, drop_last=True)
    optimizer = make_optimizer(config, model)
    context = EpochContext(model=model, loader=loader, sampler=sampler, transform=transform, optimizer=optimizer,
                           scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(loader))),
                           scaler=torch.amp.GradScaler("cpu", enabled=False), config=config,
                           runtime=Runtime(torch.device("cpu")))
    train_one_epoch(context, 0)
    return channel_group_figure(model, transform(test_x), MODALITIES, out / "modalities.png", block="modality_attention")


def print_gate_spread(console: Console, networks: dict[str, nn.Module], data: DataBundle, images: int = 1000) -> None:
    """Per network and gate kind, how far its inserted gates moved from the identity on the first ``images`` test
    images (:func:`plugattn.inspection.gate_spread`, effective values, mean and range over the blocks)."""
    sample = data.transform()(data.test_batch(images)[0])
    table = Table(title=f"how far the inserted gates moved from 1, on {images:,} test images (effective values; "
                        "mean over the blocks, their range in brackets)")
    for column in ("network", "gate", "spread across channels / positions", "mean |g - 1|"):
        table.add_column(column, justify="left" if column in ("network", "gate") else "right")
    for label, network in networks.items():
        per_block = gate_spread(network, sample).values()
        for kind in ("channel", "spatial", "element"):
            blocks = [block for block in per_block if f"{kind} spread" in block]
            if blocks:
                table.add_row(label, kind, *(_mean_and_range([block[f"{kind} {measure}"] for block in blocks])
                                             for measure in ("spread", "shift")))
    console.print(table)


def _mean_and_range(values: list[float]) -> str:
    return f"{sum(values) / len(values):.4f} ({min(values):.4f}-{max(values):.4f})"


AV_SEARCH = ("../shared/data", "data")
"""Where the demo looks for AV-MNIST's sources (``mnist/`` and ``fsdd/``) when ``--av-data-dir`` is not given."""


def find_av_data(given: str | None) -> pathlib.Path | None:
    """The folder holding ``mnist/`` and ``fsdd/``: ``given``, else the first of :data:`AV_SEARCH` that has both."""
    for folder in ([given] if given else AV_SEARCH):
        root = pathlib.Path(folder)
        if (root / "mnist").is_dir() and (root / "fsdd").is_dir():
            return root
    if given:
        raise DataError(f"--av-data-dir {given} must hold mnist/ and fsdd/ (plugattn fetch avmnist --out {given})")
    return None


def av_experiment(av_dir: pathlib.Path, out: pathlib.Path, console: Console, *, seed: int = 0,
                  train_pairs: int = 6000, epochs: int = 2, test_pairs: int | None = None) -> dict[str, Any]:
    """Train ResNet-8 image and audio streams with MMTM after stages 2 and 3 on AV-MNIST, evaluate it clean and with
    each modality corrupted (on the first ``test_pairs`` test pairs; all 10,000 by default), and draw its
    per-modality weights (``viz/modalities*.png``)."""
    config = TrainConfig(model="resnet8", dataset="avmnist", data_dir=str(av_dir), fusion="mmtm", fusion_stages=[2, 3],
                         epochs=epochs, batch_size=128, lr=0.05, train_subset=train_pairs, test_subset=test_pairs,
                         seed=seed, progress=True, out_dir=str(out / "avmnist"))
    summary = run_once(config)
    checkpoint, measured = out / "avmnist" / "last.safetensors", out / "avmnist" / "corrupted.json"
    written = {"per-modality weights": out / "viz" / "modalities.png",
               "per-modality weights against corruption": out / "viz" / "modalities_corrupted.png",
               "the numbers": out / "viz" / "modalities.json"}
    if measured.exists() and all(path.exists() for path in written.values()):  # finished earlier: read, not redone
        metrics = json.loads(measured.read_text())
    else:
        corruptions = ["image=noise:2", "image=blank", "audio=noise:-10", "audio=silence"]
        metrics = evaluate_checkpoint(checkpoint, corrupt=corruptions, limit=test_pairs)
        model, data, _, _ = load_trained(checkpoint)
        written = visualise(model, data, out / "viz", samples=1000)
        measured.write_text(json.dumps(metrics, indent=2))
    weights = json.loads((out / "viz" / "modalities.json").read_text())["clean"]
    console.print(f"AV-MNIST, two ResNet-8 streams with MMTM after stages 2 and 3 ({train_pairs} pairs x {epochs} "
                  f"epochs), on {'the 10,000' if test_pairs is None else f'the first {test_pairs:,}'} test pairs:")
    table = Table()
    table.add_column("test split")
    table.add_column("top-1", justify="right")
    table.add_row("clean", f"{metrics['top1']:.2%}")
    for condition, result in metrics["corrupted"].items():
        table.add_row(condition, f"{result['top1']:.2%}")
    console.print(table)
    console.print("mean MMTM gate per modality (clean test): " + "; ".join(
        f"{block}: " + ", ".join(f"{m} {w:.3f}" for m, w in entry["mean"].items()) for block, entry in weights.items()))
    return {"summary": summary, "metrics": metrics, "written": written}


def run_demo(out: str | pathlib.Path = "runs/demo", *, data_dir: str | None = None, train_subset: int = 30000,
             epochs: int = 1, finetune_epochs: int = 1, seed: int = 0, test_subset: int | None = None,
             modality_images: int = 10000, latency_rounds: int = 20, attention_lr_mult: float = 1.0,
             av_data_dir: str | None = None, av_train_pairs: int = 6000, av_epochs: int = 2,
             av_test_pairs: int | None = None) -> list[dict[str, Any]]:
    """Train plain, insert SE/CBAM as the identity (:data:`~plugattn.blocks.INSERTION_INIT`), fine-tune against
    the plain network trained on, compare, measure how far the gates moved, draw. Everything lands in ``out``; finished steps are skipped and interrupted ones resume when run again.
    Returns the fine-tuning runs' rows (see :func:`plugattn.sweep.sweep`)."""
    out = pathlib.Path(out)
    data = load_fashion_mnist(data_dir)
    console = Console(markup=False, highlight=False)  # messages verbatim: brackets are text, not markup
    common = dict(model="resnet20", dataset="fashion-mnist", data_dir=data_dir, batch_size=128, train_subset=train_subset,
                  test_subset=test_subset, reduction=4, seed=seed, progress=True)
    console.rule(f"1. a plain ResNet-20 trained on Fashion-MNIST ({train_subset} images x {epochs} epoch(s))")
    pretrained = run_once(TrainConfig(**common, epochs=epochs, lr=0.1, warmup_epochs=0.2, out_dir=str(out / "plain")))
    weights = out / "plain" / "last.safetensors"
    console.rule(f"2. SE and CBAM inserted as the identity ({INSERTION_INIT}), fine-tuned {finetune_epochs} epoch(s); "
                 "plain trained on alike")
    continued = TrainConfig(**common, weights=str(weights), init=INSERTION_INIT, epochs=finetune_epochs, lr=0.05,
                            warmup_epochs=0.1, attention_lr_mult=attention_lr_mult)
    rows = sweep(continued, {"attention": ["none", "se", "cbam"]}, out / "finetune", latency_rounds=latency_rounds)
    control = rows[0]
    table = Table(title=f"ResNet-20 on Fashion-MNIST, seed {seed}, r=4: the plain network after {epochs} epoch(s) "
                        f"had top-1 {pretrained['top1']:.2%}; then {finetune_epochs} more epoch(s) each")
    table.add_column("")
    for row in rows:
        table.add_column("plain, trained on" if row["attention"] == "none" else f"+ {row['attention'].upper()} "
                         f"({INSERTION_INIT})", justify="right")
    measures = {
        "top-1 at insertion": lambda row: f"{row['start_top1']:.2%}",
        "top-1 after": lambda row: f"{row['top1']:.2%}",
        "vs plain": lambda row: "control" if row is control else f"{(row['top1'] - control['top1']) * 100:+.2f} pp",
        "params": lambda row: f"{row['params'] / 1e6:.4f} M",
        "MACs": lambda row: f"{row['macs'] / 1e6:.2f} M",
        "latency batch 1": lambda row: f"x{row['latency_b1']:.2f}" if "latency_b1" in row else "",
        "latency batch 8": lambda row: f"x{row['latency_b8']:.2f}" if "latency_b8" in row else "",
        "train s": lambda row: f"{row['train_seconds']:.0f}",
    }
    for measure, cell in measures.items():
        table.add_row(measure, *(cell(row) for row in rows))
    console.print(table)
    console.print("latency: relative to the plain network in the same run (median of interleaved rounds)")
    plot_before_after(["plain", "+ SE", "+ CBAM"], [(row["start_top1"], 0.0) for row in rows],
                      [(row["top1"], 0.0) for row in rows], out / "insertion.png",
                      after_label=f"after {finetune_epochs} more epoch(s)",
                      title="ResNet-20 on Fashion-MNIST: attention inserted into the trained network")
    console.rule("3. what the inserted attention learned")
    networks = [load_trained(out / "finetune" / row["run"] / "last.safetensors")[0] for row in rows]
    print_gate_spread(console, dict(zip(("SE", "CBAM"), networks[1:])), data)
    written = visualise(networks[2], data, out / "viz", plain=networks[0])
    av_dir = find_av_data(av_data_dir)
    if av_dir is not None:
        console.rule(f"4. attention across modalities: AV-MNIST from {av_dir}")
        written |= av_experiment(av_dir, out, console, seed=seed, train_pairs=av_train_pairs, epochs=av_epochs,
                                 test_pairs=av_test_pairs)["written"]
    else:
        console.rule("4. attention across modalities (a stand-in: AV-MNIST's sources were not found)")
        console.print(f"AV-MNIST (MNIST + spoken digits) not found in {', '.join(AV_SEARCH)}: fetch it with `plugattn "
                      "fetch avmnist --out data` (then make demo again), or pass --av-data-dir FOLDER. Meanwhile, the "
                      "seed's idea on stand-in modalities:")
        weights_per_modality = modality_experiment(data, out / "viz", seed=seed, train_images=modality_images)
        console.print("modalities (SE over [image, edges, noise] input channels): "
                      + ", ".join(f"{name} {weight:.3f}" for name, weight in weights_per_modality.items()))
        written["mean SE weight per input modality"] = out / "viz" / "modalities.png"
    for kind, path in {**written, "accuracy at insertion and after fine-tuning": out / "insertion.png",
                       "fine-tuning runs, mean ± std": out / "finetune" / "results.png"}.items():
        console.print(f"{kind}: {path}")
    return rows
