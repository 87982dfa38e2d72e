"""Checkpoint files: round trip, atomic writes, and refusal of pickles, truncation and foreign files."""

import errno
import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from plugattn import checkpoint
from plugattn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_metadata(tmp_path):
    tensors = {"model.w": torch.randn(3, 4), "rng.cpu": torch.get_rng_state()}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"epoch": 3, "config": {"model": "resnet20"}})
    loaded, meta = load_checkpoint(tmp_path / "c.safetensors")
    assert torch.equal(loaded["model.w"], tensors["model.w"]) and meta["epoch"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.marker = marker
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"state_dict": exploit}, protocol=2))
    with pytest.raises(CheckpointError, match="pickle.*never unpickles"):
        load_checkpoint(path)
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(1)}, torch_file)  # zip-based torch file
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(torch_file)
    assert not marker.exists()


def test_truncated_and_foreign_files_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, {"model.w": torch.randn(100, 100)}, {"epoch": 1})
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a plugattn checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_a_full_disk_during_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, {"model.w": torch.ones(10)}, {"epoch": 1})

    def fill_disk(handle, data):
        handle.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "_write_bytes", fill_disk)
    with pytest.raises(OSError, match="No space left on device.*previous file is untouched"):
        save_checkpoint(path, {"model.w": torch.zeros(10)}, {"epoch": 2})
    tensors, meta = load_checkpoint(path)
    assert meta["epoch"] == 1 and torch.equal(tensors["model.w"], torch.ones(10))
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_a_header_length_ending_in_0x80_is_not_mistaken_for_a_pickle(tmp_path):
    # safetensors files start with their header length (u64, little endian); a pickle starts with 0x80
    for pad in range(256):
        path = tmp_path / f"c{pad}.safetensors"
        save_checkpoint(path, {"model.w": torch.zeros(2)}, {"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            assert load_checkpoint(path)[1]["pad"] == "x" * pad
            return
    pytest.fail("no padding produced a header length ending in 0x80")
