"""What the attention costs in wall time and memory, against what it must cost.

Run:  .venv/bin/python benchmarks/attention_overhead.py [--threads 2] [--rounds 7] [--skip-network] [--skip-compile]
      [--skip-modules] [--skip-family] [--skip-cifar] [--skip-import] [--skip-family-networks]
      [--retain-freed-memory]

Module level (inference): SE and CBAM against ``x.clone()`` of the same tensor (one read, one write: the
memory-traffic floor of any block that returns a new map), a naive seed-style implementation kept in this
file, and timm's modules; NCHW and channels-last; shapes of ResNet-50's four stages at batch 8/1.
"plugattn CBAM" is the default inference path (fused: no autograd records); "CBAM reference formulation" is
the plain composition every transform sees (what training runs by default); "compiled" is the block compiled
alone, as ``plugattn.compile`` compiles it. The attention family (``--skip-family``): every other registered block
at the same shapes, eager and compiled, against ``x.clone()`` and timm's module where timm has one.
ResNet-20 at CIFAR size (``--skip-cifar``): inference at batch 1 and 128 and a training step at batch 128.
Network level: se_resnet50 and cbam_resnet50 against resnet50, inference at batch 1 and 8 (eager,
``optimize(compile="full")`` and ``optimize(compile="regional")``), and one training step at batch 8 — time and
peak memory (sampled from glibc's allocator at every saved tensor) — eager, with the hand-written fast path
(``plugattn.fast``), with the final BatchNorm and attention under activation checkpointing, and with the
attention compiled regionally, with the minor page faults of a step beside them (fresh pages the kernel hands out);
compile time of the regional path against ``torch.compile`` of the whole model, both with inductor's caches off
(a warm cache would make either look like seconds). The family's ResNet-50s (``--skip-family-networks``): the same
against resnet50 — inference at batch 1 and 8, eager; a training step eager, on the memory path and regionally
compiled, with the regional compile times.
Every row is timed interleaved in one process: ratios are medians (and quartiles) of per-round ratios.
It ends with the targets of the issue "Nearly free" (:data:`TARGETS`): each measure's median and upper quartile
against its target.

``--retain-freed-memory`` tells glibc's malloc (``mallopt``) to serve maps up to 32 MiB from its heap and never to
give freed heap memory back to the system — what ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647``
in the environment does — so that memory freed after one step is reused by the next instead of being returned and
faulted in again; it applies to every network of the run alike.

Import time: ``python -c "import plugattn"`` against ``python -c "import torch, torchvision"`` (and ``import
torch``), fresh processes, interleaved.
"""

from __future__ import annotations

import argparse
import ctypes
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch._inductor.config
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn import CBAM, SqueezeExcite, create_model, fast
from plugattn import compile as plugattn_compile
from plugattn.inference import optimize
from plugattn.profiling import peak_memory

SHAPES = [(8, 256, 56, 56), (8, 512, 28, 28), (8, 1024, 14, 14), (1, 2048, 7, 7)]

TARGETS = {  # issue "Nearly free": measure -> the ratio it must stay within (upper quartile of the rounds)
    "ResNet-50 train step b8, time, CBAM, regional compile": 1.10,
    "ResNet-50 train step b8, time, SE, regional compile": 1.04,
    "ResNet-50 train step b8, peak memory, CBAM, checkpoint": 1.05,
    "ResNet-50 train step b8, peak memory, SE, checkpoint": 1.05,
    "cbam_resnet50 inference b1, eager": 1.10,
    "cbam_resnet50 inference b1, optimize()": 1.03,
    "ResNet-20 + CBAM inference b1, eager": 1.30,
    "CBAM training formulation, module × clone, NCHW [8, 256, 56, 56]": 6.0,
    "compile time, regional / whole model, cbam_resnet50": 0.25,
}
"""What each measure must reach; :func:`targets_table` prints what this run measured against it."""
Measured = dict[str, list[float]]
"""Per measure of :data:`TARGETS`, the ratio in every round (one value where it is measured once)."""


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
    return {name: statistics.median(times) for name, times in interleaved_samples(functions, rounds, burst).items()}


def interleaved_samples(functions: dict[str, Callable[[], object]], rounds: int, burst: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function in every round (each runs ``burst`` times back to back, the functions take
    turns within a round; one warm-up round first)."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds + 1):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(burst):
                function()
            if round_index:
                samples[name].append((time.perf_counter() - start) / burst)
    return samples


def module_level(rounds: int, compile_blocks: bool, measured: Measured) -> None:
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
            if shape == SHAPES[0] and layout == "NCHW":
                measured["CBAM training formulation, module × clone, NCHW [8, 256, 56, 56]"] = [
                    medians["CBAM reference formulation"] / clone]


FAMILY = ("bam", "eca", "coord", "simam", "triplet", "gc", "scse")
TIMM_NAMES = {"eca": "eca", "gc": "gc", "coord": "coord"}


def retain_freed_memory() -> None:
    """glibc's malloc: maps up to 32 MiB (its largest mmap threshold) from the heap, and no heap trimming."""
    libc = ctypes.CDLL("libc.so.6")
    mmap_threshold, trim_threshold = -3, -1  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD in <malloc.h>
    if not (libc.mallopt(mmap_threshold, 32 * 2**20) and libc.mallopt(trim_threshold, 2**31 - 1)):
        raise SystemExit("--retain-freed-memory: glibc's mallopt refused the thresholds")


def with_page_faults(function: Callable[[], object]) -> tuple[object, int]:
    """``function()``'s result and the minor page faults of this process while it ran."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    result = function()
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def family_level(rounds: int, compile_blocks: bool) -> None:
    from timm.layers import create_attn

    from plugattn import create_attention

    print("\n## The attention family (inference, no autograd, NCHW): median ms of x.clone() and ratio to it; "
          "`compiled`: torch.compile of the block alone, as plugattn.compile compiles it\n")
    columns = [*FAMILY, *(f"timm {name}" for name in TIMM_NAMES)]
    if compile_blocks:
        columns += [f"{name} compiled" for name in FAMILY]
    print("| shape | clone ms | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for shape in SHAPES:
        torch.manual_seed(0)
        blocks = {name: create_attention(name, shape[1]).eval() for name in FAMILY}
        blocks |= {f"timm {name}": create_attn(timm_name, shape[1]).eval() for name, timm_name in TIMM_NAMES.items()}
        if compile_blocks:
            torch._dynamo.reset()
            blocks |= {f"{name} compiled": torch.compile(create_attention(name, shape[1]).eval(), dynamic=False)
                       for name in FAMILY}
        x = torch.randn(shape)
        with torch.no_grad():
            functions = {"clone": x.clone} | {name: (lambda b=block: b(x)) for name, block in blocks.items()}
            medians = interleaved(functions, rounds)
        clone = medians.pop("clone")
        print(f"| {list(shape)} | {clone * 1e3:.1f} | " + " | ".join(f"{medians[n] / clone:.2f}×" for n in columns) + " |")


def ratios(samples: dict[str, list[float]], name: str, base: str) -> list[float]:
    """The per-round ratios of ``name``'s seconds to ``base``'s."""
    return [a / b for a, b in zip(samples[name], samples[base])]


def ratio_cell(samples: dict[str, list[float]], name: str, base: str) -> str:
    """``×median (lower–upper quartile)`` of the per-round ratios of ``name`` to ``base``."""
    low, median, high = statistics.quantiles(ratios(samples, name, base), n=4)
    return f"×{median:.3f} ({low:.3f}–{high:.3f})"


def targets_table(measured: Measured) -> None:
    """Each target of :data:`TARGETS` this run measured: median and upper quartile of its rounds, and whether the
    upper quartile is within the target."""
    if not measured:
        return
    unknown = sorted(set(measured) - set(TARGETS))
    if unknown:
        raise KeyError(f"measured {unknown}, which TARGETS does not name")
    print("\n## Targets (ratio to the plain network in the same run and mode; met when the upper quartile is "
          "within the target)\n")
    print("| measure | median | upper quartile | rounds | target | met |")
    print("|---|---|---|---|---|---|")
    for measure, target in TARGETS.items():
        values = measured.get(measure)
        if not values:
            continue
        median = statistics.median(values)
        upper = statistics.quantiles(values, n=4)[2] if len(values) > 1 else values[0]
        print(f"| {measure} | ×{median:.3f} | ×{upper:.3f} | {len(values)} | ≤ ×{target:.2f} | "
              f"{'yes' if upper <= target else 'no'} |")


def _memory_model(name: str, method: str) -> nn.Module:
    torch.manual_seed(0)
    model = create_model(name).train()
    if method == "fast":
        fast(model)
    elif method == "checkpoint":
        fast(model, method="checkpoint")
    elif method == "regional":
        plugattn_compile(model, "regional")
    return model


def _training_step(x: Tensor) -> Callable[[nn.Module], None]:
    """One training step of a model on ``x`` (a stand-in loss), gradients dropped afterwards."""
    def step(model: nn.Module) -> None:
        model(x).logsumexp(1).mean().backward()
        model.zero_grad(set_to_none=True)
    return step


def _trainers(names: list[str], methods: list[str], step: Callable[[nn.Module], None]) -> tuple[
        dict[str, nn.Module], dict[str, float]]:
    """resnet50 and every ``name method`` model, each after its first step (which compiles the regional variants,
    inductor's caches off); the seconds of each regional first step."""
    trainers = {"resnet50": _memory_model("resnet50", "eager")}
    first_step = {}
    for name in names:
        for method in methods:
            model = _memory_model(name, method)
            start = time.perf_counter()
            with torch._inductor.config.patch(force_disable_caches=True):
                step(model)
            if method == "regional":
                first_step[name] = time.perf_counter() - start
            trainers[f"{name} {method}"] = model
    return trainers, first_step


def _training_table(trainers: dict[str, nn.Module], step: Callable[[nn.Module], None], rounds: int) -> tuple[
        dict[str, list[float]], dict[str, int | None]]:
    """Time (interleaved rounds), peak memory and minor page faults (of one step after the rounds) of every
    trainer's step against resnet50's, printed as a table; the samples and the peaks."""
    samples = interleaved_samples({name: (lambda m=model: step(m)) for name, model in trainers.items()}, max(9, rounds))
    memory, faults = {}, {}
    for name, model in trainers.items():  # one more step each, for its peak memory and its page faults
        memory[name], faults[name] = with_page_faults(lambda m=model: peak_memory(lambda: step(m)))
    print("\n| training step, batch 8 | time (ratio to resnet50) | peak memory above the weights (ratio) "
          "| minor page faults |")
    print("|---|---|---|---|")
    base_memory = memory["resnet50"]
    for name in trainers:
        time_cell = f"{statistics.median(samples[name]) * 1e3:.0f} ms" if name == "resnet50" else \
            ratio_cell(samples, name, "resnet50")
        memory_cell = "" if base_memory is None else (f"{memory[name] / 2**20:.0f} MiB" if name == "resnet50" else
                                                       f"×{memory[name] / base_memory:.3f}")
        print(f"| {name} | {time_cell} | {memory_cell} | {faults[name]:,} |")
    return samples, memory


def _inference_rows(variants: dict[str, tuple[dict[str, nn.Module], bool]], names: list[str], rounds: int,
                    measured: Measured | None = None) -> None:
    """Inference at batch 1 and 8 in every variant (mode -> models, channels-last), as a table of ratios to
    resnet50; CBAM's batch-1 ratios into ``measured`` where given."""
    print("| mode | batch | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)
        for mode, (group, channels_last) in variants.items():
            inputs = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            with torch.no_grad():
                for model in group.values():  # compile (or warm up) outside the timed rounds
                    model(inputs)
                samples = interleaved_samples({name: (lambda m=model: m(inputs)) for name, model in group.items()},
                                              max(7, rounds), burst=3 if batch == 1 else 1)
            base = statistics.median(samples["resnet50"])
            cells = " | ".join([f"{base * 1e3:.1f} ms"] + [ratio_cell(samples, n, "resnet50") for n in names[1:]])
            print(f"| inference, {mode} | {batch} | {cells} |")
            if measured is not None and batch == 1 and mode in ("eager", '`optimize(compile="full")`'):
                label = "eager" if mode == "eager" else "optimize()"
                measured[f"cbam_resnet50 inference b1, {label}"] = ratios(samples, "cbam_resnet50", "resnet50")


def network_level(rounds: int, compile_models: bool, measured: Measured) -> None:
    print("\n## Network level: ResNet-50 family at 224×224, median ms and the ratio to resnet50 in the same mode "
          "(median and quartiles of the per-round ratios)\n")
    names = ["resnet50", "se_resnet50", "cbam_resnet50"]
    torch.manual_seed(0)
    models = {name: create_model(name).eval() for name in names}
    example = torch.randn(1, 3, 224, 224)
    variants = {"eager": (models, False)}
    if compile_models:  # regional: the plain net has no attention to compile, so it runs folded and eager
        variants['`optimize(compile="full")`'] = (
            {name: optimize(model, example, compile="full") for name, model in models.items()}, True)
        variants['`optimize(compile="regional")`'] = (
            {name: optimize(model, example, compile="none" if name == "resnet50" else "regional")
             for name, model in models.items()}, True)
    _inference_rows(variants, names, rounds, measured)
    step = _training_step(torch.randn(8, 3, 224, 224))
    methods = ["eager", "fast", "checkpoint"] + (["regional"] if compile_models else [])
    trainers, first_step = _trainers(names[1:], methods, step)
    samples, memory = _training_table(trainers, step, rounds)
    base_memory = memory["resnet50"]
    for name, short in (("cbam_resnet50", "CBAM"), ("se_resnet50", "SE")):
        if compile_models:
            measured[f"ResNet-50 train step b8, time, {short}, regional compile"] = ratios(
                samples, f"{name} regional", "resnet50")
        if base_memory is not None:
            measured[f"ResNet-50 train step b8, peak memory, {short}, checkpoint"] = [
                memory[f"{name} checkpoint"] / base_memory]
    if compile_models:
        eager_step = statistics.median(samples["cbam_resnet50 eager"])
        full = _memory_model("cbam_resnet50", "eager")
        compiled = torch.compile(full)
        start = time.perf_counter()
        with torch._inductor.config.patch(force_disable_caches=True):
            step(compiled)
        full_seconds = time.perf_counter() - start - eager_step
        regional_seconds = first_step["cbam_resnet50"] - eager_step
        measured["compile time, regional / whole model, cbam_resnet50"] = [regional_seconds / full_seconds]
        print(f"\ncompile time, cbam_resnet50 training step (first step minus an eager step): regional "
              f"{regional_seconds:.1f} s, whole model {full_seconds:.1f} s ({regional_seconds / full_seconds:.0%}); "
              f"se_resnet50 regional {first_step['se_resnet50'] - statistics.median(samples['se_resnet50 eager']):.1f} s")


def family_network_level(rounds: int, compile_models: bool) -> None:
    """The attention family's ResNet-50s (the zoo's official placements) against resnet50: inference at batch 1 and
    8, eager; a training step at batch 8 eager, on the memory path (``plugattn.fast``: checkpointing for these
    blocks) and regionally compiled, with the regional path's compile time."""
    print("\n## Network level, the attention family: ResNet-50s at 224×224, ratio to resnet50 (median and quartiles "
          "of the per-round ratios)\n")
    names = ["resnet50", *(f"{name}_resnet50" for name in FAMILY)]
    torch.manual_seed(0)
    models = {name: create_model(name).eval() for name in names}
    _inference_rows({"eager": (models, False)}, names, rounds)
    del models
    step = _training_step(torch.randn(8, 3, 224, 224))
    trainers, first_step = _trainers(names[1:], ["eager", "fast"] + (["regional"] if compile_models else []), step)
    samples, _ = _training_table(trainers, step, rounds)
    if compile_models:
        print("\ncompile time of the regional path, training step (first step minus an eager step): " + ", ".join(
            f"{name} {first_step[name] - statistics.median(samples[f'{name} eager']):.1f} s" for name in names[1:]))


def cifar_level(rounds: int, measured: Measured) -> None:
    print("\n## ResNet-20 at CIFAR size (the demo's network), ratio to resnet20 (median and quartiles of rounds)\n")
    names = ["resnet20", "se_resnet20", "cbam_resnet20"]
    torch.manual_seed(0)
    models = {name: create_model(name, reduction=4).eval() for name in names}
    print("| measure | resnet20 | " + " | ".join(names[1:]) + " |")
    print("|---|---|" + "---|" * (len(names) - 1))
    for batch in (1, 128):
        x = torch.randn(batch, 3, 32, 32)
        with torch.no_grad():
            samples = interleaved_samples({name: (lambda m=model: m(x)) for name, model in models.items()},
                                          max(9, rounds), burst=20 if batch == 1 else 2)
        cells = " | ".join(ratio_cell(samples, name, "resnet20") for name in names[1:])
        print(f"| inference, batch {batch} | {statistics.median(samples['resnet20']) * 1e3:.2f} ms | {cells} |")
        if batch == 1:
            measured["ResNet-20 + CBAM inference b1, eager"] = ratios(samples, "cbam_resnet20", "resnet20")
    trainers = {name: create_model(name, reduction=4).train() for name in names}
    step = _training_step(torch.randn(128, 3, 32, 32))
    samples = interleaved_samples({name: (lambda m=model: step(m)) for name, model in trainers.items()}, max(9, rounds))
    cells = " | ".join(ratio_cell(samples, name, "resnet20") for name in names[1:])
    print(f"| training step, batch 128 | {statistics.median(samples['resnet20']) * 1e3:.1f} ms | {cells} |")


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
    parser.add_argument("--skip-cifar", action="store_true")
    parser.add_argument("--skip-family-networks", action="store_true")
    parser.add_argument("--retain-freed-memory", action="store_true",
                        help="glibc malloc keeps freed memory for reuse (see the module docstring)")
    args = parser.parse_args()
    if args.retain_freed_memory:
        retain_freed_memory()
    torch.set_num_threads(args.threads)
    allocator = "glibc malloc keeping freed memory" if args.retain_freed_memory else "glibc malloc, default settings"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {allocator}, median of {args.rounds} "
          "interleaved rounds of 5 calls (training: 1)")
    measured: Measured = {}
    if not args.skip_modules:
        module_level(args.rounds, not args.skip_compile, measured)
    if not args.skip_family:
        family_level(args.rounds, not args.skip_compile)
    if not args.skip_import:
        import_time(args.rounds)
    if not args.skip_cifar:
        cifar_level(args.rounds, measured)
    if not args.skip_network:
        network_level(args.rounds, not args.skip_compile, measured)
    if not args.skip_family_networks:
        family_network_level(args.rounds, not args.skip_compile)
    targets_table(measured)


if __name__ == "__main__":
    main()
