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

from plugattn.recipe import build_model as build_from_recipe
from plugattn.training import TrainConfig, parse_value, recipe_of, train
from plugattn.visualisation import plot_bars

CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
SEED_KEYS = ("seed", "seeds")
ATTENTION_FIELDS = ("reduction", "position", "stages", "where", "init")
"""Config fields that only matter with attention: a run without attention is the same run whatever they are."""


def parse_grid(tokens: Sequence[str]) -> dict[str, list[Any]]:
    """``["attention=none,se,cbam", "reduction=8,16", "seeds=0,1"]`` -> {key: [values]} (``seeds`` -> ``seed``;
    ``+`` joins a list value, e.g. ``pool_types=avg+max,avg``)."""
    grid: dict[str, list[Any]] = {}
    for token in tokens:
        key, sep, values = token.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"grid entry must look like key=value1,value2; got {token!r}")
        key = "seed" if key in SEED_KEYS else key
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice")
        grid[key] = [parse_value(value) for value in values.split(",")]
    return grid


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination, dropping block options from runs without attention (they would repeat the same run)."""
    runs, seen = [], set()
    for values in itertools.product(*grid.values()):
        combo = dict(zip(grid, values))
        if combo.get("attention") in (None, "none"):  # one control run: attention options do not apply to it
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
    if "attention" in fields and fields["attention"] == "none":
        fields["attention"] = None
    if "stages" in fields and fields["stages"] is not None:
        fields["stages"] = fields["stages"] if isinstance(fields["stages"], list) else [fields["stages"]]
    return dataclasses.replace(base, **fields, block_options=options, out_dir=str(out_dir / run_name(combo)))


def run_name(combo: Mapping[str, Any]) -> str:
    def text(value: Any) -> str:
        return "+".join(map(str, value)) if isinstance(value, list) else str(value)

    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", "_".join(f"{k}={text(v)}" for k, v in combo.items())) or "run"


def sweep(base: TrainConfig, grid: Mapping[str, Sequence[Any]], out_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Run (or skip, when finished; or resume, when interrupted) every combination of ``grid`` on top of
    ``base``, then write the results table and plot. Returns one row per run."""
    out_dir = pathlib.Path(out_dir)
    combos = expand(grid)
    configs = [run_config(base, combo, out_dir) for combo in combos]
    for config in configs:  # fail on a bad combination before spending time on the good ones
        config.validate()
        with torch.device("meta"):
            build_from_recipe(recipe_of(config), num_classes=2, in_channels=3, load_weights=False)
    rows = []
    for index, (combo, config) in enumerate(zip(combos, configs), start=1):
        run_dir = pathlib.Path(config.out_dir)
        summary_path = run_dir / "summary.json"
        if summary_path.exists():
            print(f"[{index}/{len(configs)}] {run_dir.name}: finished earlier, skipped")
            summary = json.loads(summary_path.read_text())
        else:
            last = run_dir / "last.safetensors"
            print(f"[{index}/{len(configs)}] {run_dir.name}: {'resuming' if last.exists() else 'training'}")
            summary = train(config, resume=last if last.exists() else None)
        rows.append({**{k: _cell(v) for k, v in combo.items()}, "top1": summary["top1"], "top5": summary["top5"],
                     "best_top1": summary["best_top1"], "params": summary["params"], "macs": summary["macs"],
                     "train_seconds": round(summary["train_seconds"], 1), "run": run_dir.name})
    write_results(rows, list(grid), out_dir)
    return rows


def _cell(value: Any) -> Any:
    return "+".join(map(str, value)) if isinstance(value, list) else value


def group_rows(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows grouped by every key but the seed: mean and sample std of top-1, with the run count."""
    varying = [k for k in keys if k != "seed"]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k, "") for k in varying), []).append(row)
    summary = []
    for values, members in groups.items():
        top1 = [m["top1"] for m in members]
        summary.append({**dict(zip(varying, values)), "runs": len(members), "top1_mean": statistics.fmean(top1),
                        "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                        "params": members[0]["params"], "macs": members[0]["macs"],
                        "train_seconds": statistics.fmean(m["train_seconds"] for m in members)})
    return summary


def write_results(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], out_dir: pathlib.Path) -> None:
    """``results.csv`` (one row per run), ``results.md`` (mean ± std over seeds) and ``results.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (out_dir / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    groups = group_rows(rows, keys)
    varying = [k for k in keys if k != "seed"]
    lines = ["| " + " | ".join([*varying, "runs", "top-1 (mean ± std)", "params", "MACs", "train s"]) + " |",
             "|" + "---|" * (len(varying) + 5)]
    for group in groups:
        cells = [str(group[k]) for k in varying] + [
            str(group["runs"]), f"{group['top1_mean']:.2%} ± {group['top1_std']:.2%}",
            f"{group['params'] / 1e6:.3f} M", f"{group['macs'] / 1e6:.2f} M", f"{group['train_seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    labels = [", ".join(str(group[k]) for k in varying) or "run" for group in groups]
    plot_bars(labels, [g["top1_mean"] for g in groups], [g["top1_std"] for g in groups], out_dir / "results.png",
              title=f"{len(rows)} runs; error bars: std over seeds")
