"""The zoo reproduces the papers' parameter counts and multiply-accumulates (one data file of targets)."""

import csv
import pathlib

import pytest
import torch

from plugattn.models import create_model
from plugattn.profiling import count_macs, count_parameters

TABLE = pathlib.Path(__file__).with_name("paper_tables.csv")
ROWS = list(csv.DictReader(line for line in TABLE.read_text().splitlines() if not line.startswith("#")))


def _build_on_meta(name: str, attention: str):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return create_model(name, attention=None if attention == "none" else attention).eval()


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['zoo_model']}-{r['attention']}" for r in ROWS])
def test_parameters_and_macs_match_cbam_table_4(row):
    model = _build_on_meta(row["zoo_model"], row["attention"])
    params_m = count_parameters(model) / 1e6
    assert round(params_m, 2) == pytest.approx(float(row["params_m"]), abs=1e-9), params_m
    gmacs = count_macs(model, torch.empty(1, 3, 224, 224, device="meta")) / 1e9
    assert gmacs == pytest.approx(float(row["gmacs"]), rel=0.005), gmacs


@pytest.mark.parametrize(("name", "params_m"), [("resnet20", 0.27), ("resnet56", 0.85), ("resnet110", 1.7)])
def test_cifar_resnets_match_he_et_al_table_6(name, params_m):
    # He et al. 2016, Table 6 gives 0.27 M / 0.85 M / 1.7 M (option-A identity shortcuts)
    digits = 1 if params_m >= 1 else 2
    assert round(count_parameters(create_model(name)) / 1e6, digits) == params_m


def test_preact_resnet164_and_wrn16_8_match_their_papers():
    assert round(count_parameters(create_model("preact_resnet164")) / 1e6, 1) == 1.7  # He et al. 2016b
    assert round(count_parameters(create_model("wrn16_8")) / 1e6, 1) == 11.0  # Zagoruyko & Komodakis


def test_v1_and_v1_5_differ_only_in_where_the_stride_sits():
    v1, v15 = create_model("resnet50_v1"), create_model("resnet50")
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert count_parameters(v1) == count_parameters(v15)
    # the reference file's torchvision (v1.5) figure: 4.089 GMAC
    assert count_macs(v15, torch.randn(1, 3, 224, 224)) / 1e9 == pytest.approx(4.089, rel=0.001)
