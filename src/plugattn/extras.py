"""Optional dependencies: the application's extras (``pip install 'plugattn[viz]'`` …) and the clear error a
command gives when its extra is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "cli": "typer, rich: the plugattn command line",
    "train": "tqdm, tensorboard, matplotlib: training, sweeps and their logs and plots",
    "viz": "matplotlib, grad-cam: pictures of what the attention learned",
    "export": "onnx, onnxscript, onnxruntime: ONNX export checked in ONNX Runtime",
}


class MissingExtraError(ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra to install."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the plugattn extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{module} is not installed; it comes with plugattn's '{extra}' extra ({EXTRAS[extra]}): "
            f"pip install 'plugattn[{extra}]' (or 'plugattn[all]')"
        ) from error
