"""profile(): parameters, MACs and the attention's share, checked against independent counts."""

import pytest
import torch
from typer.testing import CliRunner

from plugattn.cli import app
from plugattn import without_attention
from plugattn.models import ResidualUnit, create_model
from plugattn.profiling import count_macs, count_parameters, profile


def test_attention_share_equals_the_difference_to_the_plain_network():
    model = create_model("cbam_resnet20")
    plain = without_attention(model)
    report = profile(model, (3, 32, 32), baseline=plain, batch_sizes=(1, 2), rounds=2)
    assert report.params == count_parameters(model)
    assert report.attention_params == count_parameters(model) - count_parameters(plain)
    x = torch.randn(1, 3, 32, 32)
    assert report.attention_macs == count_macs(model, x) - count_macs(plain, x)
    assert report.attention_blocks == 9
    assert set(report.latency_ms) == {1, 2} and all(v > 0 for v in report.baseline_latency_ms.values())
    assert report.latency_ratio(2) == report.latency_ms[2] / report.baseline_latency_ms[2]


def test_se_block_macs_by_hand():
    # SE on C channels with hidden h: two matrix products, C*h MACs each, per image
    model = create_model("se_resnet20", reduction=4)
    report = profile(model, (3, 32, 32))
    per_stage = [(16, 4), (32, 8), (64, 16)]
    assert report.attention_macs == sum(3 * 2 * c * h for c, h in per_stage)
    assert report.attention_params == sum(3 * (2 * c * h + c + h) for c, h in per_stage)
    assert report.latency_ms == {}


def test_profile_rejects_a_bad_shape():
    with pytest.raises(ValueError, match="input_shape"):
        profile(create_model("resnet20"), (3, 0, 32))


def test_cli_profile_prints_the_table():
    result = CliRunner().invoke(app, ["profile", "se_resnet20", "--rounds", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0.272 M" in result.output and "attention MACs" in result.output and "latency, batch 8" in result.output
    bad = CliRunner().invoke(app, ["profile", "resnet5"])
    assert bad.exit_code != 0 and "resnet50" in bad.output


def test_mac_count_does_not_depend_on_the_cbam_implementation_path():
    """count_macs runs without autograd, where CBAM would fuse its channel mean into a bmm; the FLOP counter is a
    dispatch mode, under which the blocks keep their reference formulation: the count equals the one taken
    while autograd records (reference path) and the one of the plain net plus the blocks' MLP and conv MACs."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("cbam_resnet20", reduction=4).eval()
    x = torch.randn(1, 3, 32, 32)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    assert count_macs(model, x) == counter.get_total_flops() // 2
    plain = count_macs(create_model("resnet20").eval(), x)
    blocks = 0
    for unit in model.modules():
        if isinstance(unit, ResidualUnit):
            c, hidden, size = unit.out_channels, unit.out_channels // 4, {16: 32, 32: 16, 64: 8}[unit.out_channels]
            blocks += 2 * (c * hidden + hidden * c) + 2 * 7 * 7 * size * size  # two pooled MLP passes, 7x7 2->1 conv
    assert count_macs(model, x) == plain + blocks


def test_cli_profiles_a_torchvision_network_with_inserted_attention():
    """SE attached to torchvision's ResNet-18 (papers' biases) has the CBAM paper's SE-ResNet-18 count: 11.78 M."""
    result = CliRunner().invoke(app, ["profile", "torchvision:resnet18", "--attention", "se", "--input", "3x64x64",
                                      "--no-latency"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.output.splitlines()
            if line.count("│") == 3}
    assert rows["parameters"] == "11.779 M" and rows["attention blocks"] == "8"
    bad = CliRunner().invoke(app, ["profile", "torchvision:resnet19"], env={"COLUMNS": "200"})
    assert bad.exit_code != 0 and "resnet18" in bad.output
