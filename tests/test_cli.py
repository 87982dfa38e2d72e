"""The command line, run in-process through Typer's test runner."""

import importlib

import pytest
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


BRACKETED = "where matched nothing; choose [features, features.0, …] or [bold]not markup[/bold] (see [link])"
"""A message with bracketed lists and rich-markup look-alikes: every error path must print it verbatim."""


def _raise(*args, **kwargs):
    raise ValueError(BRACKETED)


@pytest.mark.parametrize(("command", "patched"), [
    (["train", "--epochs", "1"], "plugattn.training.train"),
    (["eval", "ckpt.safetensors"], "plugattn.training.evaluate_checkpoint"),
    (["sweep", "attention=none,se"], "plugattn.sweep.sweep"),
    (["demo"], "plugattn.demo.run_demo"),
    (["viz", "ckpt.safetensors"], "plugattn.training.load_trained"),
    (["export", "FILE", "--onnx", "x.onnx"], "plugattn.training.load_trained"),
    (["convert", "a.pth", "b.safetensors"], "plugattn.interop.convert_file"),
])
def test_error_messages_reach_the_terminal_whole(command, patched, monkeypatch, tmp_path):
    module, _, name = patched.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, _raise)
    existing = tmp_path / "model.safetensors"
    existing.write_bytes(b"x")
    command = [str(existing) if part == "FILE" else part for part in command]
    result = runner.invoke(app, command, env={"COLUMNS": "1000"})
    assert result.exit_code == 2, result.output
    assert f"error: {BRACKETED}" in result.output


def test_parameter_errors_keep_their_brackets():
    """typer prints BadParameter in a panel (wrapped to the terminal): the bracketed example names survive."""
    result = runner.invoke(app, ["profile", "torchvision:vgg11", "--attention", "se", "--no-latency"],
                           env={"COLUMNS": "120"})
    assert result.exit_code == 2
    text = "".join(line.strip().strip("│╭╮╰╯─").strip() for line in result.output.splitlines())
    assert "".join("e.g. [features, features.0, features.1,".split()) in "".join(text.split())
    assert "".join("where='stage' (a block after each of its 5 stages: [features.1, features.4,".split()) in \
        "".join(text.split())


def test_fetch_offline_says_so_and_how_to_go_on(tmp_path, monkeypatch):
    import urllib.error

    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    result = runner.invoke(app, ["fetch", "avmnist", "--out", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert "cannot download" in result.output and "offline?" in result.output and "--data-dir" in result.output
    wrong = runner.invoke(app, ["fetch", "imagenet"])
    assert wrong.exit_code != 0 and "avmnist" in wrong.output


def test_the_commands_are_listed_by_group():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    listed = [line.split()[1] for line in result.output.splitlines() if line.startswith("│ ") and len(line.split()) > 2]
    for command in ("blocks", "profile", "train", "sweep", "eval", "viz", "export", "convert", "fetch", "demo"):
        assert command in listed, listed
    assert listed.index("blocks") < listed.index("train") < listed.index("eval") < listed.index("fetch")
