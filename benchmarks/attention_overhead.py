"""What SE and CBAM cost in wall time and memory, against what they must cost.

Run:  .venv/bin/python benchmarks/attention_overhead.py [--threads 2] [--rounds 7] [--skip-network] [--skip-compile]

Module level (inference): every block against ``x.clone()`` of the same tensor (one read, one write: the
memory-traffic floor of any block that returns a new map), a naive seed-style implementation kept in this
file, and timm's modules; NCHW and channels-last; shapes of ResNet-50's four stages at batch 8/1.
"plugattn CBAM" is the default inference path (fused: no autograd records); "CBAM reference formulation" is
the plain composition every transform sees (what training runs by default).
Network level: se_resnet50 and cbam_resnet50 against resnet50 at batch 1 and 8, eager and compiled
(``plugattn.optimize``: BatchNorm folded, channels-last, ``torch.compile``), inference and one training
step (time, and peak memory sampled from glibc's allocator at every saved tensor) on the default path and
with the opt-in training fast path (``plugattn.fast``). All variants of a row are timed interleaved in one
process; the table shows medians and ratios.

The attention family (``--skip-family`` to leave it out): every registered block after SE and CBAM, in
inference at the same shapes, against ``x.clone()`` and against timm's module where timm has one (``eca``,
``gc``, ``coord``), NCHW.

Import time: ``python -c "import plugattn"`` against ``python -c "import torch, torchvision"`` (and ``import
torch``), fresh processes, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn import CBAM, SqueezeExcite, create_model, fast
from plugattn.inference import optimize
from plugattn.profiling import peak_memory

SHAPES = [(8, 256, 56, 56), (8, 512, 28, 28), (8, 1024, 14, 14), (1, 2048, 7, 7)]


class SeedSE(nn.Module):
    """The seed's SELayer (with the papers' biases)."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        b, c, _, _ = x.size()
        y = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SeedCBAM(nn.Module):
    """The seed's ChannelGate + SpatialGate (official CBAM code), avg and max pooling, 7×7 kernel."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channel, channel // reduction), nn.ReLU(),
                                 nn.Linear(channel // reduction, channel))
        self.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: Tensor) -> Tensor:
        window = (x.size(2), x.size(3))
        raw = self.mlp(F.avg_pool2d(x, window, stride=window)) + self.mlp(F.max_pool2d(x, window, stride=window))
        x = x * torch.sigmoid(raw).unsqueeze(2).unsqueeze(3).expand_as(x)
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        return x * torch.sigmoid(self.bn(self.conv(pooled)))


def interleaved(functions: dict[str, Callable[[], object]], rounds: int, burst: int = 5) -> dict[str, float]:
    """Median seconds per call of each function. Every round runs each function ``burst`` times back to back
    (so that the allocator reaches its steady state for that function's sizes) and the functions take turns
    within each round, so that they share the machine's state; one warm-up round first."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(burst):
                function()
            if round_index:
                samples[name].append((time.perf_counter() - start) / burst)
    return {name: statistics.median(times) for name, times in samples.items()}


def module_level(rounds: int, compile_blocks: bool) -> None:
    from timm.layers.cbam import CbamModule
    from timm.layers.squeeze_excite import SEModule

    print("\n## Module level (inference, no autograd): median ms and ratio to x.clone()\n")
    print("| shape | layout | clone ms | plugattn SE | seed SE | timm SE | plugattn CBAM | CBAM reference formulation "
          "| seed CBAM | timm CBAM |" + (" SE compiled | CBAM compiled |" if compile_blocks else ""))
    print("|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if compile_blocks else ""))
    for shape in SHAPES:
        channels = shape[1]
        torch.manual_seed(0)
        blocks = {
            "plugattn SE": SqueezeExcite(channels, bias=True),
            "seed SE": SeedSE(channels),
            "timm SE": SEModule(channels, rd_ratio=1 / 16),
            "plugattn CBAM": CBAM(channels),
            "CBAM reference formulation": CBAM(channels),
            "seed CBAM": SeedCBAM(channels),
            "timm CBAM": CbamModule(channels, rd_ratio=1 / 16),
        }
        if compile_blocks:
            torch._dynamo.reset()  # each shape compiled afresh, as a user's model would be
            blocks["SE compiled"] = torch.compile(SqueezeExcite(channels, bias=True), dynamic=False)
            blocks["CBAM compiled"] = torch.compile(CBAM(channels), dynamic=False)
        for block in blocks.values():
            block.eval()
        for layout, memory_format in (("NCHW", torch.contiguous_format), ("channels-last", torch.channels_last)):
            x = torch.randn(shape).contiguous(memory_format=memory_format)
            with torch.no_grad():
                functions = {"clone": x.clone} | {name: (lambda b=block: b(x)) for name, block in blocks.items()}
                reference = blocks["CBAM reference formulation"]
                functions["CBAM reference formulation"] = lambda: reference._reference(x)
                medians = interleaved(functions, rounds)
            clone = medians.pop("clone")
            cells = " | ".join(f"{medians[name] / clone:.2f}×" for name in medians)
            print(f"| {list(shape)} | {layout} | {clone * 1e3:.1f} | {cells} |")


FAMILY = ("bam", "eca", "coord", "simam", "triplet", "gc", "scse")
TIMM_NAMES = {"eca": "eca", "gc": "gc", "coord": "coord"}


def family_level(rounds: int) -> None:
    from timm.layers import create_attn

    from plugattn import create_attention

    print("\n## The attention family (inference, no autograd, NCHW): median ms of x.clone() and ratio to it\n")
    columns = [*FAMILY, *(f"timm {name}" for name in TIMM_NAMES)]
    print("| shape | clone ms | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for shape in SHAPES:
        torch.manual_seed(0)
        blocks = {name: create_attention(name, shape[1]) for name in FAMILY}
        blocks |= {f"timm {name}": create_attn(timm_name, shape[1]) for name, timm_name in TIMM_NAMES.items()}
        x = torch.randn(shape)
        with torch.no_grad():
            functions = {"clone": x.clone} | {name: (lambda b=block.eval(): b(x)) for name, block in blocks.items()}
            medians = interleaved(functions, rounds)
        clone = medians.pop("clone")
        print(f"| {list(shape)} | {clone * 1e3:.1f} | " + " | ".join(f"{medians[n] / clone:.2f}×" for n in columns) + " |")


def network_level(rounds: int, compile_models: bool) -> None:
    print("\n## Network level: ResNet-50 family at 224×224, median ms (ratio to plain resnet50 in the same mode)\n")
    names = ["resnet50", "se_resnet50", "cbam_resnet50"]
    torch.manual_seed(0)
    models = {name: create_model(name).eval() for name in names}
    print("| mode | batch | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        variants = {"eager": (models, x)}
        if compile_models:
            example = torch.randn(1, 3, 224, 224)
            compiled = {name: optimize(model, example) for name, model in models.items()}
            variants["optimize() compiled"] = (compiled, x.contiguous(memory_format=torch.channels_last))
        for mode, (group, inputs) in variants.items():
            with torch.no_grad():
                medians = interleaved({name: (lambda m=model: m(inputs)) for name, model in group.items()}, rounds)
            base = medians["resnet50"]
            cells = " | ".join(f"{medians[n] * 1e3:.1f} ({medians[n] / base:.3f})" for n in names)
            print(f"| inference, {mode} | {batch} | {cells} |")
    batch = 8
    x = torch.randn(batch, 3, 224, 224)
    trainers = {name: create_model(name).train() for name in names}
    trainers |= {f"{name} fast": fast(create_model(name).train()) for name in names[1:]}

    def step(model: nn.Module) -> Tensor:
        loss = model(x).logsumexp(1).mean()
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss

    columns = list(trainers)
    print("\n| training, batch 8 | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    medians = interleaved({name: (lambda m=model: step(m)) for name, model in trainers.items()}, max(9, rounds), burst=1)
    base = medians["resnet50"]
    print("| step ms (ratio) | " + " | ".join(f"{medians[n] * 1e3:.0f} ({medians[n] / base:.3f})" for n in columns) + " |")
    memory = {name: peak_memory(lambda m=model: step(m)) for name, model in trainers.items()}
    if memory["resnet50"] is not None:
        print("| peak memory above the weights, MiB (ratio) | " + " | ".join(
            f"{memory[n] / 2**20:.0f} ({memory[n] / memory['resnet50']:.3f})" for n in columns) + " |")


def import_time(rounds: int) -> None:
    """Seconds to ``import plugattn`` in a fresh process against ``import torch, torchvision``."""
    commands = {"import torch": "import torch", "import torch, torchvision": "import torch, torchvision",
                "import plugattn": "import plugattn"}
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, code in commands.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            samples[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(times) for name, times in samples.items()}
    base = medians["import torch, torchvision"]
    print("\n## Import time (fresh process, median of {} interleaved runs)\n".format(rounds))
    print("| command | seconds | more than torch + torchvision |")
    print("|---|---|---|")
    for name, value in medians.items():
        print(f"| `python -c \"{name}\"` | {value:.2f} | {value - base:+.2f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-network", action="store_true")
    parser.add_argument("--skip-modules", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-family", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds of 5 calls (training: 1)")
    if not args.skip_modules:
        module_level(args.rounds, not args.skip_compile)
    if not args.skip_family:
        family_level(args.rounds)
    if not args.skip_import:
        import_time(args.rounds)
    if not args.skip_network:
        network_level(args.rounds, not args.skip_compile)


if __name__ == "__main__":
    main()
