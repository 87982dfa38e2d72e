"""Cost of a model: parameters, multiply-accumulates (the SE/CBAM papers' "FLOPs"), the attention's share
of both, and inference latency relative to the same model without attention."""

from __future__ import annotations

import ctypes
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from plugattn.blocks import find_attention_blocks


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm statistics excluded).

    :param module: any module.
    :returns: the count.
    """
    return sum(p.numel() for p in module.parameters())


def _macs_by_module(module: nn.Module, *inputs: Tensor) -> dict[str, int]:
    """MACs per module path (``""`` for the whole model) of one forward pass, matrix products and convolutions only
    (the counter is a dispatch mode, under which the blocks run their reference formulation: an implementation
    detail never changes the count)."""
    from torch.utils.flop_counter import FlopCounterMode  # imported on use: it loads torch._prims (0.1 s)

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    root = type(module).__name__
    by_module = {"": counter.get_total_flops() // 2}
    for path, counts in counter.get_flop_counts().items():
        if path.startswith(f"{root}."):
            by_module[path[len(root) + 1 :]] = sum(counts.values()) // 2
    return by_module


def count_macs(module: nn.Module, *inputs: Tensor) -> int:
    """Multiply-accumulates of one forward pass, counting matrix products and convolutions only —
    the convention of the SE and CBAM papers' GFLOPs. ``torch.utils.flop_counter`` counts 2 FLOPs per MAC; it is a
    dispatch mode, under which every block runs its reference formulation.

    :param module: the network.
    :param inputs: its inputs (one batch).
    :returns: the MACs.
    """
    return _macs_by_module(module, *inputs)[""]


@torch.no_grad()
def measure_latency(
    models: Sequence[nn.Module], x: Tensor | tuple[Tensor, ...], *, rounds: int = 5, warmup: int = 1
) -> list[float]:
    """Median seconds per forward of each model on ``x``, the models interleaved within every round so
    that they share the machine's state; ratios between them are what to read. ``x``: the input, or a tuple of
    inputs (one per modality of a multi-stream network)."""
    inputs = x if isinstance(x, tuple) else (x,)
    for model in models:
        model.eval()
        for _ in range(warmup):
            model(*inputs)
    samples: list[list[float]] = [[] for _ in models]
    for _ in range(rounds):
        for index, model in enumerate(models):
            start = time.perf_counter()
            model(*inputs)
            samples[index].append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def measure_step_times(
    models: Sequence[nn.Module], x: Tensor | tuple[Tensor, ...], target: Tensor, *, rounds: int = 7, steps: int = 4,
    lr: float = 0.01,
) -> list[list[float]]:
    """Seconds per training step (forward, cross-entropy, backward, SGD step) of each model on ``x``, one value per
    round (the mean of ``steps`` steps; a first round warms up and is dropped), the models interleaved within every
    round so that they share the machine's state: read ratios between them, per round or their median."""
    inputs = x if isinstance(x, tuple) else (x,)
    optimizers = [torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) for model in models]
    samples: list[list[float]] = [[] for _ in models]
    for round_index in range(rounds + 1):
        for index, (model, optimizer) in enumerate(zip(models, optimizers)):
            model.train()
            start = time.perf_counter()
            for _ in range(steps):
                loss = nn.functional.cross_entropy(model(*inputs), target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if round_index:
                samples[index].append((time.perf_counter() - start) / steps)
    return samples


@dataclass
class ProfileReport:
    """What :func:`profile` measured. MACs count convolutions and linear layers only (papers' convention).

    :param input_shape: the sample's shape (C, H, W).
    :param params: the model's parameters.
    :param macs: its MACs for one sample.
    :param attention_params: the parameters inside attention blocks.
    :param attention_macs: the MACs inside attention blocks.
    :param attention_blocks: how many attention blocks.
    :param latency_ms: batch size → the model's latency (with a baseline).
    :param baseline_latency_ms: batch size → the baseline's latency, measured interleaved.
    """

    input_shape: tuple[int, ...]
    params: int
    macs: int
    attention_params: int
    attention_macs: int
    attention_blocks: int
    latency_ms: dict[int, float] = field(default_factory=dict)
    baseline_latency_ms: dict[int, float] = field(default_factory=dict)

    @property
    def attention_param_share(self) -> float:
        """The attention's share of the parameters."""
        return self.attention_params / self.params if self.params else 0.0

    @property
    def attention_mac_share(self) -> float:
        """The attention's share of the MACs."""
        return self.attention_macs / self.macs if self.macs else 0.0

    def latency_ratio(self, batch_size: int) -> float:
        """The model's latency over the baseline's at ``batch_size`` (measured sizes only)."""
        return self.latency_ms[batch_size] / self.baseline_latency_ms[batch_size]


def profile(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    baseline: nn.Module | None = None,
    batch_sizes: Sequence[int] = (1, 8),
    rounds: int = 5,
) -> ProfileReport:
    """Parameters, MACs and the attention's share of both for one sample; with ``baseline`` (the same model without
    attention, e.g. :func:`plugattn.without_attention`), latency at each batch size for both, interleaved.

    :param model: the network (set to eval mode).
    :param input_shape: one sample's shape (C, H, W).
    :param baseline: the plain network to time against, or None (no timing).
    :param batch_sizes: the batch sizes to time.
    :param rounds: interleaved timing rounds.
    :returns: the report.
    :raises ValueError: an empty or non-positive input shape.
    """
    input_shape = tuple(int(size) for size in input_shape)
    if not input_shape or any(size < 1 for size in input_shape):
        raise ValueError(f"input_shape must be positive sizes such as (3, 224, 224), got {input_shape}")
    model = model.eval()
    sample = torch.randn(1, *input_shape)
    macs = _macs_by_module(model, sample)
    blocks = find_attention_blocks(model)
    report = ProfileReport(
        input_shape=input_shape,
        params=count_parameters(model),
        macs=macs[""],
        attention_params=sum(count_parameters(block) for _, block in blocks),
        attention_macs=sum(macs.get(name, 0) for name, _ in blocks),
        attention_blocks=len(blocks),
    )
    if baseline is not None:
        for batch_size in batch_sizes:
            x = torch.randn(batch_size, *input_shape)
            with_attention, without = measure_latency([model, baseline], x, rounds=rounds)
            report.latency_ms[batch_size] = with_attention * 1e3
            report.baseline_latency_ms[batch_size] = without * 1e3
    return report


def _heap_in_use() -> Callable[[], int] | None:
    """Bytes glibc's malloc has handed out (arenas + mmapped chunks), where mallinfo2 exists (glibc ≥ 2.33)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    info.restype = MallInfo2

    def in_use() -> int:
        current = info()
        return current.uordblks + current.hblkhd

    return in_use


def peak_memory(function: Callable[[], object]) -> int | None:
    """Peak bytes allocated above the starting point while ``function()`` runs (e.g. a training step), sampled
    from the C allocator each time autograd saves or unpacks a tensor (every layer, forward and backward).
    CPU memory only.

    :param function: what to measure, called once.
    :returns: the peak in bytes, or None where glibc's ``mallinfo2`` is missing.
    """
    in_use = _heap_in_use()
    if in_use is None:
        return None
    start = in_use()
    peak = [start]

    def sample(tensor: Tensor) -> Tensor:
        peak[0] = max(peak[0], in_use())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(sample, sample):
        function()
    return peak[0] - start
