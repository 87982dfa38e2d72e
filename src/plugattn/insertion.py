"""Put attention blocks into an *existing* model at named points — and take them out again.

No code of the model is edited and it need not be FX-traceable: a block is stored as a child module
(so it trains, moves, saves and loads with the model, under a stable name such as
``layer1.0.attention``) and applied by a forward hook (or pre-hook) on the module whose output (or
input) it gates. The model's own parameter names never change, so its pretrained weights still load.

Points are of five kinds. In a residual unit plugattn recognises (the units of every torchvision CNN
classification family — ResNet/ResNeXt/Wide ResNet, MobileNetV2/V3, EfficientNet V1/V2, MNASNet, RegNet,
ShuffleNetV2, ConvNeXt, MaxViT's MBConv — timm's ResNet, ResNetV2, RegNet, ConvNeXt and EfficientNet/MobileNet
blocks, plugattn's zoo, and any class declared with :func:`register_residual_unit`): ``standard`` (end of the
residual branch, before the addition), ``pre`` (start of the branch), ``post`` (after the unit) and
``identity`` (on the shortcut path). Any other module: ``after`` (applied to its output); ``where="stage"``
chooses the ``after`` points that end each stage (:func:`stage_ends`), for networks without residual units.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from plugattn.blocks import is_attention_block
from plugattn.blocks._checks import factory_like
from plugattn.blocks.builder import attention_builder
from plugattn.models.units import POSITIONS, ResidualUnit, default_position

KINDS = (*POSITIONS, "after")
"""``standard``, ``pre``, ``post``, ``identity`` and ``prenorm`` are residual-unit positions; ``after`` any other
module."""


@dataclass(frozen=True)
class ResidualSpec:
    """Where a residual unit class keeps its branch and shortcut: attribute names of its submodules.

    ``branch_start`` receives the unit's input on the residual branch only; ``branch_end`` produces the
    branch's output just before the addition; ``shortcut`` (optional) is the module on the identity path,
    an attribute that may hold None when the shortcut is a plain identity (``none_is_identity``; False where
    None means the unit has no shortcut at all, or where the shortcut takes another tensor than the unit's
    input, as in pre-activation units). ``channels_from`` names a submodule whose output channels are the
    branch's, where ``branch_end`` does not declare them. ``concatenated``: the unit concatenates the branch's
    output with an equal-width part instead of adding it (ShuffleNetV2), so it puts out twice the branch's
    channels.
    """

    branch_start: str
    branch_end: str
    shortcut: str | None = None
    channels_from: str | None = None
    none_is_identity: bool = True
    concatenated: bool = False


@dataclass(frozen=True)
class InsertionPoint:
    """A place a block can go, as :func:`insertion_points` lists them (and :func:`attach` takes them).

    :param name: the module's qualified name.
    :param kind: one of :data:`KINDS`: a residual unit's position, or ``after`` the module.
    :param channels: the channel count of the tensor the block would see (None when unknown).
    :param dims: its number of spatial dimensions (None when unknown).
    :param module_type: the module's class name.
    :param stage: for residual points, the 1-based stage (the order of the unit's parent container among all
        units' parents).
    """

    name: str
    kind: str
    channels: int | None
    dims: int | None
    module_type: str
    stage: int | None = None


_RESIDUAL_SPECS: dict[type[nn.Module], ResidualSpec] = {}
_BUILTIN_SPECS_LOADED = False
_BUILTIN_SPECS_LOCK = threading.Lock()


def register_residual_unit(
    cls: type[nn.Module],
    *,
    branch_start: str,
    branch_end: str,
    shortcut: str | None = None,
    channels_from: str | None = None,
    none_is_identity: bool = True,
    concatenated: bool = False,
) -> None:
    """Declare a residual unit class of your own so that ``attach(where="residual")`` finds it and every
    SENet position works on it (``identity`` needs ``shortcut``); see :class:`ResidualSpec`.

    :param cls: the unit's class.
    :param branch_start: the submodule that receives the unit's input on the residual branch only.
    :param branch_end: the submodule whose output is the branch's, just before the addition.
    :param shortcut: the submodule on the identity path (may hold None for a plain identity), if any.
    :param channels_from: a submodule whose output channels are the branch's, where ``branch_end`` does not
        declare them.
    :param none_is_identity: whether a None ``shortcut`` means the plain identity (False where it means no shortcut).
    :param concatenated: the unit concatenates its branch with an equal-width part instead of adding it.
    :raises TypeError: ``cls`` is not an ``nn.Module`` subclass.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    _RESIDUAL_SPECS[cls] = ResidualSpec(branch_start, branch_end, shortcut, channels_from, none_is_identity,
                                        concatenated)


def _load_builtin_specs() -> None:
    """Recognise torchvision's and (when installed) timm's residual units; imported on first use, once, under
    a lock (a second thread waits until the table is complete)."""
    global _BUILTIN_SPECS_LOADED
    if _BUILTIN_SPECS_LOADED:
        return
    with _BUILTIN_SPECS_LOCK:
        if _BUILTIN_SPECS_LOADED:
            return
        for cls, spec in _builtin_specs().items():
            _RESIDUAL_SPECS.setdefault(cls, spec)
        _BUILTIN_SPECS_LOADED = True


def _builtin_specs() -> dict[type[nn.Module], ResidualSpec]:
    """The residual units of torchvision's CNN classification families and of timm's most fine-tuned ones.

    "standard" is the end of the residual branch before the addition (SENet's position). Where a unit has no
    addition: MobileNet/EfficientNet/MNASNet units without a skip (stride 2 or new width) still get the block at
    the end of their branch, as SE-MobileNets do; ShuffleNetV2 units gate their processed half (``branch2``, the
    end of ``branch_main`` in the official SE-ShuffleNetV2) before it is concatenated with the passed-through half
    (stride 1) or with ``branch1`` (stride 2), and have no ``identity`` position.
    """
    from torchvision.models import convnext, efficientnet, maxvit, mnasnet, mobilenetv2, mobilenetv3, regnet, resnet
    from torchvision.models import shufflenetv2

    specs = {
        resnet.BasicBlock: ResidualSpec("conv1", "bn2", "downsample"),
        resnet.Bottleneck: ResidualSpec("conv1", "bn3", "downsample"),
        mobilenetv2.InvertedResidual: ResidualSpec("conv", "conv"),
        mobilenetv3.InvertedResidual: ResidualSpec("block", "block"),
        efficientnet.MBConv: ResidualSpec("block", "block"),
        efficientnet.FusedMBConv: ResidualSpec("block", "block"),
        mnasnet._InvertedResidual: ResidualSpec("layers", "layers"),
        regnet.ResBottleneckBlock: ResidualSpec("f", "f", "proj"),
        shufflenetv2.InvertedResidual: ResidualSpec("branch2", "branch2", concatenated=True),
        convnext.CNBlock: ResidualSpec("block", "block", channels_from="block.0"),
        maxvit.MBConv: ResidualSpec("layers", "layers", "proj"),
    }
    try:
        from timm.models import _efficientnet_blocks as timm_effnet
        from timm.models import convnext as timm_convnext
        from timm.models import regnet as timm_regnet
        from timm.models import resnet as timm_resnet
        from timm.models import resnetv2 as timm_resnetv2
    except ImportError:
        return specs
    specs |= {
        timm_resnet.BasicBlock: ResidualSpec("conv1", "bn2", "downsample"),
        timm_resnet.Bottleneck: ResidualSpec("conv1", "bn3", "downsample"),
        timm_effnet.ConvBnAct: ResidualSpec("conv", "bn1"),
        timm_effnet.DepthwiseSeparableConv: ResidualSpec("conv_dw", "bn2"),
        timm_effnet.InvertedResidual: ResidualSpec("conv_pw", "bn3"),  # CondConvResidual too (a subclass)
        timm_effnet.EdgeResidual: ResidualSpec("conv_exp", "bn2"),
        timm_effnet.UniversalInvertedResidual: ResidualSpec("dw_start", "layer_scale", channels_from="pw_proj.conv"),
        timm_effnet.MobileAttention: ResidualSpec("norm", "layer_scale", channels_from="norm"),
        # timm's RegNet: downsample None means no shortcut at all, nn.Identity an identity shortcut
        timm_regnet.Bottleneck: ResidualSpec("conv1", "conv3", "downsample", "conv3.conv", none_is_identity=False),
        timm_regnet.PreBottleneck: ResidualSpec("conv1", "conv3", "downsample", none_is_identity=False),
        # pre-activation: the shortcut is the raw input when downsample is None, the normed one otherwise
        timm_resnetv2.PreActBasic: ResidualSpec("conv1", "conv2", "downsample", none_is_identity=False),
        timm_resnetv2.PreActBottleneck: ResidualSpec("conv1", "conv3", "downsample", none_is_identity=False),
        timm_resnetv2.Bottleneck: ResidualSpec("conv1", "norm3", "downsample"),
        # the branch ends after the layer scale (gamma), which is no module: its drop_path is the last one
        timm_convnext.ConvNeXtBlock: ResidualSpec("conv_dw", "drop_path", "shortcut", "conv_dw"),
    }
    return specs


_ZOO_UNIT = ResidualSpec("", "", "downsample")
"""Zoo units place their attention natively (every position); they declare their channel counts."""


def residual_spec(module: nn.Module) -> ResidualSpec | None:
    """The :class:`ResidualSpec` of ``module`` if it is a residual unit plugattn recognises, else None."""
    if isinstance(module, ResidualUnit):
        return _ZOO_UNIT
    _load_builtin_specs()
    for cls in type(module).__mro__:
        if cls in _RESIDUAL_SPECS:
            return _RESIDUAL_SPECS[cls]
    return None


# ---------------------------------------------------------------- channel inference

_CHANNEL_PRESERVING = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish,
    nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
)
_CONV_DIMS = {
    nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3, nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3,
}
_NORM_DIMS = {
    nn.BatchNorm1d: 1, nn.BatchNorm2d: 2, nn.BatchNorm3d: 3,
    nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3,
}
_Shape = tuple[int | None, int | None]  # (channels, spatial dims)


def _own_dims(module: nn.Module, table: dict[type, int]) -> int | None:
    return next((dims for cls, dims in table.items() if isinstance(module, cls)), None)


def _declared_shape(module: nn.Module, side: str) -> _Shape:
    """Channels and dims of the module's input (``side="in"``) or output (``"out"``), read from its
    definition without running it; (None, None) when the definition does not say."""
    dims = _own_dims(module, _CONV_DIMS)
    if dims is not None:
        return (module.in_channels if side == "in" else module.out_channels), dims
    dims = _own_dims(module, _NORM_DIMS)
    if dims is not None:
        return module.num_features, dims
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, None
    if side == "out" and isinstance(module, ResidualUnit):
        return module.out_channels, 2
    spec = residual_spec(module)
    if side == "out" and spec is not None:
        channels, dims = _branch_shape(module, spec)
        return (2 * channels if spec.concatenated and channels is not None else channels), dims
    if isinstance(module, nn.Sequential):
        children = list(module) if side == "in" else list(reversed(module))
        for child in children:
            shape = _declared_shape(child, side)
            if shape[0] is not None or not isinstance(child, _CHANNEL_PRESERVING):
                return shape
    return None, None


def _branch_shape(unit: nn.Module, spec: ResidualSpec) -> _Shape:
    """Channels and dims the residual branch of ``unit`` puts out, read from its definition."""
    return _declared_shape(unit.get_submodule(spec.channels_from or spec.branch_end), "out")


def _has_shortcut(unit: nn.Module, spec: ResidualSpec) -> bool:
    """Whether the unit has a shortcut module to gate (or an empty one that an nn.Identity can stand for)."""
    if spec.shortcut is None or not hasattr(unit, spec.shortcut):
        return False
    return getattr(unit, spec.shortcut) is not None or spec.none_is_identity


def _ends_in_norm(unit: nn.Module, spec: ResidualSpec) -> bool:
    """Whether the unit's branch ends in a BatchNorm, before which a block can go (``prenorm``)."""
    if isinstance(unit, ResidualUnit):
        return "prenorm" in unit.available_positions()
    return isinstance(getattr(unit, spec.branch_end, None), nn.modules.batchnorm._BatchNorm)


def _static_shapes(model: nn.Module) -> dict[str, _Shape]:
    """Output (channels, dims) of every module known statically; channel-preserving layers (activations,
    pooling, dropout) inside a Sequential inherit the count of the layer before them."""
    shapes = {name: _declared_shape(module, "out") for name, module in model.named_modules()}
    for name, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            current: _Shape = (None, None)
            for child_name, child in module.named_children():
                full = f"{name}.{child_name}" if name else child_name
                if shapes[full][0] is None and isinstance(child, _CHANNEL_PRESERVING):
                    shapes[full] = current
                current = shapes[full]
    return shapes


def _traced_shapes(model: nn.Module, example_input: Tensor | Sequence[Tensor]
                   ) -> dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]]:
    """Input and output shapes (of tensors of rank ≥ 3; None otherwise) of every module in one dry run, in the
    order the modules first finished."""
    seen: dict[str, tuple[tuple[int, ...] | None, tuple[int, ...] | None]] = {}

    def shape_of(value: object) -> tuple[int, ...] | None:
        return tuple(value.shape) if isinstance(value, Tensor) and value.dim() >= 3 else None

    def record(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            seen.setdefault(name, (shape_of(args[0]) if args else None, shape_of(output)))

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules()]
    was_training = model.training
    inputs = (example_input,) if isinstance(example_input, Tensor) else tuple(example_input)
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return seen


def _channels_and_dims(shape: tuple[int, ...] | None) -> _Shape:
    return (shape[1], len(shape) - 2) if shape is not None else (None, None)


# ---------------------------------------------------------------- stages


def _default_example(model: nn.Module) -> Tensor:
    """A one-sample input for a dry run, shaped from the model's first convolution (224 pixels a side in 2-D)."""
    lazy = [name for name, module in model.named_modules()
            if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params()]
    if lazy:
        raise ValueError(f"where='stage' needs example_input for {type(model).__name__}: its lazy modules {lazy[:3]} "
                         "would be initialised by a made-up sample; pass a batch of your real input size")
    first = next((module for module in model.modules() if _own_dims(module, _CONV_DIMS) is not None), None)
    if first is None:
        raise ValueError(f"where='stage' needs example_input: {type(model).__name__} has no convolution from which "
                         "to shape a sample input")
    dims = _own_dims(first, _CONV_DIMS)
    size = {1: 1024, 2: 224, 3: 32}[dims]
    return torch.zeros(1, first.in_channels, *(size,) * dims, device=first.weight.device, dtype=first.weight.dtype)


def stage_ends(model: nn.Module, example_input: Tensor | Sequence[Tensor] | None = None) -> list[str]:
    """The module that ends each stage of ``model``, in order: where ``where="stage"`` puts its blocks.

    A stage is a run of consecutive modules of the network's trunk whose outputs have one spatial size and that
    holds a convolution; its end is the last module before the resolution changes (as BAM is placed: after
    each stage, before the next one downsamples). The trunk is found by one dry run (``example_input``, or a
    sample shaped from the first convolution): starting at the model, the search descends into the child that
    holds more resolutions than the children's sequence shows (``features`` of VGG and DenseNet). For
    torchvision's VGG these are the last ReLU of each conv block, for DenseNet each dense block (``norm5`` after
    the last), for ResNet the stem and ``layer1``–``layer4``.

    :param model: the network.
    :param example_input: a sample batch for the dry run (None: shaped from the first convolution).
    :returns: the stage ends' qualified names, in order.
    :raises TypeError: a model that is not an ``nn.Module``, or one wrapped in DDP/DataParallel (attach first).
    :raises ValueError: a network in which no stage can be found.
    """
    model = _check_model(model)
    shapes = _traced_shapes(model, example_input if example_input is not None else _default_example(model))
    skip = _inside_attention(model)
    spatial = {name: out[2:] for name, (_, out) in shapes.items() if out is not None and name and name not in skip}

    def levels(prefix: str) -> int:
        return len({size for name, size in spatial.items() if name == prefix or name.startswith(f"{prefix}.")})

    trunk, ran = "", []
    while True:
        children = {f"{trunk}.{child}" if trunk else child for child, _ in model.get_submodule(trunk).named_children()}
        ran = [name for name in shapes if name in children]  # in the order they ran
        deepest = max(ran, key=levels, default=None)
        ran = [name for name in ran if name in spatial]
        if deepest is None or levels(deepest) <= len({spatial[name] for name in ran}):
            break
        trunk = deepest
    ends, run = [], []
    for index, name in enumerate(ran):
        run.append(name)
        if index + 1 == len(ran) or spatial[ran[index + 1]] != spatial[name]:
            if any(_own_dims(module, _CONV_DIMS) is not None for member in run
                   for module in model.get_submodule(member).modules()):
                ends.append(name)
            run = []
    return ends


# ---------------------------------------------------------------- listing points

def _inside_attention(model: nn.Module) -> set[str]:
    inside: set[str] = set()
    for name, module in model.named_modules():
        if is_attention_block(module) and name:
            inside.update(f"{name}.{sub}" if sub else name for sub, _ in module.named_modules())
    return inside


def stage_numbers(units: list[str]) -> dict[str, int]:
    """1-based stage of each residual unit name: the order of first appearance of its parent module."""
    parents: list[str] = []
    for name in units:
        parent = name.rpartition(".")[0]
        if parent not in parents:
            parents.append(parent)
    return {name: parents.index(name.rpartition(".")[0]) + 1 for name in units}


def _check_model(model: object) -> nn.Module:
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        raise TypeError(
            f"model is wrapped in {type(model).__name__}; attach attention to the bare model first, then wrap it"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return model


def insertion_points(model: nn.Module, example_input: Tensor | Sequence[Tensor] | None = None) -> list[InsertionPoint]:
    """Every place a block can go, in module order. Channel counts come from the modules' definitions, or
    from one dry run with ``example_input`` (which also finds the sizes of layers that do not declare them).

    :param model: the network.
    :param example_input: a sample batch (or the inputs, for several) for a dry run; None: no dry run.
    :returns: the points: each residual unit's positions and ``after`` every other module.
    :raises TypeError: a model that is not an ``nn.Module``, or one wrapped in DDP/DataParallel (attach first).
    """
    model = _check_model(model)
    static = _static_shapes(model)
    traced = {name: (_channels_and_dims(inp), _channels_and_dims(out))
              for name, (inp, out) in _traced_shapes(model, example_input).items()} if example_input is not None else {}
    skip = _inside_attention(model)
    modules = [(name, module) for name, module in model.named_modules() if name and name not in skip]
    units = [name for name, module in modules if residual_spec(module) is not None]
    stages = stage_numbers(units)
    points: list[InsertionPoint] = []
    for name, module in modules:
        if type(module) in (nn.ModuleList, nn.ModuleDict):
            continue  # containers without a forward of their own
        type_name = type(module).__name__
        spec = residual_spec(module)
        if spec is None:
            channels, dims = traced[name][1] if name in traced else static[name]
            points.append(InsertionPoint(name, "after", channels, dims, type_name))
            continue
        out = traced[name][1] if name in traced else _declared_shape(module, "out")
        if isinstance(module, ResidualUnit):
            inp, branch = (module.in_channels, out[1]), out
        else:
            start_name, end_name = f"{name}.{spec.branch_start}", f"{name}.{spec.branch_end}"
            inp = traced[start_name][0] if start_name in traced else _declared_shape(getattr(module, spec.branch_start), "in")
            branch = traced[end_name][1] if end_name in traced else _branch_shape(module, spec)
        for kind in POSITIONS:
            if kind == "identity" and not _has_shortcut(module, spec) or kind == "prenorm" and not _ends_in_norm(module, spec):
                continue
            channels, dims = {"pre": inp, "standard": branch, "prenorm": branch}.get(kind, out)
            points.append(InsertionPoint(name, kind, channels, dims, type_name, stages[name]))
    return points


# ---------------------------------------------------------------- hooks that apply the blocks

class _AttentionHook:
    """Applies ``getattr(owner, attribute)`` to a module's output (forward hook) or first input (pre-hook).

    A plain object rather than a closure so that ``copy.deepcopy`` of the model re-points it at the
    copy's block, and so that :func:`detach` can find and undo it."""

    def __init__(self, owner: nn.Module, attribute: str, point: InsertionPoint, placeholder: str | None = None) -> None:
        self.owner = owner
        self.attribute = attribute
        self.point = point
        self.placeholder = placeholder  # the shortcut attribute that held None before attach

    def __call__(self, module: nn.Module, args: tuple, output: object = None) -> object:
        block = getattr(self.owner, self.attribute)
        if self.point.kind in ("pre", "prenorm"):
            return (block(args[0]), *args[1:])
        return block(output)


def _hooks(model: nn.Module) -> list[tuple[nn.Module, dict, int, _AttentionHook]]:
    found = []
    for module in model.modules():
        for table in (module._forward_hooks, module._forward_pre_hooks):
            found += [(module, table, key, hook) for key, hook in table.items() if isinstance(hook, _AttentionHook)]
    return found


def _storage(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """Where the block for point ``name`` lives: on the module itself as ``attention``, or, for containers
    that run all their children (Sequential, ModuleList, ModuleDict), on the nearest ancestor that does not,
    as ``attention_<path>``."""
    parts = name.split(".")
    for depth in range(len(parts), -1, -1):
        owner = model.get_submodule(".".join(parts[:depth]))
        if not isinstance(owner, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            rest = "_".join(parts[depth:])
            attribute = f"attention_{rest}" if rest else "attention"
            if hasattr(owner, attribute) and not _is_ours(owner, attribute):
                attribute = f"plugattn_{attribute}"
            return owner, attribute
    raise ValueError(f"cannot store a block for point {name!r}: every enclosing module runs all its children")


def _is_ours(owner: nn.Module, attribute: str) -> bool:
    return getattr(getattr(owner, attribute, None), "_plugattn_attached", False)


def _given_points(points: list[InsertionPoint], where: object) -> list[InsertionPoint] | None:
    """The :class:`InsertionPoint` objects ``where`` holds (one, or a sequence of them), checked against the
    model's points by name and kind; None when ``where`` holds none."""
    given = [where] if isinstance(where, InsertionPoint) else (
        list(where) if isinstance(where, (list, tuple)) and where and all(isinstance(w, InsertionPoint) for w in where)
        else None)
    if given is None:
        return None
    known = {(p.name, p.kind) for p in points}
    for point in given:
        if (point.name, point.kind) not in known:
            raise ValueError(f"where holds InsertionPoint({point.name!r}, kind={point.kind!r}), which is not a point of "
                             f"this model; available points include {_examples(points)}")
    return given


def _resolve(model: nn.Module, points: list[InsertionPoint], where: object, position: str,
             example_input: Tensor | Sequence[Tensor] | None) -> list[InsertionPoint]:
    given = _given_points(points, where)
    if given is not None:
        return given
    if isinstance(where, str) and where == "stage":
        after = {p.name: p for p in points if p.kind == "after"}
        ends = stage_ends(model, example_input)
        if not ends:
            raise ValueError(f"where='stage' found no stage in {type(model).__name__}: no run of modules at one "
                             f"resolution holds a convolution. Choose points by name, e.g. {_examples(points)}")
        return [dataclasses.replace(after[name], stage=stage) for stage, name in enumerate(ends, 1)]
    units = [p for p in points if p.kind == position]
    candidates = {p.name: p for p in points if p.kind == "after"} | {p.name: p for p in units}
    if isinstance(where, str) and where == "residual":
        unit_types = sorted({p.module_type for p in points if p.kind != "after"})
        if not units and unit_types:
            raise ValueError(
                f"position {position!r} is not available in this model's residual units ({', '.join(unit_types)}): "
                f"they have no shortcut module to gate. Available positions: "
                f"{sorted({p.kind for p in points if p.kind != 'after'})}"
            )
        if not units:
            raise ValueError(
                f"where='residual' matched nothing: {type(model).__name__} has no residual unit plugattn recognises "
                f"(at position {position!r}). Choose where='stage'{_stage_hint(model, example_input)}, points by "
                f"name, e.g. {_examples(points)}, or declare your block class with plugattn.register_residual_unit"
            )
        return units
    if isinstance(where, str):
        pattern = _pattern(where)
        chosen = [p for name, p in candidates.items() if pattern.fullmatch(name)]
        if not chosen:
            raise ValueError(f"where={where!r} matched no insertion point; available points include {_examples(points)}")
        return chosen
    if isinstance(where, Iterable):
        chosen = []
        for name in where:
            if name not in candidates:
                close = difflib.get_close_matches(str(name), list(candidates), n=3)
                hint = f"; close matches: {close}" if close else f"; available points include {_examples(points)}"
                raise ValueError(f"where names {name!r}, which is not an insertion point of this model{hint}")
            chosen.append(candidates[name])
        return chosen
    raise TypeError(f"where must be 'residual', a glob/regex string, a list of point names or InsertionPoint objects "
                    f"from plugattn.insertion_points, got {where!r}")


def _stage_hint(model: nn.Module, example_input: Tensor | Sequence[Tensor] | None) -> str:
    """`` (a block after each of its N stages: [names])`` for the "matched nothing" error, when a dry run with the
    caller's ``example_input`` finds them (no sample is made up here: a dry run can initialise lazy modules)."""
    if example_input is None:
        return " (a block after each stage of the network, where the resolution changes)"
    try:
        ends = stage_ends(model, example_input)
    except Exception:  # the hint is optional: a model that cannot run the sample still gets the error itself
        return " (a block after each stage of the network, where the resolution changes)"
    return f" (a block after each of its {len(ends)} stages: [{', '.join(ends)}])" if ends else ""


def _pattern(where: str) -> re.Pattern:
    """``re:<regex>`` is a regular expression; anything else a glob where ``*`` stays within one dotted
    name part and ``**`` crosses parts (``layer3.*.conv2``, ``features.**``)."""
    if where.startswith("re:"):
        return re.compile(where[3:])
    parts = re.split(r"(\*\*|\*|\?)", where)
    translated = {"**": ".*", "*": r"[^.]*", "?": r"[^.]"}
    return re.compile("".join(translated.get(part, re.escape(part)) for part in parts))


def _examples(points: list[InsertionPoint], limit: int = 12) -> str:
    names = list(dict.fromkeys(p.name for p in points))
    shown = ", ".join(names[:limit])
    return f"[{shown}{', …' if len(names) > limit else ''}] ({len(names)} in all; see plugattn.insertion_points)"


def attach(
    model: nn.Module,
    attention: str = "cbam",
    where: str | Sequence[str] | InsertionPoint | Sequence[InsertionPoint] = "residual",
    *,
    stages: Sequence[int] | None = None,
    position: str | None = None,
    reduction: int | None = None,
    example_input: Tensor | Sequence[Tensor] | None = None,
    replace: bool = False,
    init: str = "paper",
    **block_options: object,
) -> nn.Module:
    """Insert ``attention`` blocks into ``model`` in place and return it.

    ``where``: ``"residual"`` (every recognised residual unit, at ``position``), ``"stage"`` (after each stage of
    the network, where the resolution changes: :func:`stage_ends`; for networks without residual units such as
    VGG and DenseNet; ``stages`` numbers them from 1), a glob over module names
    (``"features.*"``, ``"layer3.*.conv2"``; ``re:`` for a regex) or a list of names from
    :func:`insertion_points` — a residual unit's name uses ``position``, any other module's gets the block
    after it — or the :class:`InsertionPoint` objects :func:`insertion_points` returned (their kind and
    channels are used as they are: a point found with ``example_input`` needs none the second time).
    ``position`` (None: the block's official place where the units have it, ``prenorm`` for SimAM; else
    ``standard``; see :data:`~plugattn.models.POSITIONS`). ``stages`` (1-based) filters residual units. Channel
    counts (and dims, for CBAM/spatial gates) are inferred; ``example_input`` lets a dry run find those the modules do not declare. ``init``: ``"paper"``
    inserts the blocks as the papers build them; every other start of :data:`~plugattn.blocks.INITS` inserts them
    as the exact identity (the model's outputs are unchanged until the blocks learn) — ``"identity-boost"``
    (:data:`~plugattn.blocks.INSERTION_INIT`, what recipes and the CLI use with weights) learns fastest,
    ``"identity"`` is :class:`~plugattn.blocks.IdentityStart` with α at its plain rate. Options go to the blocks.
    A point that already holds a block raises unless ``replace=True``.

    :param model: the network, changed in place (attach before wrapping it in DDP).
    :param attention: a registry name (:func:`plugattn.list_attention`).
    :param where: ``"residual"``, ``"stage"``, a glob, ``"re:REGEX"``, module names or :class:`InsertionPoint` objects.
    :param stages: 1-based stages to keep (residual units, or stage ends with ``where="stage"``).
    :param position: a residual unit's position (:data:`~plugattn.models.POSITIONS`); None: the block's own.
    :param reduction: the blocks' reduction; None: each block's own default.
    :param example_input: a sample batch for a dry run that finds the channels of layers that do not declare them.
    :param replace: replace blocks already at the chosen points.
    :param init: how the blocks start (:data:`~plugattn.blocks.INITS`).
    :param block_options: the blocks' own options (``kernel_size=3``, ``pool_types=("avg",)``, …).
    :returns: ``model``.
    :raises TypeError: a model that is not an ``nn.Module``, or one wrapped in DDP/DataParallel (attach first).
    :raises ValueError: an unknown block, position or start; ``where`` matching nothing (the error lists the
        points, and proposes ``where="stage"`` where no residual unit was found); a point that already holds a
        block without ``replace``; a position the matched units do not offer.
    """
    model = _check_model(model)
    if position is not None and position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(map(repr, POSITIONS))}; got {position!r}")
    if isinstance(where, str) and where == "stage" and example_input is None:
        example_input = _default_example(model)
    points = insertion_points(model, example_input)
    if position is None:
        position = default_position(attention, {point.kind for point in points})
    chosen = _resolve(model, points, where, position, example_input)
    if stages is not None:
        stage_set = {stages} if isinstance(stages, int) else set(stages)
        available = sorted({p.stage for p in (chosen if where == "stage" else points) if p.stage is not None})
        if not stage_set or not stage_set <= set(available):
            raise ValueError(f"stages must be a non-empty selection of {available} for this model; got {stages!r}")
        chosen = [p for p in chosen if p.stage in stage_set]
    unknown = [p for p in chosen if p.channels is None]
    if unknown:
        names = ", ".join(f"{p.name} ({p.module_type})" for p in unknown[:5])
        raise ValueError(
            f"cannot determine the channel count at {names} from the module definitions; "
            "pass example_input (a sample batch) so that one dry run can measure it"
        )
    build = attention_builder(attention, reduction, block_options, init)
    for point in chosen:
        _install(model, point, build, replace)
    return model


def _install(model: nn.Module, point: InsertionPoint, build: Callable[..., nn.Module], replace: bool) -> None:
    module = model.get_submodule(point.name)
    factory = factory_like(module, model)
    if isinstance(module, ResidualUnit) and point.kind != "after":
        if module.attention is not None and not replace:
            raise ValueError(f"point {point.name!r} already has an attention block; pass replace=True to swap it")
        block = build(point.channels, point.dims).to(**factory).train(module.training)
        block._plugattn_attached = True
        module.set_attention(block, point.kind)
        return
    owner, attribute = (module, "attention") if point.kind != "after" else _storage(model, point.name)
    if hasattr(owner, attribute) and not _is_ours(owner, attribute) and point.kind != "after":
        attribute = "plugattn_attention"
    existing = [hook for hook in _hooks(model) if hook[3].owner is owner and hook[3].attribute == attribute]
    if existing or _is_ours(owner, attribute):
        if not replace:
            raise ValueError(f"point {point.name!r} already has an attention block; pass replace=True to swap it")
        for target, table, key, hook in existing:
            _undo(target, table, key, hook)
    block = build(point.channels, point.dims).to(**factory).train(module.training)  # as the network it joins
    block._plugattn_attached = True
    block.__prepare_scriptable__ = functools.partial(_refuse_scripting, point.name)
    owner.add_module(attribute, block)
    spec = residual_spec(module)
    placeholder = None
    if point.kind in ("standard", "prenorm"):  # after the branch's last module, or before it
        target = getattr(module, spec.branch_end)
    elif point.kind == "pre":
        target = getattr(module, spec.branch_start)
    elif point.kind == "identity":
        target = getattr(module, spec.shortcut)
        if target is None:
            placeholder, target = spec.shortcut, nn.Identity()
            setattr(module, spec.shortcut, target)
    else:
        target = module
    hook = _AttentionHook(owner, attribute, point, placeholder)
    if point.kind in ("pre", "prenorm"):
        target.register_forward_pre_hook(hook)
    else:
        target.register_forward_hook(hook)


def _refuse_scripting(point: str) -> None:
    """What ``torch.jit.script`` meets in a block applied by a forward hook: TorchScript cannot compile the
    hook, so say what works instead."""
    raise RuntimeError(
        f"torch.jit.script cannot compile the attention block attached at {point!r}: plugattn.attach applies it "
        "with a forward hook, which TorchScript does not support. Use torch.jit.trace(model, example), "
        "torch.export.export(model, (example,)) or plugattn.export_onnx instead (plugattn's zoo models, whose "
        "units hold their blocks natively, do script)"
    )


def _undo(target: nn.Module, table: dict, key: int, hook: _AttentionHook) -> None:
    del table[key]
    if hasattr(hook.owner, hook.attribute):
        delattr(hook.owner, hook.attribute)
    if hook.placeholder is not None:
        unit = next(m for m in hook.owner.modules() if getattr(m, hook.placeholder, None) is target)
        setattr(unit, hook.placeholder, None)


def detach(model: nn.Module) -> nn.Module:
    """Remove every block :func:`attach` inserted (hooks, modules, placeholders), so that the model has exactly
    its original modules, state_dict and outputs again.

    :param model: the network, changed in place.
    :returns: ``model``.
    :raises TypeError: a model that is not an ``nn.Module``, or one wrapped in DDP/DataParallel (attach first).
    """
    model = _check_model(model)
    for target, table, key, hook in _hooks(model):
        _undo(target, table, key, hook)
    for module in model.modules():
        if isinstance(module, ResidualUnit) and getattr(module.attention, "_plugattn_attached", False):
            module.set_attention(None)
    return model


def attached_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks :func:`attach` inserted.

    :param model: the network.
    :returns: (state_dict name, block) pairs.
    """
    return [(name, m) for name, m in model.named_modules() if getattr(m, "_plugattn_attached", False)]


def without_attention(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its attention: every zoo unit's block and every block :func:`plugattn.attach`
    inserted are removed, leaving exactly the plain network (the fair control, and :func:`plugattn.profile`'s
    baseline). ``model`` itself is untouched.

    :param model: the network.
    :returns: the plain copy.
    :raises TypeError: a model that is not an ``nn.Module``, or one wrapped in DDP/DataParallel (attach first).
    """
    plain = detach(copy.deepcopy(model))
    for module in plain.modules():
        if isinstance(module, ResidualUnit):
            module.set_attention(None)
    return plain
