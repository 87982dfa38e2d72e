"""The main job behind ``make demo``: ResNet-20 plain / SE / CBAM on Fashion-MNIST with one budget and seed,
compared in a table (accuracy, parameters, MACs, latency) and in pictures; plus the seed's multimodal
idea, an SE block weighing three input "modalities" (the image, its edges, and pure noise)."""

from __future__ import annotations

import pathlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from plugattn.blocks import SqueezeExcite
from plugattn.data import BatchTransform, DataBundle, TensorImages, load_fashion_mnist
from plugattn.visualisation import channel_group_figure, visualise
from plugattn.models import create_model
from plugattn.profiling import profile
from plugattn.sweep import sweep
from plugattn.training import Runtime, TrainConfig, load_trained, lr_factor, make_optimizer, train_one_epoch

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
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, len(loader)))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    train_one_epoch(model, loader, sampler, transform, optimizer, scheduler, scaler, torch.autocast("cpu", enabled=False),
                    config, Runtime(torch.device("cpu")), 0, torch.contiguous_format)
    return channel_group_figure(model, transform(test_x), MODALITIES, out / "modalities.png", block="modality_attention")


def run_demo(out: str | pathlib.Path = "runs/demo", *, data_dir: str | None = None, train_subset: int = 30000,
             epochs: int = 1, seed: int = 0) -> None:
    """Train, compare, draw. Everything lands in ``out``."""
    out = pathlib.Path(out)
    data = load_fashion_mnist(data_dir)
    base = TrainConfig(model="resnet20", dataset="fashion-mnist", data_dir=data_dir, epochs=epochs, batch_size=128,
                       lr=0.1, warmup_epochs=0.2, train_subset=train_subset, reduction=4, seed=seed, progress=True)
    rows = sweep(base, {"attention": ["none", "se", "cbam"]}, out)
    console = Console()
    plain = create_model("resnet20", in_channels=1)
    table = Table(title=f"ResNet-20 on Fashion-MNIST: {train_subset} images x {epochs} epoch(s), seed {seed}, r=4")
    for column in ("attention", "test top-1", "top-5", "params (M)", "MACs (M)", "latency b1", "latency b8", "train s"):
        table.add_column(column, justify="left" if column == "attention" else "right")
    for row in rows:
        attention = None if row["attention"] == "none" else row["attention"]
        model = create_model("resnet20", in_channels=1, attention=attention, reduction=4)
        report = profile(model, (1, 28, 28), baseline=plain, batch_sizes=(1, 8), rounds=20)
        table.add_row(row["attention"], f"{row['top1']:.2%}", f"{row['top5']:.2%}", f"{row['params'] / 1e6:.4f}",
                      f"{row['macs'] / 1e6:.2f}", f"x{report.latency_ratio(1):.2f}", f"x{report.latency_ratio(8):.2f}",
                      f"{row['train_seconds']:.0f}")
    console.print(table)
    console.print("latency: relative to plain ResNet-20 in the same run (median of 20 interleaved rounds)")
    cbam = load_trained(out / "attention=cbam" / "last.safetensors")[0]
    plain_trained = load_trained(out / "attention=none" / "last.safetensors")[0]
    written = visualise(cbam, data, out / "viz", plain=plain_trained)
    weights = modality_experiment(data, out / "viz", seed=seed)
    console.print(escape("modalities (SE over [image, edges, noise] input channels): ")
                  + ", ".join(f"{name} {weight:.3f}" for name, weight in weights.items()))
    for kind, path in {**written, "mean SE weight per input modality": out / "viz" / "modalities.png",
                       "accuracy per attention": out / "results.png"}.items():
        console.print(f"{kind}: {path}")
