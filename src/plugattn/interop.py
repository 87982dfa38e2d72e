"""Load published SE/CBAM weights into plugattn models — never into a network that computes something else.

Layouts (each rule written from that project's published model structure), and the architecture each one
describes, which the model must have:

- ``plugattn``: our own (``layer1.0.attention.fc.0.weight``, ``...attention.channel_gate.mlp.1.weight``),
  also a checkpoint written by ``plugattn train`` or ``plugattn convert`` (whose header records the
  architecture it was converted for).
- ``torchvision``: plain ResNets (``torchvision/models/resnet.py``): ResNet v1.5, stem pool with padding 1.
- ``cbam-official``: Jongchan/attention-module (``MODELS/model_resnet.py``, ``MODELS/cbam.py``):
  ``module.layer1.0.cbam.ChannelGate.mlp.1.weight``, ``...cbam.SpatialGate.spatial.conv.weight``/``.bn.*``.
  ResNet v1.5 (stride in the 3×3 conv): load into ``cbam_resnet50``, never ``cbam_resnet50_v1``.
- ``senet.pytorch``: moskomule/senet.pytorch (``senet/se_resnet.py``): ``layer1.0.se.fc.0.weight`` (no biases).
  ImageNet nets are torchvision's ResNet v1.5; the CIFAR nets (3×3 stem) project their shortcuts with a
  1×1 convolution and BatchNorm: ``create_model("se_resnet20", shortcut="B", bias=False)``.
- ``timm``: timm ``seresnet*`` (``timm/models/resnet.py`` with ``timm/layers/squeeze_excite.py``):
  ``layer1.0.se.fc1.weight`` as a 1×1 convolution with bias; ResNet v1.5; SE widths rounded to multiples
  of 8 (``divisor=8``; it matters for ``seresnet18/34``).
- ``bam-official``: Jongchan/attention-module (``MODELS/model_resnet.py`` with ``att_type="BAM"``): ``bam1``…``bam3``
  after layer1–3, ``bam1.channel_att.gate_c.gate_c_fc_0.weight``, ``bam1.spatial_att.gate_s.…``; the rest is
  torchvision's ResNet v1.5. Its BAM multiplies the branches: load into ``create_model("bam_resnet50",
  combine="product")`` (the default ``combine="sum"``, the paper's, is refused).
- ``eca-official``: BangguWu/ECANet (``models/eca_resnet.py``): ``layer1.0.eca.conv.weight``; ResNet v1.5 with
  k = 3, 5, 5, 7 per stage for ``eca_resnet50/101/152`` (``create_model("eca_resnet50")``: a kernel of another size
  is a shape error).
- ``triplet-official``: landskape-ai/triplet-attention (``MODELS/resnet.py``): ``layer1.0.triplet_attention.``
  ``ChannelGateH``/``ChannelGateW``/``SpatialGate.spatial.conv.weight`` (or the current file's ``cw``/``hc``/``hw``
  with ``conv.conv``); ResNet v1.5.
- ``coord-official``: houqb/CoordAttention (``mbv2_ca.py``): CA-MobileNetV2, ``features.2.conv.6.conv1.weight``…,
  the two output convolutions named ``conv2``/``conv3`` (``coordatt.py``'s ``conv_h``/``conv_w``, plugattn's names:
  a bare block's weights load as they are). Load into torchvision's ``mobilenet_v2`` with ``coord`` attached after
  each depthwise stage of the blocks with expansion 6: ``attach(model, "coord", [f"features.{i}.conv.1" for i in
  range(2, 18)])``.
- ``cadene``: Cadene/pretrained-models.pytorch (``pretrainedmodels/models/senet.py``): ``layer0.conv1``,
  ``layer1.0.se_module.fc1`` (1×1 convolutions with bias), ``last_linear``. Its stem pool is
  ``MaxPool2d(3, 2, padding=0, ceil_mode=True)`` (``stem_pool="ceil"``); its ``se_resnet*`` put the stride
  in the first 1×1 convolution (``se_resnet50_v1``), its ``se_resnext*`` in the 3×3 (``se_resnext50_32x4d``).

``load_pretrained`` is strict: every tensor of the file is used and every tensor of the model is filled,
except attention parameters the layout does not have (reported); the model's architecture must be the
one the layout describes. Nothing is ever unpickled beyond plain tensors (``weights_only=True``).
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor, nn

from plugattn.checkpoint import CheckpointError, atomic_save_tensors

Architecture = dict[str, object]
"""Facts that change what a network computes for the same tensors: ``family`` (``imagenet``/``cifar``),
``stride_in_1x1`` (ResNet v1) and ``stem_pool`` (``pad``/``ceil``) for ImageNet nets, ``shortcut``
(``A``/``B``) for CIFAR ResNets."""

V15_TORCHVISION_STEM: Architecture = {"family": "imagenet", "stride_in_1x1": False, "stem_pool": "pad"}


def _senet_pytorch_architecture(state: Mapping[str, Tensor]) -> Architecture:
    stem = state.get("conv1.weight")
    if stem is not None and stem.shape[-1] == 3:
        return {"family": "cifar", "shortcut": "B"}
    return dict(V15_TORCHVISION_STEM)


def _plain_architecture(state: Mapping[str, Tensor]) -> Architecture:
    """Plain names are torchvision's ResNets when the stem is a 7×7 convolution; any other plain network (a
    plugattn CIFAR net without attention, a user's model) is described by its keys and shapes alone."""
    stem = state.get("conv1.weight")
    return dict(V15_TORCHVISION_STEM) if stem is not None and stem.shape[-2:] == (7, 7) else {}


def _cadene_architecture(state: Mapping[str, Tensor]) -> Architecture:
    grouped = any(key.endswith("conv2.weight") and value.shape[0] != value.shape[1] for key, value in state.items())
    return {"family": "imagenet", "stride_in_1x1": not grouped, "stem_pool": "ceil"}


@dataclass(frozen=True)
class Layout:
    """One published key layout: rules mapping its keys to ours, and the architecture its files describe."""

    rules: tuple[tuple[str, Any], ...] | Callable[[Mapping[str, Tensor]], tuple[tuple[str, Any], ...]]
    """(pattern, replacement) pairs for ``re.sub`` (a replacement may be a function of the match), or a function
    of the state dict giving them (when they depend on depth)."""
    architecture: Callable[[Mapping[str, Tensor]], Architecture]


def _bam_rules(state: Mapping[str, Tensor]) -> tuple[tuple[str, str], ...]:
    """``bamN.`` (after stage N) becomes the attention of stage N's last unit (plugattn's ``placement="stage"``)."""
    last: dict[str, int] = {}
    for key in state:
        match = re.match(r"layer(\d+)\.(\d+)\.", key)
        if match:
            last[match[1]] = max(last.get(match[1], 0), int(match[2]))
    return tuple((rf"^bam{stage}\.", f"layer{stage}.{unit}.attention.") for stage, unit in last.items())


_MBV2_LAYERS = {True: {0: "conv.0.0", 1: "conv.0.1", 3: "conv.1", 4: "conv.2"},  # expansion 1: dw, pw-linear
                False: {0: "conv.0.0", 1: "conv.0.1", 3: "conv.1.0", 4: "conv.1.1", 6: "attention_conv_1",
                        7: "conv.2", 8: "conv.3"}}
"""houqb/CoordAttention ``mbv2_ca.py`` keeps each inverted residual's layers flat in ``conv`` (with the
coordinate attention at index 6); torchvision's ``mobilenet_v2`` groups conv+BN+ReLU6, and ``attach`` after
``features.N.conv.1`` puts the block at ``features.N.attention_conv_1``."""


def _mbv2_ca_layer(match: re.Match) -> str:
    block, layer = int(match[1]), int(match[2])
    return f"features.{block}.{_MBV2_LAYERS[block == 1].get(layer, f'conv.{layer}')}."


def _bam_architecture(state: Mapping[str, Tensor]) -> Architecture:
    return {**V15_TORCHVISION_STEM, "bam_combine": "product"}


_LAYOUTS: dict[str, Layout] = {
    "plugattn": Layout((), lambda state: {}),
    "torchvision": Layout((), _plain_architecture),
    "cbam-official": Layout(((r"\.cbam\.ChannelGate\.mlp\.", ".attention.channel_gate.mlp."),
                             (r"\.cbam\.SpatialGate\.spatial\.", ".attention.spatial_gate.spatial.")),
                            lambda state: dict(V15_TORCHVISION_STEM)),
    "bam-official": Layout(_bam_rules, _bam_architecture),
    "eca-official": Layout(((r"\.eca\.conv\.", ".attention.conv."),), lambda state: dict(V15_TORCHVISION_STEM)),
    "triplet-official": Layout(((r"\.triplet_attention\.ChannelGateH\.", ".attention.cw."),
                                (r"\.triplet_attention\.ChannelGateW\.", ".attention.hc."),
                                (r"\.triplet_attention\.SpatialGate\.", ".attention.hw."),
                                (r"\.triplet_attention\.(cw|hc|hw)\.conv\.", r".attention.\1.spatial.")),
                               lambda state: dict(V15_TORCHVISION_STEM)),
    "coord-official": Layout(((r"^features\.(\d+)\.conv\.(\d+)\.", _mbv2_ca_layer),
                              (r"\.attention_conv_1\.conv2\.", ".attention_conv_1.conv_h."),
                              (r"\.attention_conv_1\.conv3\.", ".attention_conv_1.conv_w."),
                              (r"^conv\.([01])\.", r"features.18.\1.")), lambda state: {}),
    "senet.pytorch": Layout(((r"\.se\.fc\.([02])\.", r".attention.fc.\1."),), _senet_pytorch_architecture),
    "timm": Layout(((r"\.se\.fc1\.", ".attention.fc.0."), (r"\.se\.fc2\.", ".attention.fc.2.")),
                   lambda state: dict(V15_TORCHVISION_STEM)),
    "cadene": Layout(((r"^layer0\.conv1\.", "conv1."), (r"^layer0\.bn1\.", "bn1."), (r"^last_linear\.", "fc."),
                      (r"\.se_module\.fc1\.", ".attention.fc.0."), (r"\.se_module\.fc2\.", ".attention.fc.2.")),
                     _cadene_architecture),
}
LAYOUTS = tuple(_LAYOUTS)
"""The key layouts :func:`load_pretrained` reads: the official code's, senet.pytorch, Cadene's, timm's,
torchvision's and plugattn's own."""
_MLP_WEIGHT = re.compile(r"\.attention\.(fc\.[02]|channel_gate\.mlp\.[13])\.weight$")
_BAM = re.compile(r"^(module\.)?bam\d+\.")
_MBV2_CA = re.compile(r"^features\.\d+\.conv\.6\.conv[23]\.")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    :param layout: the layout it read (one of :data:`LAYOUTS`).
    :param loaded: the model's keys the file filled.
    :param missing: the model's keys the file did not fill (attention parameters the layout does not have, or
        anything with ``strict=False``).
    :param unexpected: the file's keys left unused (only with ``strict=False``).
    :param architecture: the architecture the layout describes (stride placement, stem pool, shortcuts).
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    architecture: Architecture = field(default_factory=dict)


# ---------------------------------------------------------------- reading files


def _torch_file(path: pathlib.Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "global" not in str(error).lower():  # not a refused class or function: the bytes are no pickle
            raise CheckpointError(f"{path} is corrupt or truncated, or not a torch file: {str(error)[:200]}") from error
        raise CheckpointError(
            f"refused to load {path}: it holds Python objects beyond tensors, and unpickling them could run "
            f"code from the file ({str(error).splitlines()[0]})"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated, or not a torch file: {error}") from error


def _safetensors_file(path: pathlib.Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt or truncated: {error}") from error


def _read(source: str | os.PathLike | Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str], str]:
    """The state dict, the safetensors header's metadata and a name for messages."""
    metadata: dict[str, str] = {}
    if not isinstance(source, (Mapping, str, os.PathLike)):
        raise TypeError(f"source must be a file path or a mapping of names to tensors, got {type(source).__name__}")
    if isinstance(source, Mapping):
        content: object = dict(source)
        where = "the state dict given"
    else:
        path = pathlib.Path(source)
        where = str(path)
        if not path.is_file():
            raise CheckpointError(f"weights file {path} does not exist")
        with path.open("rb") as handle:
            start = handle.read(9)
        if start[8:9] == b"{":  # safetensors: u64 header length, then the JSON header
            content, metadata = _safetensors_file(path)
        else:
            content = _torch_file(path)
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{where} holds a {type(content).__name__}, not a state dict (a mapping of parameter "
                              "names to tensors)")
    state = dict(content)
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(state.get(wrapper), Mapping):
            state = dict(state[wrapper])
    if any(str(key).startswith("model.") for key in state) and any(str(key).startswith("optimizer.") for key in state):
        state = {key[6:]: value for key, value in state.items() if key.startswith("model.")}  # plugattn train checkpoint
    state = {str(key).removeprefix("module."): value for key, value in state.items()}
    bad = [f"{key} ({type(value).__name__})" for key, value in state.items() if not isinstance(value, Tensor)]
    if bad or not state:
        found = f"entries that are not tensors: {bad[:5]}" if bad else "no entries"
        raise CheckpointError(f"{where} is not a state dict of tensors: it has {found}")
    return state, metadata, where


def read_state_dict(source: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict from a mapping, a safetensors file or a torch file, never unpickling code (``weights_only=True``).

    :param source: a mapping of tensors, or a path.
    :returns: the tensors by key, the usual wrappers (``{"state_dict": ...}``, ``{"model": ...}``, DataParallel's
        ``module.``) removed.
    :raises plugattn.checkpoint.CheckpointError: anything else — a bare tensor, a list, non-tensor entries, a
        code-running pickle, noise, a truncated file — naming the file.
    """
    return _read(source)[0]


# ---------------------------------------------------------------- layouts


def detect_layout(state: Mapping[str, Tensor]) -> str:
    """Which layout the keys of ``state`` follow.

    :param state: a state dict.
    :returns: one of :data:`LAYOUTS` (``torchvision`` when no attention key says otherwise).
    """
    keys = list(state)
    if any(_BAM.match(key) for key in keys):
        return "bam-official"
    if any(".cbam.ChannelGate." in k or ".cbam.SpatialGate." in k for k in keys):
        return "cbam-official"
    if any(".eca.conv." in k for k in keys):
        return "eca-official"
    if any(".triplet_attention." in k for k in keys):
        return "triplet-official"
    if any(_MBV2_CA.match(key) for key in keys):
        return "coord-official"
    if any(k.startswith(("layer0.", "last_linear.")) or ".se_module." in k for k in keys):
        return "cadene"
    if any(".se.fc1." in k for k in keys):
        return "timm"
    if any(".se.fc." in k for k in keys):
        return "senet.pytorch"
    if any(".attention." in k for k in keys):
        return "plugattn"
    return "torchvision"


def _check_layout(layout: str) -> Layout:
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}")
    return _LAYOUTS[layout]


def convert_state_dict(state: Mapping[str, Tensor], layout: str | None = None) -> tuple[dict[str, Tensor], str]:
    """``state`` in plugattn's layout (keys mapped; 1×1-convolution MLP weights become linear weights).

    :param state: a state dict in a foreign layout.
    :param layout: its layout (one of :data:`LAYOUTS`); None: detected.
    :returns: the converted tensors and the layout read.
    :raises ValueError: an unknown layout.
    """
    layout = layout or detect_layout(state)
    rules = _check_layout(layout).rules
    rules = rules(state) if callable(rules) else rules
    converted = {}
    for key, value in state.items():
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        if _MLP_WEIGHT.search(key) and value.dim() == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)
        converted[key] = value
    return converted, layout


def layout_architecture(state: Mapping[str, Tensor], layout: str, metadata: Mapping[str, str] | None = None) -> Architecture:
    """The architecture a file in ``layout`` describes (a file written by ``plugattn convert`` records it)."""
    if metadata and "architecture" in metadata:
        return json.loads(metadata["architecture"])
    return _check_layout(layout).architecture(state)


# ---------------------------------------------------------------- the model's side


def _is_torchvision_resnet(model: nn.Module) -> bool:
    return type(model).__module__ == "torchvision.models.resnet" and type(model).__name__ == "ResNet"


def _stem_pool(pool: nn.Module) -> str | None:
    if not isinstance(pool, nn.MaxPool2d):
        return None
    padding = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
    if padding == 1 and not pool.ceil_mode:
        return "pad"
    return "ceil" if padding == 0 and pool.ceil_mode else None


def model_architecture(model: nn.Module) -> Architecture | None:
    """The architecture facts of a plugattn zoo network or a torchvision ResNet (with or without attached
    blocks); None for a network plugattn cannot describe."""
    from plugattn.blocks import BAM
    from plugattn.models import CifarBasicBlock, CifarResNet, ResNet

    if isinstance(model, ResNet):
        facts: Architecture = {"family": "imagenet", "stride_in_1x1": model.stride_in_1x1, "stem_pool": model.stem_pool}
        combines = {module.combine for module in model.modules() if isinstance(module, BAM)}
        return facts | ({"bam_combine": combines.pop()} if len(combines) == 1 else {})
    if _is_torchvision_resnet(model):
        return {"family": "imagenet", "stride_in_1x1": False, "stem_pool": _stem_pool(model.maxpool)}
    if isinstance(model, CifarResNet):
        basic = any(isinstance(unit, CifarBasicBlock) for unit in model.modules())
        return {"family": "cifar", "shortcut": model.shortcut if basic else "projection"}
    return None


_DESCRIPTIONS = {
    ("stride_in_1x1", True): "ResNet v1 (stride in the first 1×1 convolution)",
    ("stride_in_1x1", False): "ResNet v1.5 (stride in the 3×3 convolution)",
    ("stem_pool", "pad"): "stem pool MaxPool2d(3, 2, padding=1)",
    ("stem_pool", "ceil"): "stem pool MaxPool2d(3, 2, padding=0, ceil_mode=True)",
    ("shortcut", "A"): "option-A (zero-padding) shortcuts",
    ("shortcut", "B"): "1×1 convolution + BatchNorm projection shortcuts",
    ("family", "imagenet"): "an ImageNet-style network",
    ("family", "cifar"): "a CIFAR-style network",
    ("bam_combine", "product"): "BAM blocks that multiply their branches (the official code)",
    ("bam_combine", "sum"): "BAM blocks that add their branches (the paper)",
}
_OPTION_HINT = {"stride_in_1x1": lambda v: "a name ending in _v1" if v else "a name without _v1",
                "stem_pool": lambda v: f"stem_pool={v!r}", "shortcut": lambda v: f"shortcut={v!r}",
                "family": lambda v: f"a {v}-style name", "bam_combine": lambda v: f"combine={v!r}"}


def _describe(key: str, value: object) -> str:
    return _DESCRIPTIONS.get((key, value), f"{key}={value!r}")


def describe_architecture(architecture: Architecture) -> str:
    """Words for an :data:`Architecture`, e.g. "ResNet v1 (...); stem pool MaxPool2d(3, 2, padding=0, ...)"."""
    return "; ".join(_describe(key, value) for key, value in architecture.items() if key != "family")


def _check_architecture(model: nn.Module, expected: Architecture, layout: str, where: str) -> None:
    actual = model_architecture(model)
    if actual is None or not expected:
        return
    differences = [key for key, value in expected.items() if key in actual and actual[key] != value]
    if "family" in differences:
        differences = ["family"]
    if differences:
        wanted = "; ".join(_describe(key, expected[key]) for key in differences)
        has = "; ".join(_describe(key, actual[key]) for key in differences)
        hint = ", ".join(_OPTION_HINT[key](expected[key]) for key in differences)
        raise CheckpointError(
            f"{where} is in layout {layout!r}, which describes {wanted}; the model ({type(model).__name__}) has {has}, "
            f"so the weights would load but compute something else. Build the model with {hint} "
            "(see plugattn.interop's layout list)"
        )


def _is_attention_key(key: str) -> bool:
    return ".attention." in f".{key}" or key.startswith("attention")


@dataclass
class _Fit:
    """How a converted state dict fits a model's state dict."""

    unexpected: list[str]
    missing: list[str]
    missing_attention: list[str]
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]

    @property
    def exact(self) -> bool:
        return not (self.unexpected or self.missing or self.mismatched)

    def reason(self) -> str:
        parts = []
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} keys of the file are not in the model (e.g. {self.unexpected[:3]})")
        if self.missing:
            parts.append(f"{len(self.missing)} of the model's non-attention keys are not in the file "
                         f"(e.g. {self.missing[:3]})")
        if self.mismatched:
            key, theirs, ours = self.mismatched[0]
            parts.append(f"{len(self.mismatched)} shapes differ (e.g. {key}: file {theirs}, model {ours})")
        return "; ".join(parts) or "fits"


def _fit(converted: Mapping[str, Tensor], own: Mapping[str, Tensor]) -> _Fit:
    missing = [k for k in own if k not in converted and not k.endswith("num_batches_tracked")]
    return _Fit(
        unexpected=[k for k in converted if k not in own],
        missing=[k for k in missing if not _is_attention_key(k)],
        missing_attention=[k for k in missing if _is_attention_key(k)],
        mismatched=[(k, tuple(v.shape), tuple(own[k].shape)) for k, v in converted.items()
                    if k in own and own[k].shape != v.shape],
    )


def _shape_error(fit: _Fit, layout: str) -> CheckpointError:
    key, theirs, ours = fit.mismatched[0]
    hint = ""
    if layout == "timm" and ".attention.fc." in key:
        hint = " (timm rounds SE widths up to multiples of 8: build the model with divisor=8)"
    return CheckpointError(f"shape mismatch for {key}: the weights have {theirs}, the model has {ours}{hint}"
                           + (f"; {len(fit.mismatched) - 1} more keys differ" if len(fit.mismatched) > 1 else ""))


def load_pretrained(model: nn.Module, source: str | os.PathLike | Mapping[str, Tensor], *, layout: str | None = None,
                    strict: bool = True) -> LoadReport:
    """Load weights in any supported layout into ``model`` and report what happened.

    The model's architecture must be the one the layout describes (stride placement, stem pool, CIFAR
    shortcuts), else :class:`~plugattn.checkpoint.CheckpointError` says what differs and how to build the
    right model. Shapes must agree. ``strict`` (default): every tensor of the file is used and every model
    tensor is filled, except attention parameters the layout does not have, which the report lists; any other
    difference raises, naming the keys. When the layout is detected and its keys do not fit, every layout is
    tried, and the error says why each failed. ``strict=False`` loads what fits and reports the rest.

    :param model: the network to fill (in place).
    :param source: a safetensors or torch file, or a state dict.
    :param layout: the file's layout (one of :data:`LAYOUTS`); None: detected.
    :param strict: refuse any difference but the attention parameters the layout lacks.
    :returns: what was loaded and what was missing or left over.
    :raises plugattn.checkpoint.CheckpointError: another architecture than the layout's, keys or shapes that do not
        fit, a file that is not a state dict.
    :raises ValueError: an unknown layout.
    """
    state, metadata, where = _read(source)
    detected = layout is None
    layout = layout or detect_layout(state)
    architecture = layout_architecture(state, layout, metadata)
    _check_architecture(model, architecture, layout, where)
    own = model.state_dict()
    converted, _ = convert_state_dict(state, layout)
    fit = _fit(converted, own)
    if strict and detected and (fit.unexpected or fit.missing):
        fits = {name: _fit(convert_state_dict(state, name)[0], own) for name in LAYOUTS}
        exact = [name for name, candidate in fits.items() if candidate.exact]
        if not exact:
            tried = "\n".join(f"  - {name}: {candidate.reason()}" for name, candidate in fits.items())
            raise CheckpointError(f"{where} fits no known layout for {type(model).__name__}; tried:\n{tried}")
        layout = exact[0]
        converted, _ = convert_state_dict(state, layout)
        fit = fits[layout]
        architecture = layout_architecture(state, layout, metadata)
        _check_architecture(model, architecture, layout, where)
    if fit.mismatched:
        raise _shape_error(fit, layout)
    if strict and (fit.unexpected or fit.missing):
        raise CheckpointError(f"strict load of {where} (layout {layout!r}) into {type(model).__name__}: "
                              f"{fit.reason()}; pass strict=False to load what fits")
    report = LoadReport(layout, loaded=[k for k in converted if k in own], missing=fit.missing_attention + fit.missing,
                        unexpected=fit.unexpected, architecture=architecture)
    selected = collections.OrderedDict((k, v) for k, v in converted.items() if k in own)
    # Module versions: safetensors files carry none and the state dict is rebuilt, so modules that check theirs on
    # load (torchvision's MNASNet refuses None) get the model's own — the weights are this architecture's, checked.
    selected._metadata = getattr(model.state_dict(keep_vars=True), "_metadata", None)
    model.load_state_dict(selected, strict=False)
    return report


def convert_file(source: str | os.PathLike, destination: str | os.PathLike, *, layout: str | None = None) -> tuple[str, Architecture]:
    """Write ``source``'s weights in plugattn's layout to the safetensors file ``destination``, with the layout read
    and the architecture it describes in the header (so loading it later checks the model).

    :param source: a weights file.
    :param destination: the safetensors file to write (atomically).
    :param layout: the file's layout; None: detected.
    :returns: the layout read and the architecture it describes.
    :raises plugattn.checkpoint.CheckpointError: a file that is not a state dict.
    """
    state, metadata, _ = _read(source)
    layout = layout or detect_layout(state)
    architecture = layout_architecture(state, layout, metadata)
    converted, layout = convert_state_dict(state, layout)
    atomic_save_tensors(converted, destination, {"converted_from": layout, "architecture": json.dumps(architecture)})
    return layout, architecture
