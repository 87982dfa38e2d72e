"""``create_model``: the papers' networks by name, with attention none / se / cbam / any registered block."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from plugattn.blocks import INITS
from plugattn.blocks.builder import attention_builder
from plugattn.blocks._checks import require_choice, require_positive_int
from plugattn.models.head import GLOBAL_POOLS, require_num_classes
from plugattn.models.cifar import CifarBasicBlock, CifarResNet, PreActBottleneck, WideBasicBlock
from plugattn.models.resnet import BasicBlock, Bottleneck, ResNet
from plugattn.models.units import POSITIONS, ResidualUnit, default_position

ATTENTION_PREFIXES = ("se", "cbam", "bam", "eca", "coord", "simam", "triplet", "gc", "scse")
"""Attention whose networks the zoo names ``<prefix>_<model>``. Zoo models follow the papers' official code unless
an option is passed explicitly: SE-ResNets with biases in both FC layers (their parameter counts prove it; the
seed's SELayer has none), ECA-ResNets with the released kernel size per stage (:data:`~plugattn.models.zoo.ECA_STAGE_KERNELS`; CIFAR
nets: the paper's rule), GC blocks in the stages after the first (GCNet's c3–c5), Triplet attention's H–W branch
starting from a zero BatchNorm scale, BAM between stages (after every stage but the last)."""

PLACEMENTS = ("unit", "stage")

ECA_STAGE_KERNELS = {"Bottleneck": (3, 5, 5, 7), "BasicBlock": (3, 3, 3, 3)}
"""ECANet's released kernel size per stage, by unit type (its ResNet-50: 3, 5, 5, 7)."""
"""ECANet's released ImageNet models: ``eca_resnet50/101/152`` with k = 3, 5, 5, 7 per stage, ``eca_resnet18/34``
with 3 throughout (``eca_resnet50``: 25,557,112 parameters)."""


@dataclass(frozen=True)
class ModelEntry:
    """How to build one architecture: a constructor taking the attention keywords, plus facts about it."""

    build: Callable[..., nn.Module]
    family: str  # "imagenet" or "cifar"
    num_stages: int
    input_size: tuple[int, int, int]
    default_classes: int
    description: str


def _imagenet(block, layers, description, **options) -> ModelEntry:
    return ModelEntry(functools.partial(ResNet, block, layers, **options), "imagenet", 4, (3, 224, 224), 1000, description)


def _cifar(block, depth_per_stage, description, **options) -> ModelEntry:
    return ModelEntry(
        functools.partial(CifarResNet, block, depth_per_stage, **options), "cifar", 3, (3, 32, 32), 10, description
    )


def _build_registry() -> dict[str, ModelEntry]:
    entries: dict[str, ModelEntry] = {
        "resnet18": _imagenet(BasicBlock, (2, 2, 2, 2), "ResNet-18"),
        "resnet34": _imagenet(BasicBlock, (3, 4, 6, 3), "ResNet-34"),
        "wide_resnet18_x1_5": _imagenet(BasicBlock, (2, 2, 2, 2), "ResNet-18, stage widths x1.5 (CBAM paper)",
                                        widths=(96, 192, 384, 768)),
        "wide_resnet18_x2": _imagenet(BasicBlock, (2, 2, 2, 2), "ResNet-18, stage widths x2 (CBAM paper)",
                                      widths=(128, 256, 512, 1024)),
    }
    bottlenecks = {
        "resnet50": ((3, 4, 6, 3), "ResNet-50", {}),
        "resnet101": ((3, 4, 23, 3), "ResNet-101", {}),
        "resnet152": ((3, 8, 36, 3), "ResNet-152", {}),
        "resnext50_32x4d": ((3, 4, 6, 3), "ResNeXt-50 (32x4d)", {"groups": 32, "width_per_group": 4}),
        "resnext101_32x4d": ((3, 4, 23, 3), "ResNeXt-101 (32x4d)", {"groups": 32, "width_per_group": 4}),
    }
    for name, (layers, description, options) in bottlenecks.items():
        entries[name] = _imagenet(Bottleneck, layers, f"{description}, v1.5 (torchvision)", **options)
        entries[f"{name}_v1"] = _imagenet(
            Bottleneck, layers, f"{description}, v1 (stride in 1x1; the papers' FLOPs)", stride_in_1x1=True, **options
        )
    for depth in (8, 20, 32, 44, 56, 110):
        entries[f"resnet{depth}"] = _cifar(CifarBasicBlock, (depth - 2) // 6, f"CIFAR ResNet-{depth} (He et al., option A)")
    entries["preact_resnet164"] = _cifar(PreActBottleneck, 18, "CIFAR pre-activation ResNet-164 (bottleneck)")
    entries["wrn16_8"] = _cifar(WideBasicBlock, 2, "CIFAR WRN-16-8 (Zagoruyko & Komodakis)", widths=(128, 256, 512))
    return entries


MODELS: dict[str, ModelEntry] = _build_registry()
"""Every zoo name (plain and with each attention prefix) and how it is built."""


def list_models(*, attention: bool = True) -> list[str]:
    """Every name :func:`create_model` accepts.

    :param attention: also the forms prefixed by each of :data:`~plugattn.models.zoo.ATTENTION_PREFIXES` (``se_resnet50``, …).
    :returns: the base names, sorted, then the prefixed ones.
    """
    names = sorted(MODELS)
    if attention:
        names += [f"{prefix}_{name}" for prefix in ATTENTION_PREFIXES for name in sorted(MODELS)]
    return names


def resolve_model_name(name: str) -> tuple[str, str | None]:
    """Split ``"cbam_resnet50"`` into ``("resnet50", "cbam")``; unknown names list the close matches."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__} {name!r}")
    if name in MODELS:
        return name, None
    prefix, _, base = name.partition("_")
    if prefix in ATTENTION_PREFIXES and base in MODELS:
        return base, prefix
    close = difflib.get_close_matches(name, list_models(), n=5, cutoff=0.6)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise ValueError(f"unknown model name {name!r}{hint}. plugattn.list_models() lists all {len(list_models())}")


def model_entry(name: str) -> ModelEntry:
    """The :class:`~plugattn.models.zoo.ModelEntry` for a base or prefixed model name."""
    return MODELS[resolve_model_name(name)[0]]


def _check_stages(stages: Sequence[int] | None, entry: ModelEntry, name: str) -> tuple[int, ...] | None:
    if stages is None:
        return None
    if isinstance(stages, int):
        stages = (stages,)
    stages = tuple(stages)
    valid = range(1, entry.num_stages + 1)
    if not stages or any(isinstance(s, bool) or not isinstance(s, int) or s not in valid for s in stages):
        raise ValueError(f"stages must be a non-empty selection of 1..{entry.num_stages} for {name}; got {stages!r}")
    return stages


ARCHITECTURE_OPTIONS = {"imagenet": {"stem_pool": ("pad", "ceil")}, "cifar": {"shortcut": ("A", "B")}}
"""Options that change a family's architecture itself (not its attention): ImageNet nets' stem max pool,
CIFAR ResNets' shortcut. ``None`` leaves the family's default."""


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    attention: str | None = None,
    reduction: int | None = None,
    position: str | None = None,
    stages: Sequence[int] | None = None,
    placement: str | None = None,
    in_channels: int = 3,
    stem_pool: str | None = None,
    shortcut: str | None = None,
    global_pool: str = "avg",
    init: str = "paper",
    **block_options: object,
) -> nn.Module:
    """Build a zoo network, optionally with an attention block in every residual unit of ``stages``.

    ``name`` is a base name from :func:`list_models` or its prefixed form (``se_``, ``cbam_``, ``eca_``, …).
    ``attention`` is any registry name (``"se"``, ``"cbam"``, ``"cbam-channel"``, …); ``position`` is ``standard`` (end of the
    residual branch), ``pre``, ``post``, ``identity`` or ``prenorm`` (None: the block's official place, ``prenorm``
    for SimAM, ``standard`` for the rest); ``stages`` are 1-based. ``placement="unit"`` puts a block
    in every unit of ``stages``; ``"stage"`` one block at the output of each of ``stages`` (default: all but the
    last), between stages, as BAM sits (the default for ``bam``; ``"unit"`` for the others). ``num_classes`` defaults
    to 1000 for ImageNet-style and 10 for CIFAR-style networks; ``in_channels`` is the input's channel
    count (1 for grey images). ``stem_pool`` (ImageNet nets: ``"pad"``, torchvision's, or ``"ceil"``,
    Cadene's) and ``shortcut`` (CIFAR ResNet-20…110: ``"A"``, He et al.'s zero padding, or ``"B"``, 1×1
    projections as in senet.pytorch) select architecture variants. ``num_classes=0`` builds no classifier and
    ``global_pool=""`` no pooling (the network then returns its feature maps). ``init`` says how the blocks start
    (``"paper"``: as the papers build them; the identity starts of :data:`~plugattn.blocks.INITS`). Extra keywords
    go to the blocks.

    :param name: a zoo name (:func:`list_models`), plain or with an attention prefix.
    :param num_classes: the classifier's classes (0: none); None: 1000 (ImageNet-style) or 10 (CIFAR-style).
    :param attention: a registry name, or None/``"none"``; given by the prefix when ``name`` has one.
    :param reduction: the blocks' reduction; None: each block's own default.
    :param position: where in each residual unit (:data:`~plugattn.models.POSITIONS`); None: the block's official place.
    :param stages: the 1-based stages that get blocks; None: all (GC: 2–4; ``placement="stage"``: all but the last).
    :param placement: ``"unit"`` (every residual unit) or ``"stage"`` (after each stage); None: ``stage`` for BAM.
    :param in_channels: the input's channels.
    :param stem_pool: ImageNet-style nets: ``"pad"`` (torchvision's) or ``"ceil"`` (Cadene's).
    :param shortcut: CIFAR ResNet-20…110: ``"A"`` (zero padding) or ``"B"`` (1×1 projections).
    :param global_pool: ``"avg"``, or ``""`` for no pooling.
    :param init: how the blocks start (:data:`~plugattn.blocks.INITS`).
    :param block_options: the blocks' own options.
    :returns: the network.
    :raises ValueError: an unknown name (close matches named), block, position, stage, placement, start or
        architecture option; a prefix and another ``attention``; block options without attention.
    """
    base, prefix = resolve_model_name(name)
    entry = MODELS[base]
    if prefix is not None and attention not in (None, prefix):
        raise ValueError(f"name {name!r} already selects attention {prefix!r}; got attention={attention!r} as well")
    attention = prefix or (None if attention in (None, "none") else attention)
    num_classes = entry.default_classes if num_classes is None else require_num_classes(num_classes)
    require_choice("global_pool", global_pool, GLOBAL_POOLS)
    if position is None:
        position = default_position(attention, entry.build.args[0].available_positions())
    require_choice("position", position, POSITIONS)
    stages = _check_stages(stages, entry, name)
    in_channels = require_positive_int("in_channels", in_channels)
    architecture: dict[str, object] = {key: value for key, value in {"stem_pool": stem_pool, "shortcut": shortcut}.items()
                                       if value is not None}
    allowed = ARCHITECTURE_OPTIONS[entry.family]
    for key, value in architecture.items():
        if key not in allowed:
            raise ValueError(f"{key} is an option of the {'CIFAR' if key == 'shortcut' else 'ImageNet'} family; "
                             f"{name} is {entry.family}-style (it takes {sorted(allowed)})")
        require_choice(key, value, allowed[key])
    architecture["global_pool"] = global_pool
    require_choice("init", init, INITS)
    if attention is None:
        if block_options:
            raise ValueError(f"block options {sorted(block_options)} were given but attention is None")
        return entry.build(num_classes=num_classes, in_channels=in_channels, **architecture)
    placement = require_choice("placement", placement or ("stage" if attention == "bam" else "unit"), PLACEMENTS)
    if stages is None and (attention == "gc" or placement == "stage"):
        stages = tuple(range(2, entry.num_stages + 1)) if attention == "gc" else tuple(range(1, entry.num_stages))
    if attention == "eca" and "kernel_size" not in block_options and entry.family == "imagenet":
        builder = _eca_per_stage(entry, reduction, block_options, init)
    else:
        builder = attention_builder(attention, reduction, block_options, init)
    if placement == "unit":
        return entry.build(num_classes=num_classes, in_channels=in_channels, attention=builder, position=position,
                           stages=stages, **architecture)
    model = entry.build(num_classes=num_classes, in_channels=in_channels, **architecture)
    for stage in stages:  # the stage's output: after its last unit's addition (BAM's bam1..bam3)
        last = model.get_submodule(f"layer{stage}")[-1]
        last.add_attention(builder, "post")
    return model


def _eca_per_stage(entry: ModelEntry, reduction: int | None, block_options: Mapping[str, object],
                   init: str) -> Callable[..., nn.Module]:
    """ECA blocks with ECANet's released kernel size for each stage's width (the paper's rule elsewhere)."""
    unit = entry.build.args[0]
    widths = entry.build.keywords.get("widths", (64, 128, 256, 512))
    by_width = {width * unit.expansion: attention_builder("eca", reduction, {**block_options, "kernel_size": kernel},
                                                          init)
                for width, kernel in zip(widths, ECA_STAGE_KERNELS[unit.__name__])}
    adaptive = attention_builder("eca", reduction, block_options, init)

    def build(channels: int, dims: int | None = None) -> nn.Module:
        return by_width.get(channels, adaptive)(channels, dims)

    return build


def load_backbone_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Load a plain network's weights (e.g. torchvision's ResNet) into ``model`` with attention.

    :param model: a zoo network (with or without attention).
    :param state_dict: the plain network's tensors, by the zoo's (torchvision's) key names.
    :returns: the keys left missing, which all belong to attention blocks.
    :raises ValueError: keys the model does not have, shape mismatches, or missing keys outside the attention.
    """
    own = model.state_dict()
    unexpected = [key for key in state_dict if key not in own]
    if unexpected:
        raise ValueError(f"state_dict has keys this model does not: {unexpected[:10]}")
    for key, value in state_dict.items():
        if own[key].shape != value.shape:
            raise ValueError(f"shape mismatch for {key}: state_dict has {tuple(value.shape)}, model has {tuple(own[key].shape)}")
    result = model.load_state_dict(state_dict, strict=False)
    not_attention = [key for key in result.missing_keys if ".attention." not in f".{key}"]
    if not_attention:
        raise ValueError(f"state_dict lacks non-attention weights of this model: {not_attention[:10]}")
    return list(result.missing_keys)
