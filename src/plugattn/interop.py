"""Load published SE/CBAM weights into plugattn models: key and shape mapping for each public layout.

Layouts (each rule written from that project's published model structure):

- ``plugattn``: our own (``layer1.0.attention.fc.0.weight``, ``...attention.channel_gate.mlp.1.weight``);
  also a checkpoint written by ``plugattn train`` (its ``model.`` tensors).
- ``torchvision``: plain ResNets (``torchvision/models/resnet.py``); the same names without attention.
- ``cbam-official``: Jongchan/attention-module (``MODELS/model_resnet.py``, ``MODELS/cbam.py``):
  ``module.layer1.0.cbam.ChannelGate.mlp.1.weight``, ``...cbam.SpatialGate.spatial.conv.weight``/``.bn.*``.
- ``senet.pytorch``: moskomule/senet.pytorch (``senet/se_resnet.py``): ``layer1.0.se.fc.0.weight`` (no biases).
- ``timm``: timm ``seresnet*`` (``timm/models/resnet.py`` with ``timm/layers/squeeze_excite.py``):
  ``layer1.0.se.fc1.weight`` as a 1×1 convolution with bias.
- ``cadene``: Cadene/pretrained-models.pytorch (``pretrainedmodels/models/senet.py``): ``layer0.conv1``,
  ``layer1.0.se_module.fc1`` (1×1 convolutions with bias), ``last_linear``. Its ``se_resnet*`` put the
  stride in the first 1×1 convolution: load them into plugattn's ``se_resnet50_v1`` etc.; its
  ``se_resnext*`` match ``se_resnext50_32x4d`` (v1.5).

Nothing is ever unpickled beyond plain tensors: torch files load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from plugattn.checkpoint import CheckpointError, atomic_save_tensors

# (pattern, replacement) applied in order to every key of a source in that layout.
_RULES: dict[str, list[tuple[str, str]]] = {
    "plugattn": [],
    "torchvision": [],
    "cbam-official": [(r"\.cbam\.ChannelGate\.mlp\.", ".attention.channel_gate.mlp."),
                      (r"\.cbam\.SpatialGate\.spatial\.", ".attention.spatial_gate.spatial.")],
    "senet.pytorch": [(r"\.se\.fc\.([02])\.", r".attention.fc.\1.")],
    "timm": [(r"\.se\.fc1\.", ".attention.fc.0."), (r"\.se\.fc2\.", ".attention.fc.2.")],
    "cadene": [(r"^layer0\.conv1\.", "conv1."), (r"^layer0\.bn1\.", "bn1."), (r"^last_linear\.", "fc."),
               (r"\.se_module\.fc1\.", ".attention.fc.0."), (r"\.se_module\.fc2\.", ".attention.fc.2.")],
}
LAYOUTS = tuple(_RULES)
_MLP_WEIGHT = re.compile(r"\.attention\.(fc\.[02]|channel_gate\.mlp\.[13])\.weight$")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did: the layout it read, and the keys loaded, missing and unexpected."""

    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def read_state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict from a mapping, a safetensors file or a torch file (``weights_only=True``); the usual
    wrappers (``{"state_dict": ...}``, ``{"model": ...}``, DataParallel's ``module.``) are removed."""
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = pathlib.Path(source)
        if not path.is_file():
            raise CheckpointError(f"weights file {path} does not exist")
        if path.suffix == ".safetensors":
            try:
                state = load_file(str(path))
            except (SafetensorError, OSError) as error:
                raise CheckpointError(f"{path} is corrupt or truncated: {error}") from error
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as error:
                raise CheckpointError(
                    f"refused to load {path}: it holds Python objects beyond tensors, and unpickling them could run "
                    f"code from the file ({str(error).splitlines()[0]})"
                ) from error
            except (RuntimeError, EOFError, ValueError) as error:
                raise CheckpointError(f"{path} is corrupt or truncated: {error}") from error
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
    if any(key.startswith("model.") for key in state) and any(key.startswith("optimizer.") for key in state):
        state = {key[6:]: value for key, value in state.items() if key.startswith("model.")}  # plugattn train checkpoint
    state = {key.removeprefix("module."): value for key, value in state.items()}
    bad = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if bad:
        raise CheckpointError(f"not a state dict: entries {bad[:5]} are not tensors")
    return state


def detect_layout(state: Mapping[str, Tensor]) -> str:
    """Which of :data:`LAYOUTS` the keys of ``state`` follow."""
    keys = list(state)
    if any(".cbam.ChannelGate." in k or ".cbam.SpatialGate." in k for k in keys):
        return "cbam-official"
    if any(k.startswith(("layer0.", "last_linear.")) or ".se_module." in k for k in keys):
        return "cadene"
    if any(".se.fc1." in k for k in keys):
        return "timm"
    if any(".se.fc." in k for k in keys):
        return "senet.pytorch"
    if any(".attention." in k for k in keys):
        return "plugattn"
    return "torchvision"


def convert_state_dict(state: Mapping[str, Tensor], layout: str | None = None) -> tuple[dict[str, Tensor], str]:
    """``state`` in plugattn's layout (1×1-convolution MLP weights become linear weights) and the layout read."""
    layout = layout or detect_layout(state)
    if layout not in _RULES:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}")
    converted = {}
    for key, value in state.items():
        for pattern, replacement in _RULES[layout]:
            key = re.sub(pattern, replacement, key)
        if _MLP_WEIGHT.search(key) and value.dim() == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)
        converted[key] = value
    return converted, layout


def load_pretrained(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor], *, layout: str | None = None,
                    strict: bool = False) -> LoadReport:
    """Load weights in any supported layout into ``model``. A shape mismatch raises naming the key and both
    shapes; with ``strict`` missing or unexpected keys raise too, otherwise they are reported."""
    converted, layout = convert_state_dict(read_state_dict(source), layout)
    own = model.state_dict()
    for key, value in converted.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"shape mismatch for {key}: the weights have {tuple(value.shape)}, "
                             f"the model has {tuple(own[key].shape)}")
    report = LoadReport(layout, loaded=[k for k in converted if k in own],
                        missing=[k for k in own if k not in converted and not k.endswith("num_batches_tracked")],
                        unexpected=[k for k in converted if k not in own])
    if strict and (report.missing or report.unexpected):
        raise ValueError(f"strict load from layout {layout!r}: missing {report.missing[:10]}, "
                         f"unexpected {report.unexpected[:10]}")
    model.load_state_dict({k: v for k, v in converted.items() if k in own}, strict=False)
    return report


def convert_file(source: str | os.PathLike, destination: str | os.PathLike, *, layout: str | None = None) -> str:
    """Write ``source``'s weights in plugattn's layout to the safetensors file ``destination``; returns the layout read."""
    converted, layout = convert_state_dict(read_state_dict(source), layout)
    atomic_save_tensors(converted, destination, {"converted_from": layout})
    return layout
