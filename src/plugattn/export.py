"""Deployment: ONNX export checked by the ``onnx`` checker and ONNX Runtime, and TorchScript."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

DEFAULT_OPSET = 18


@dataclass
class OnnxReport:
    """Where the model went and how closely ONNX Runtime reproduced PyTorch.

    :param path: the ONNX file.
    :param opset: its opset.
    :param max_abs_difference: batch size → the largest absolute difference between ONNX Runtime's and PyTorch's
        outputs.
    """

    path: pathlib.Path
    opset: int
    max_abs_difference: dict[int, float]


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int], *, opset: int = DEFAULT_OPSET,
                verify_batches: Sequence[int] = (1, 4), dynamo: bool = True,
                metadata: Mapping[str, str] | None = None) -> OnnxReport:
    """Export ``model`` (inputs of ``input_shape`` = C, H, W, e.g. the natural 3×224×224 of ImageNet nets) with
    a dynamic batch dimension, check the file with ``onnx.checker`` and compare ONNX Runtime's outputs with
    PyTorch's at each of ``verify_batches``. ``dynamo=False`` uses the legacy TorchScript-based exporter.
    ``metadata`` goes into the file's ``metadata_props`` (e.g. the input preprocessing a deployment must apply).

    :param model: the network (set to eval mode).
    :param path: the ONNX file to write.
    :param input_shape: one input's shape (C, H, W).
    :param opset: the ONNX opset (≥ 17).
    :param verify_batches: the batch sizes ONNX Runtime is checked at.
    :param dynamo: the ``torch.export``-based exporter (``False``: the legacy one).
    :param metadata: key → value pairs for the file's ``metadata_props``.
    :returns: the file, opset and differences.
    :raises plugattn.extras.MissingExtraError: onnx or onnxruntime missing (install ``plugattn[export]``).
    :raises ValueError: an opset below 17.
    """
    from plugattn.extras import require

    onnx = require("onnx", "export")
    onnxruntime = require("onnxruntime", "export")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.randn(2, *input_shape)
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=4096)
        torch.onnx.export(model, (example,), str(path), opset_version=opset, dynamo=True,
                          dynamic_shapes=({0: batch},), verbose=False)
    else:
        torch.onnx.export(model, (example,), str(path), opset_version=opset, dynamo=False, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    exported = onnx.load(str(path))
    if metadata:
        onnx.helper.set_model_props(exported, {**{p.key: p.value for p in exported.metadata_props}, **metadata})
        onnx.save(exported, str(path))
    onnx.checker.check_model(exported, full_check=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    differences = {}
    with torch.no_grad():
        for size in verify_batches:
            x = torch.randn(size, *input_shape)
            reference = model(x).numpy()
            (result,) = session.run(None, {input_name: x.numpy()})
            differences[size] = float(np.abs(result - reference).max())
    return OnnxReport(path, opset, differences)


def script_model(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script`` of a zoo model (every zoo model and block is scriptable).

    :param model: the network (set to eval mode).
    :returns: the scripted module.
    :raises RuntimeError: a model with blocks :func:`plugattn.attach` applies by hooks (the error names
        ``torch.jit.trace`` and ``torch.export`` instead).
    """
    return torch.jit.script(model.eval())
