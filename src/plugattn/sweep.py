"""Ablation grids: every combination of the given values, one training run each, resumable, summarised
as ``results.csv``, a markdown table of mean ± std over seeds and a bar chart."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import pathlib
import re
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from plugattn.profiling import measure_latency
from plugattn.data.paired import is_paired
from plugattn.recipe import build_model as build_from_recipe
from plugattn.recipe import build_multimodal
from plugattn.training import TrainConfig, train
from plugattn.visualisation import plot_bars

CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
ATTENTION_FIELDS = ("reduction", "position", "stages", "where", "init")
"""Config fields that only matter with attention: a run without attention is the same run whatever they are."""


def without_attention_run(values: Mapping[str, Any]) -> bool:
    """Whether a combination (or a group of runs) sets ``attention`` to none; one that does not set it keeps the
    base config's attention."""
    return "attention" in values and values["attention"] in (None, "none")


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, dropping block options from runs without attention (they would repeat the same run)."""
    runs, seen = [], set()
    for values in itertools.product(*grid.values()):
        combo = dict(zip(grid, values))
        if without_attention_run(combo):  # one control run: attention options do not apply to it
            combo = {k: v for k, v in combo.items() if k in CONFIG_FIELDS and k not in ATTENTION_FIELDS}
            combo["attention"] = "none"
        key = json.dumps(combo, sort_keys=True)
        if key not in seen:
            seen.add(key)
            runs.append(combo)
    return runs


def run_config(base: TrainConfig, combo: Mapping[str, Any], out_dir: pathlib.Path) -> TrainConfig:
    """``base`` with the combination applied: config fields directly, anything else as a block option."""
    fields = {k: v for k, v in combo.items() if k in CONFIG_FIELDS}
    options = {**base.block_options, **{k: v for k, v in combo.items() if k not in CONFIG_FIELDS}}
    if without_attention_run(fields):
        fields["attention"] = None
    for name in ("fusion", "fusion_attention"):
        if fields.get(name) == "none":
            fields[name] = None
    if "fusion_stages" in fields and not isinstance(fields["fusion_stages"], list):
        fields["fusion_stages"] = [fields["fusion_stages"]]
    if "stages" in fields and fields["stages"] is not None:
        fields["stages"] = fields["stages"] if isinstance(fields["stages"], list) else [fields["stages"]]
    return dataclasses.replace(base, **fields, block_options=options, out_dir=str(out_dir / run_name(combo)))


def run_name(combo: Mapping[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "_".join(f"{k}={_cell(v)}" for k, v in combo.items())) or "run"


def run_once(config: TrainConfig, *, label: str | None = None) -> dict[str, Any]:
    """The summary of ``config``'s run: read when its folder holds a finished run, else trained (resumed from
    ``last.safetensors`` when an earlier attempt was interrupted)."""
    run_dir = pathlib.Path(config.out_dir)
    label = label or run_dir.name
    if (run_dir / "summary.json").exists():
        print(f"{label}: finished earlier, skipped")
        return json.loads((run_dir / "summary.json").read_text())
    last = run_dir / "last.safetensors"
    print(f"{label}: {'resuming' if last.exists() else 'training'}")
    return train(config, resume=last if last.exists() else None)


def with_control(grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """``grid`` with ``attention=none`` added when it varies attention without it: the same model without
    attention, trained with the same budget and seeds, is what every variant is compared with."""
    grid = {key: list(values) for key, values in grid.items()}
    if "attention" in grid and not any(without_attention_run({"attention": value}) for value in grid["attention"]):
        grid["attention"] = ["none", *grid["attention"]]
    return grid


def sweep(base: TrainConfig, grid: Mapping[str, Sequence[Any]], out_dir: str | pathlib.Path, *, control: bool = True,
          latency_rounds: int = 20) -> list[dict[str, Any]]:
    """Run (or skip, when finished; or resume, when interrupted) every combination of ``grid`` on top of
    ``base``, then write ``results.csv``, ``results.md`` (mean ± std over seeds, Δ against the control) and
    ``results.png``.

    :param base: the settings every run shares.
    :param grid: setting (a config field or a block option) → the values to try (``seed`` for seeds).
    :param out_dir: where each run's folder and the results go.
    :param control: add the runs without attention when the grid lacks them (same budget and seeds).
    :param latency_rounds: interleaved rounds timing each variant's forward against the control's (0: none).
    :returns: one row per run.
    :raises ValueError: a combination no run can use (checked before any run starts), or a bad ``latency_rounds``.
    """
    if isinstance(latency_rounds, bool) or not isinstance(latency_rounds, int) or latency_rounds < 0:
        raise ValueError(f"latency_rounds must be an int >= 0 (0: no timing), got {latency_rounds!r}")
    out_dir = pathlib.Path(out_dir)
    grid = with_control(grid) if control else {key: list(values) for key, values in grid.items()}
    combos = expand(grid)
    configs = [run_config(base, combo, out_dir) for combo in combos]
    for config in configs:  # fail on a bad combination before spending time on the good ones
        config.validate()
        if not is_paired(config.dataset):  # paired data: the modalities' shapes are known once the data are read
            with torch.device("meta"):
                build_from_recipe(config, num_classes=2, in_channels=3, load_weights=False)
    rows, summaries = [], []
    for index, (combo, config) in enumerate(zip(combos, configs), start=1):
        run_dir = pathlib.Path(config.out_dir)
        summary = run_once(config, label=f"[{index}/{len(configs)}] {run_dir.name}")
        summaries.append(summary)
        rows.append({**{k: _cell(v) for k, v in combo.items()}, "top1": summary["top1"], "top5": summary["top5"],
                     "best_top1": summary["best_top1"], "start_top1": (summary.get("start_metrics") or {}).get("top1"),
                     "params": summary["params"], "macs": summary["macs"],
                     "train_seconds": round(summary["train_seconds"], 1), "run": run_dir.name})
    groups = group_rows(rows, list(grid))
    if latency_rounds:
        by_run = {pathlib.Path(config.out_dir).name: config for config in configs}
        _add_latency(groups, [by_run[group["members"][0]] for group in groups], summaries[0], latency_rounds)
        group_of = {name: group for group in groups for name in group["members"]}
        for row in rows:
            row.update({k: v for k, v in group_of[row["run"]].items() if k.startswith("latency_")})
    write_results(rows, groups, list(grid), out_dir)
    return rows


def _cell(value: Any) -> Any:
    return "+".join(map(str, value)) if isinstance(value, list) else value


def group_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows grouped by every key but the seed: run count, mean and sample std of top-1 (and of the top-1
    before training, for runs from weights), parameters, MACs and training time; with a control group
    (``attention=none``), each group's top-1 difference to it."""
    varying = [k for k in keys if k != "seed"]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k, "") for k in varying), []).append(row)
    summary = []
    for values, members in groups.items():
        top1 = [m["top1"] for m in members]
        start = [m["start_top1"] for m in members if m.get("start_top1") is not None]
        summary.append({**dict(zip(varying, values)), "runs": len(members), "top1_mean": statistics.fmean(top1),
                        "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                        "start_top1_mean": statistics.fmean(start) if start else None,
                        "params": members[0]["params"], "macs": members[0]["macs"],
                        "train_seconds": statistics.fmean(m["train_seconds"] for m in members),
                        "members": [m["run"] for m in members]})
    control = next((group for group in summary if without_attention_run(group)), None)
    for group in summary:
        group["top1_delta"] = group["top1_mean"] - control["top1_mean"] if control else None
    return summary


def _add_latency(groups: list[dict[str, Any]], configs: Sequence[TrainConfig], summary: Mapping[str, Any], rounds: int,
                 batch_sizes: Sequence[int] = (1, 8)) -> None:
    """``latency_b{N}``: each group's forward time over the control's (the model without attention; for paired
    data, late fusion of the same streams), measured interleaved in one loop on the CPU (median of ``rounds``)."""
    shape = summary.get("input_shape")
    if not shape:
        return
    control = next((c for g, c in zip(groups, configs) if without_attention_run(g)), None)
    control = control or dataclasses.replace(configs[0], attention=None)

    paired = isinstance(shape, dict)  # {modality: (C, *spatial)}

    def network(config: TrainConfig) -> torch.nn.Module:
        if paired:
            model, _ = build_multimodal(config, num_classes=len(summary["classes"]), shapes=shape, load_weights=False)
        else:
            model, _ = build_from_recipe(config, num_classes=len(summary["classes"]), in_channels=shape[0],
                                         load_weights=False)
        return model.eval()

    models = [network(config) for config in configs] + [network(control)]
    for batch_size in batch_sizes:
        sample = tuple(torch.randn(batch_size, *s) for s in shape.values()) if paired else torch.randn(batch_size, *shape)
        seconds = measure_latency(models, sample, rounds=rounds)
        for group, time in zip(groups, seconds):
            group[f"latency_b{batch_size}"] = time / seconds[-1]


def _relative(value: float, control: float | None) -> str:
    return f" ({value / control - 1:+.1%})" if control else ""


def write_results(rows: Sequence[Mapping[str, Any]], groups: Sequence[Mapping[str, Any]], keys: Sequence[str],
                  out_dir: pathlib.Path) -> None:
    """``results.csv`` (one row per run), ``results.md`` (one row per group: mean ± std over seeds and the
    comparison with the control) and ``results.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    varying = [k for k in keys if k != "seed"]
    control = next((group for group in groups if without_attention_run(group)), None)
    latency = [name for name in ("latency_b1", "latency_b8") if any(name in group for group in groups)]
    start = any(group["start_top1_mean"] is not None for group in groups)
    header = [*varying, "runs", "top-1 (mean ± std)", *(["Δ top-1 vs control"] if control else []),
              *(["top-1 before training"] if start else []), "params", "MACs",
              *(f"latency batch {name.removeprefix('latency_b')}" for name in latency), "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in groups:
        cells = [str(group[k]) for k in varying] + [str(group["runs"]), f"{group['top1_mean']:.2%} ± {group['top1_std']:.2%}"]
        if control:
            cells.append("control" if group is control else f"{group['top1_delta'] * 100:+.2f} pp")
        if start:
            cells.append("" if group["start_top1_mean"] is None else f"{group['start_top1_mean']:.2%}")
        reference = control if control is not None and group is not control else None
        cells += [f"{group['params'] / 1e6:.4f} M" + _relative(group["params"], reference and reference["params"]),
                  f"{group['macs'] / 1e6:.2f} M" + _relative(group["macs"], reference and reference["macs"])]
        cells += [f"×{group[name]:.2f}" if name in group else "" for name in latency]
        cells.append(f"{group['train_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", f"{len(rows)} runs; ± is the sample std over seeds."]
    if control:
        notes.append("The control is the same model without attention, trained with the same budget and seeds.")
    if latency:
        notes.append("Latency: forward time over the control's, CPU, median of interleaved rounds, same process.")
    (out_dir / "results.md").write_text("\n".join(lines + notes) + "\n")
    labels = [", ".join(str(group[k]) for k in varying) or "run" for group in groups]
    plot_bars(labels, [g["top1_mean"] for g in groups], [g["top1_std"] for g in groups], out_dir / "results.png",
              title=f"{len(rows)} runs; error bars: std over seeds", reference=control and control["top1_mean"])
