"""The command line, run in-process through Typer's test runner."""

from typer.testing import CliRunner

from plugattn.blocks import list_attention
from plugattn.cli import app

runner = CliRunner()


def test_blocks_lists_every_registered_block_with_its_cost():
    result = runner.invoke(app, ["blocks", "--shape", "64x16x16"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in list_attention():
        assert name in result.output
    rows = {cells[0]: cells[1:] for cells in _table_rows(result.output)}
    # SE(64, r=16, no bias): 2 * 64 * 4 parameters, one MAC each; CBAM: MLP 580 + conv 98 + BN 2
    assert rows["se"][:3] == ["512", "512", "(1, 64, 16, 16)"]
    assert rows["cbam"][0] == "680"
    assert rows["spatial"][0] == "100" and rows["spatial"][3] == "-"


def _table_rows(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in output.splitlines() if line.startswith("│")]


def test_blocks_rejects_a_malformed_shape():
    result = runner.invoke(app, ["blocks", "--shape", "64xab"])
    assert result.exit_code != 0
    assert "--shape" in result.output and "64xab" in result.output
