"""Put attention blocks into an *existing* model at named points — and take them out again.

No code of the model is edited and it need not be FX-traceable: a block is stored as a child module
(so it trains, moves, saves and loads with the model, under a stable name such as
``layer1.0.attention``) and applied by a forward hook (or pre-hook) on the module whose output (or
input) it gates. The model's own parameter names never change, so its pretrained weights still load.

Points are of five kinds. In a residual unit plugattn recognises (torchvision and timm ResNet-family,
MobileNetV2, ConvNeXt and EfficientNet blocks, plugattn's zoo, and any class declared with
:func:`register_residual_unit`): ``standard`` (end of the residual branch, before the addition),
``pre`` (start of the branch), ``post`` (after the unit) and ``identity`` (on the shortcut path). Any
other module: ``after`` (applied to its output).
"""

from __future__ import annotations

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
from plugattn.models.units import POSITIONS, ResidualUnit
from plugattn.models.zoo import attention_builder

KINDS = (*POSITIONS, "after")
"""``standard``, ``pre``, ``post`` and ``identity`` are residual-unit positions; ``after`` any other module."""


@dataclass(frozen=True)
class ResidualSpec:
    """Where a residual unit class keeps its branch and shortcut: attribute names of its submodules.

    ``branch_start`` receives the unit's input on the residual branch only; ``branch_end`` produces the
    branch's output just before the addition; ``shortcut`` (optional) is the module on the identity path,
    an attribute that may hold None when the shortcut is a plain identity. ``channels_from`` names a
    submodule whose output channels are the unit's, where ``branch_end`` does not declare them.
    """

    branch_start: str
    branch_end: str
    shortcut: str | None = None
    channels_from: str | None = None


@dataclass(frozen=True)
class InsertionPoint:
    """A place a block can go: module ``name``, ``kind`` (see :data:`KINDS`), the channel count and
    number of spatial dims of the tensor the block would see (None when unknown), and for residual
    points the 1-based ``stage`` (the order of the unit's parent container among all units' parents)."""

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
) -> None:
    """Declare a residual unit class of your own so that ``attach(where="residual")`` finds it and every
    SENet position works on it (``identity`` needs ``shortcut``); see :class:`ResidualSpec`."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    _RESIDUAL_SPECS[cls] = ResidualSpec(branch_start, branch_end, shortcut, channels_from)


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
    from torchvision.models import convnext, mobilenetv2, resnet

    specs = {
        resnet.BasicBlock: ResidualSpec("conv1", "bn2", "downsample"),
        resnet.Bottleneck: ResidualSpec("conv1", "bn3", "downsample"),
        mobilenetv2.InvertedResidual: ResidualSpec("conv", "conv"),
        convnext.CNBlock: ResidualSpec("block", "block", channels_from="block.0"),
    }
    try:
        from timm.models import _efficientnet_blocks as timm_effnet
        from timm.models import resnet as timm_resnet
    except ImportError:
        return specs
    specs[timm_resnet.BasicBlock] = ResidualSpec("conv1", "bn2", "downsample")
    specs[timm_resnet.Bottleneck] = ResidualSpec("conv1", "bn3", "downsample")
    specs[timm_effnet.DepthwiseSeparableConv] = ResidualSpec("conv_dw", "bn2")
    specs[timm_effnet.InvertedResidual] = ResidualSpec("conv_pw", "bn3")
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
        return _declared_shape(module.get_submodule(spec.channels_from or spec.branch_end), side)
    if isinstance(module, nn.Sequential):
        children = list(module) if side == "in" else list(reversed(module))
        for child in children:
            shape = _declared_shape(child, side)
            if shape[0] is not None or not isinstance(child, _CHANNEL_PRESERVING):
                return shape
    return None, None


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


def _traced_shapes(model: nn.Module, example_input: Tensor | Sequence[Tensor]) -> dict[str, tuple[_Shape, _Shape]]:
    """(input, output) (channels, dims) of every module that saw a tensor of rank ≥ 3 in one dry run."""
    seen: dict[str, tuple[_Shape, _Shape]] = {}

    def shape_of(value: object) -> _Shape:
        if isinstance(value, Tensor) and value.dim() >= 3:
            return int(value.shape[1]), value.dim() - 2
        return None, None

    def record(name: str) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            seen.setdefault(name, (shape_of(args[0]) if args else (None, None), shape_of(output)))

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
    from one dry run with ``example_input`` (which also finds the sizes of layers that do not declare them)."""
    model = _check_model(model)
    static = _static_shapes(model)
    traced = _traced_shapes(model, example_input) if example_input is not None else {}
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
            inp = (module.in_channels, out[1])
        else:
            start_name = f"{name}.{spec.branch_start}"
            inp = traced[start_name][0] if start_name in traced else _declared_shape(getattr(module, spec.branch_start), "in")
        for kind in POSITIONS:
            if kind == "identity" and (spec.shortcut is None or not hasattr(module, spec.shortcut)):
                continue
            channels, dims = inp if kind == "pre" else out
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
        if self.point.kind == "pre":
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


def _resolve(model: nn.Module, points: list[InsertionPoint], where: object, position: str) -> list[InsertionPoint]:
    given = _given_points(points, where)
    if given is not None:
        return given
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
                f"(at position {position!r}). Choose points by name, e.g. {_examples(points)}, or declare your "
                "block class with plugattn.register_residual_unit"
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
    position: str = "standard",
    reduction: int = 16,
    example_input: Tensor | Sequence[Tensor] | None = None,
    replace: bool = False,
    init: str = "paper",
    **block_options: object,
) -> nn.Module:
    """Insert ``attention`` blocks into ``model`` in place and return it.

    ``where``: ``"residual"`` (every recognised residual unit, at ``position``), a glob over module names
    (``"features.*"``, ``"layer3.*.conv2"``; ``re:`` for a regex) or a list of names from
    :func:`insertion_points` — a residual unit's name uses ``position``, any other module's gets the block
    after it — or the :class:`InsertionPoint` objects :func:`insertion_points` returned (their kind and
    channels are used as they are: a point found with ``example_input`` needs none the second time).
    ``stages`` (1-based) filters residual units. Channel counts (and dims, for CBAM/spatial gates) are
    inferred; ``example_input`` lets a dry run find those the modules do not declare. ``init="identity"``
    inserts every block as the exact identity (:class:`~plugattn.blocks.IdentityStart`: the model's outputs
    are unchanged until the blocks learn); ``"paper"`` as the papers build them. Options go to the blocks.
    A point that already holds a block raises unless ``replace=True``.
    """
    model = _check_model(model)
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {', '.join(map(repr, POSITIONS))}; got {position!r}")
    points = insertion_points(model, example_input)
    chosen = _resolve(model, points, where, position)
    if stages is not None:
        stage_set = {stages} if isinstance(stages, int) else set(stages)
        available = sorted({p.stage for p in points if p.stage is not None})
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
        block = build(point.channels, point.dims).to(**factory)
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
    block = build(point.channels, point.dims).to(**factory)
    block._plugattn_attached = True
    block.__prepare_scriptable__ = functools.partial(_refuse_scripting, point.name)
    owner.add_module(attribute, block)
    spec = residual_spec(module)
    placeholder = None
    if point.kind == "standard":
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
    if point.kind == "pre":
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
    """Remove every block :func:`attach` inserted (hooks, modules, placeholders) and return the model,
    which then has exactly its original modules, state_dict and outputs."""
    model = _check_model(model)
    for target, table, key, hook in _hooks(model):
        _undo(target, table, key, hook)
    for module in model.modules():
        if isinstance(module, ResidualUnit) and getattr(module.attention, "_plugattn_attached", False):
            module.set_attention(None)
    return model


def attached_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The blocks :func:`attach` inserted, with their state_dict names."""
    return [(name, m) for name, m in model.named_modules() if getattr(m, "_plugattn_attached", False)]
