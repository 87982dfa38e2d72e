"""Checkpoints as one safetensors file: model, optimizer and RNG tensors, with the JSON metadata (epoch,
step, config, best metric, optimizer/scheduler settings) in the file's header.

Writes are atomic (temporary file in the same folder, fsync, rename), so a crash or a full disk never
leaves a half-written checkpoint in place of the previous one. Reading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor

FORMAT = "plugattn-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, foreign or does not match the run that wants it."""


def _write_bytes(handle: Any, data: bytes) -> None:
    handle.write(data)


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            _write_bytes(handle, data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        pathlib.Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(error.errno, f"could not write {path} ({error.strerror}); the previous file is untouched") from error
        raise


def atomic_save_tensors(tensors: Mapping[str, Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> None:
    """Save ``tensors`` as safetensors at ``path``, atomically."""
    contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}
    atomic_write(path, save(contiguous, metadata=dict(metadata or {})))


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Write a plugattn checkpoint: ``tensors`` plus JSON-serialisable ``meta``."""
    header = {"format": FORMAT, "version": str(FORMAT_VERSION), "meta": json.dumps(meta)}
    atomic_save_tensors(tensors, path, header)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a plugattn checkpoint; corrupt, truncated or foreign files raise :class:`CheckpointError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    looks_like_safetensors = data[8:9] == b"{"  # u64 header length, then the JSON header
    if not looks_like_safetensors and (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):
        raise CheckpointError(
            f"{path} is a pickle-based torch file, not a plugattn checkpoint; plugattn never unpickles checkpoints "
            "(use plugattn.load_pretrained / `plugattn convert` for foreign weights)"
        )
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size]).get("__metadata__", {})
    except (SafetensorError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated ({len(data)} bytes): {error}") from error
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a plugattn checkpoint (no '{FORMAT}' header)")
    if int(header.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer plugattn (format {header['version']} > {FORMAT_VERSION})")
    return tensors, json.loads(header["meta"])


def split_prefix(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The tensors whose names start with ``prefix.``, with the prefix removed."""
    start = len(prefix) + 1
    return {name[start:]: tensor for name, tensor in tensors.items() if name.startswith(f"{prefix}.")}


def optimizer_to_checkpoint(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON: per-parameter tensors go to the file body."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_checkpoint(tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild an ``optimizer.state_dict()`` from :func:`optimizer_to_checkpoint`'s parts."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in split_prefix(tensors, "optimizer").items():
        index, _, key = name.partition(".")
        state.setdefault(int(index), {})[key] = tensor
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_tensors() -> dict[str, Tensor]:
    """The torch RNG states (CPU and every CUDA device) as tensors."""
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def restore_rng(tensors: Mapping[str, Tensor]) -> None:
    """Set the torch RNG states saved by :func:`rng_tensors`."""
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
