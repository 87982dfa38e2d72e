"""Print the zoo's parameters and MACs beside the CBAM paper's Table 4 (targets from tests/models/paper_tables.csv).

Run: .venv/bin/python benchmarks/paper_tables.py
"""

from __future__ import annotations

import csv
import pathlib
from collections import defaultdict

import torch

from plugattn.models import create_model
from plugattn.profiling import count_macs, count_parameters

TABLE = pathlib.Path(__file__).resolve().parents[1] / "tests" / "models" / "paper_tables.csv"


def main() -> None:
    rows = list(csv.DictReader(line for line in TABLE.read_text().splitlines() if not line.startswith("#")))
    by_model: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for row in rows:
        with torch.device("meta"):
            model = create_model(row["zoo_model"], attention=None if row["attention"] == "none" else row["attention"])
        params = count_parameters(model) / 1e6
        gmacs = count_macs(model, torch.empty(1, 3, 224, 224, device="meta")) / 1e9
        by_model[(row["paper_model"], row["zoo_model"])][row["attention"]] = (
            f"{params:.2f} M, {gmacs:.3f} G / {float(row['params_m']):.2f}, {float(row['gmacs']):.3f}"
        )
    print("| model (zoo name) | plain: ours / paper | + SE: ours / paper | + CBAM: ours / paper |")
    print("|---|---|---|---|")
    for (paper, zoo), cells in by_model.items():
        print(f"| {paper} (`{zoo}`) | {cells['none']} | {cells['se']} | {cells['cbam']} |")


if __name__ == "__main__":
    main()
