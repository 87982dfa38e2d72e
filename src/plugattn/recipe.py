"""Any network, from its recipe: a zoo name, ``torchvision:NAME``, ``timm:NAME`` or ``package.module:factory``,
optional weights, a classifier for the data set's classes, and attention inserted anywhere.

The order is always: build the network as published → load the weights (strict: the file must be that
network; only attention parameters it does not have may be missing) → adapt the input channels → replace
the classifier for ``num_classes`` → insert attention (as the exact identity, ``init="identity-boost"``, by
default when weights were loaded, so the network computes at first exactly what it computed before). A recipe is plain data: a
checkpoint that stores it can rebuild the same model without the weights file.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from plugattn.blocks import INSERTION_INIT
from plugattn.interop import convert_state_dict, load_pretrained, read_state_dict
from plugattn.insertion import attach
from plugattn.models import create_model, list_models, model_entry
from plugattn.models.head import classifier_of
from plugattn.models.units import default_position
from plugattn.models.zoo import resolve_model_name
from plugattn.preprocessing import parse_normalize


@dataclass
class ModelRecipe:
    """What model to build: ``model`` (zoo name, ``torchvision:NAME``, ``timm:NAME`` or ``module:factory``),
    ``weights`` (a file ``load_pretrained`` reads), and the attention to insert (``attention`` None: none)
    with :func:`plugattn.attach`'s options. ``init`` None means ``identity-boost`` when weights are loaded into a
    network the attention is inserted into, ``paper`` otherwise (see :meth:`resolved_init`). ``normalize``: how inputs are
    normalised — ``"weights"`` (the statistics, and for image folders the evaluation resize, crop and
    interpolation, the weights were trained with: :func:`plugattn.preprocessing.weights_preprocessing`),
    ``"dataset"`` (the data set's own), ``"MEAN,STD"`` numbers or a (mean, std) pair; None means ``weights`` when
    weights are loaded, else ``dataset``. A recipe is plain data: a checkpoint that stores it rebuilds the model.

    :param model: a zoo name, ``torchvision:NAME``, ``timm:NAME`` or ``package.module:factory``; on paired data
        also one per modality (``image=resnet8,audio=resnet8``).
    :param weights: a weights file of that network (any layout :func:`plugattn.load_pretrained` reads), or None;
        on paired data also per modality (``audio=FILE``).
    :param attention: a registry name to insert, or None.
    :param reduction: the blocks' reduction; None: each block's own default.
    :param position: a residual unit's position; None: the block's official place.
    :param stages: the 1-based stages that get blocks; None: all.
    :param where: where the blocks go (:func:`plugattn.attach`'s ``where``).
    :param init: how the blocks start (:data:`~plugattn.blocks.INITS`); None: see above.
    :param block_options: the blocks' own options.
    :param normalize: how inputs are normalised (see above).
    :param fusion: paired data only: ``early``, a fusion block at ``fusion_stages``, or None (late fusion alone).
    :param fusion_stages: the stages after which the fusion blocks go.
    :param fusion_attention: the attention of ``early`` and ``concat`` fusion.
    :param late: ``average`` logits or ``concat`` features.
    :param fusion_options: the fusion blocks' options.
    """

    model: str = "resnet20"
    weights: str | None = None
    attention: str | None = None
    reduction: int | None = None
    position: str | None = None
    stages: list[int] | None = None
    where: str | list[str] = "residual"
    init: str | None = None
    block_options: dict[str, Any] = field(default_factory=dict)
    normalize: str | list | None = None
    fusion: str | None = None
    """Paired data only: ``early``, a fusion block (``mmtm``, ``se-sum``, ``gated-sum``, ``concat``) at
    ``fusion_stages``, or None (late fusion alone)."""
    fusion_stages: list[int | str] = field(default_factory=list)
    fusion_attention: str | None = "se"
    """The attention over the stacked inputs (``early``) or the concatenated maps (``concat``)."""
    late: str = "average"
    """How the streams' outputs are combined: ``average`` logits or ``concat`` features + one classifier."""
    fusion_options: dict[str, Any] = field(default_factory=dict)
    """Options of the fusion blocks, e.g. ``{"gate": "2sigmoid"}`` for MMTM or ``{"reduction": 8}``."""

    def carries_attention(self) -> bool:
        """Whether the named network has the attention itself (a zoo ``se_``/``cbam_`` name): its weights hold it."""
        if ":" in self.model:
            return False
        try:
            return resolve_model_name(self.model)[1] is not None
        except ValueError:
            return False

    def streams(self, modalities: Sequence[str]) -> dict[str, str]:
        """The network spec of each modality: ``model`` as ``image=resnet20,audio=resnet20`` (a subset of the data's
        modalities: those alone are used), or one spec for every modality."""
        return _per_modality(self.model, "model", modalities, every=True)

    def stream_weights(self, modalities: Sequence[str]) -> dict[str, str]:
        """The weights file of each modality that has one (``audio=FILE``)."""
        return _per_modality(self.weights, "weights", modalities, every=False) if self.weights else {}

    def normalize_mode(self) -> str | tuple[tuple[float, ...], tuple[float, ...]]:
        """``normalize`` resolved: ``"weights"``, ``"dataset"`` or a (mean, std) pair; ``weights`` without weights
        is an error naming both."""
        given = parse_normalize(self.normalize)
        mode = given or ("weights" if self.weights else "dataset")
        if mode == "weights" and not self.weights:
            raise ValueError("normalize='weights' needs weights to take the statistics from, got weights=None; use "
                             "normalize='dataset' or MEAN,STD numbers")
        return mode

    def multimodal_normalize(self) -> None:
        """Paired data are normalised with their own statistics: anything else is an error naming the option."""
        if self.normalize not in (None, "dataset"):
            raise ValueError(f"normalize must be 'dataset' (or unset) for paired data, whose modalities are normalised "
                             f"with their training statistics; got {self.normalize!r}")

    def resolved_init(self, insertion_default: str = INSERTION_INIT) -> str:
        """``init``, or by default ``insertion_default`` (:data:`~plugattn.blocks.INSERTION_INIT`) when weights are
        loaded and the attention is inserted into their network; ``paper`` without weights, and for a network whose
        weights hold its attention (e.g. ``cbam_resnet50`` with the official CBAM weights: starting those blocks as
        the identity would ignore them)."""
        return self.init or (insertion_default if self.weights and not self.carries_attention() else "paper")


# ---------------------------------------------------------------- the network as published


def _zoo_or_error(name: str) -> tuple[str, str | None]:
    try:
        return resolve_model_name(name)
    except ValueError:
        raise ValueError(
            f"model {name!r} is not a zoo name ({', '.join(list_models()[:6])}, … see plugattn.list_models()), nor "
            "'torchvision:NAME', 'timm:NAME' or 'package.module:factory'"
        ) from None


def _torchvision(name: str) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5)
        raise ValueError(f"torchvision has no classification model {name!r}" + (f"; close matches: {close}" if close else
                         f"; it has {len(available)}, e.g. {available[:6]}"))
    return torchvision.models.get_model(name, weights=None)


def _timm(name: str) -> nn.Module:
    from plugattn.extras import require

    timm = require("timm", "timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f"timm has no model {name!r}" + (f"; close matches: {close}" if close else ""))
    return timm.create_model(name, pretrained=False)


def _factory(spec: str) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"model {spec!r}: cannot import module {module_name!r} ({error})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ValueError(f"model {spec!r}: module {module_name!r} has no callable {attribute!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec!r}: the factory must return an nn.Module, got {type(model).__name__}")
    return model


def published_network(spec: str) -> nn.Module:
    """The plain network a ``torchvision:NAME``, ``timm:NAME`` or ``package.module:factory`` spec names, with its
    default classifier and random weights (zoo names are built by :func:`build_model` itself)."""
    if spec.startswith("torchvision:"):
        return _torchvision(spec.removeprefix("torchvision:"))
    if spec.startswith("timm:"):
        return _timm(spec.removeprefix("timm:"))
    return _factory(spec)


# ---------------------------------------------------------------- classifier and input adaptation


def set_classes(model: nn.Module, num_classes: int) -> str | None:
    """Replace the classifier for ``num_classes`` outputs; returns its name, or None when it already fits."""
    name, module = classifier_of(model)
    if getattr(module, "out_features", None) == num_classes:
        return None
    if callable(getattr(model, "reset_classifier", None)):
        model.reset_classifier(num_classes)
        return name
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    replacement = nn.Linear(module.in_features, num_classes, device=module.weight.device, dtype=module.weight.dtype)
    setattr(parent, child, replacement)
    return name


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    return next((name, module) for name, module in model.named_modules() if isinstance(module, nn.Conv2d))


def set_input_channels(model: nn.Module, in_channels: int) -> str | None:
    """Give the first convolution ``in_channels`` inputs, keeping what its weights respond to (as timm's
    ``adapt_input_conv``: summed over RGB for one channel, repeated and rescaled otherwise); returns its name,
    or None when it already fits."""
    name, conv = first_conv(model)
    if conv.in_channels == in_channels:
        return None
    replacement = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                            conv.groups, conv.bias is not None, conv.padding_mode,
                            device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        weight = conv.weight
        if in_channels == 1:
            replacement.weight.copy_(weight.sum(1, keepdim=True))
        else:
            repeats = -(-in_channels // weight.shape[1])
            replacement.weight.copy_(weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels))
        if conv.bias is not None:
            replacement.bias.copy_(conv.bias)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, replacement)
    return name


def _match_file_shapes(model: nn.Module, weights: str) -> None:
    """Give the model the class count and input channels of the network in ``weights`` (so the file loads
    whole; both are fitted to the data afterwards)."""
    state, _ = convert_state_dict(read_state_dict(weights))
    name, module = classifier_of(model)
    stored = state.get(f"{name}.weight")
    if stored is not None and stored.dim() == 2 and stored.shape[0] != getattr(module, "out_features", None):
        set_classes(model, stored.shape[0])
    name, conv = first_conv(model)
    stored = state.get(f"{name}.weight")
    if stored is not None and stored.dim() == 4 and stored.shape[1] * conv.groups != conv.in_channels:
        set_input_channels(model, stored.shape[1] * conv.groups)


# ---------------------------------------------------------------- the recipe


def build_model(recipe: ModelRecipe, *, num_classes: int | None, in_channels: int = 3, load_weights: bool = True
                ) -> tuple[nn.Module, list[str]]:
    """The model ``recipe`` describes, built in the one order that keeps published weights meaningful: network as
    published → weights (strict) → input channels → classifier → attention.

    :param recipe: what to build.
    :param num_classes: the classifier's classes; None: the classifier of the weights, or the network's own.
    :param in_channels: the input's channels (the first convolution is adapted when it differs).
    :param load_weights: read the weights file (``False``: a checkpoint will fill the model).
    :returns: the model and notes on what was done (weights loaded, what they lacked, classifier and input
        replaced, attention inserted and how it starts).
    :raises TypeError: an empty or non-string model.
    :raises ValueError: an unknown network or block, or options the network or block refuses.
    :raises plugattn.checkpoint.CheckpointError: weights of another architecture, or a file that is not a state dict.
    """
    if not isinstance(recipe.model, str) or not recipe.model:
        raise TypeError(f"model must be a non-empty str, got {recipe.model!r}")
    notes: list[str] = []
    zoo = ":" not in recipe.model
    attention = recipe.attention
    start = torch.get_rng_state()
    if zoo:
        base, prefix = _zoo_or_error(recipe.model)
        if prefix is not None and attention not in (None, prefix):
            raise ValueError(f"model {recipe.model!r} already selects attention {prefix!r}; got attention={attention!r}")
        attention = attention or prefix
        native = attention is not None and recipe.where == "residual"  # the zoo places (and initialises) its blocks
        own_classes = recipe.weights or num_classes is None
        model = create_model(base, in_channels=3 if recipe.weights else in_channels,
                             num_classes=model_entry(base).default_classes if own_classes else num_classes,
                             **_zoo_attention(recipe, attention) if native else {})
        if native:
            notes.append(_attention_note(recipe, attention))
            attention = None
    else:
        model = published_network(recipe.model)
    if recipe.weights and load_weights:
        _match_file_shapes(model, recipe.weights)
        report = load_pretrained(model, recipe.weights)
        notes.append(f"weights: {recipe.weights} (layout {report.layout!r}), {len(report.loaded)} tensors loaded")
    replaced = set_input_channels(model, in_channels)
    if replaced:
        notes.append(f"input: {replaced} adapted to {in_channels} channel(s)")
    with torch.random.fork_rng(devices=[]):  # the same new classifier whatever attention the network carries
        torch.set_rng_state(start)
        replaced = set_classes(model, num_classes) if num_classes is not None else None
    if replaced:
        notes.append(f"classifier: {replaced} replaced for {num_classes} classes (newly initialised)")
    if attention is not None:
        init = recipe.resolved_init()
        attach(model, attention, recipe.where, stages=recipe.stages, position=recipe.position,
               reduction=recipe.reduction, init=init, example_input=_example(model, in_channels),
               **recipe.block_options)
        notes.append(_attention_note(recipe, attention))
    return model, notes


def _zoo_attention(recipe: ModelRecipe, attention: str) -> dict[str, Any]:
    return dict(attention=attention, reduction=recipe.reduction, position=recipe.position, stages=recipe.stages,
                init=recipe.resolved_init(), **recipe.block_options)


def _attention_note(recipe: ModelRecipe, attention: str) -> str:
    init = recipe.resolved_init()
    how = f"as the papers build it (init={init!r})" if init == "paper" else f"as the exact identity (init={init!r})"
    position = recipe.position or f"{default_position(attention)}, the block's default"
    return f"attention: {attention} at {recipe.where!r} (position {position}), starting {how}"


def _example(model: nn.Module, in_channels: int) -> torch.Tensor | None:
    """A sample batch for the dry run that measures channels of layers that do not declare them."""
    reference = next(model.parameters(), None)
    if reference is None:
        return None
    return torch.zeros(2, in_channels, 64, 64, device=reference.device, dtype=reference.dtype)



# ---------------------------------------------------------------- several modalities


def _per_modality(text: str, option: str, modalities: Sequence[str], *, every: bool) -> dict[str, str]:
    """``"image=A,audio=B"`` -> ``{"image": "A", "audio": "B"}`` (names checked against ``modalities``); a value
    without ``=`` applies to every modality when ``every``."""
    if "=" not in text:
        if every:
            return {name: text for name in modalities}
        raise ValueError(f"{option} for paired data names its modality: {option}=MODALITY=VALUE[,…] with MODALITY one "
                         f"of {list(modalities)}; got {text!r}")
    chosen: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value or name not in modalities or name in chosen:
            raise ValueError(f"{option} takes MODALITY=VALUE pairs with each MODALITY once, one of {list(modalities)}; "
                             f"got {item.strip()!r} in {text!r}")
        chosen[name] = value
    return {name: chosen[name] for name in modalities if name in chosen}


class ModalitySelect(nn.Module):
    """One modality's network over paired inputs: ``forward(*inputs)`` runs ``network`` on input ``index``."""

    def __init__(self, network: nn.Module, index: int, modality: str) -> None:
        super().__init__()
        self.network, self.index, self.modality = network, index, modality

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs[self.index])


FUSION_CHOICES = ("early", "mmtm", "se-sum", "gated-sum", "concat")


def build_multimodal(recipe: ModelRecipe, *, num_classes: int, shapes: Mapping[str, Sequence[int]],
                     load_weights: bool = True) -> tuple[nn.Module, list[str]]:
    """The network ``recipe`` describes for paired inputs: one modality alone, early fusion (one network over the
    stacked inputs), or a :class:`~plugattn.models.multistream.MultiStreamNet` with fusion blocks at
    ``fusion_stages`` and late fusion.

    :param recipe: what to build (``model``/``weights`` per modality where they differ).
    :param num_classes: the classes.
    :param shapes: modality → ``(C, *spatial)``, in input order.
    :param load_weights: read the weights files.
    :returns: the network and notes on what was done.
    :raises ValueError: an unknown fusion (close matches named), a per-modality option naming unknown modalities,
        ``early`` with per-modality networks or weights, normalisation other than the data set's.
    """
    from plugattn.models.multistream import EarlyFusion, MultiStreamNet

    modalities = list(shapes)
    recipe.multimodal_normalize()
    if recipe.fusion is not None and recipe.fusion not in FUSION_CHOICES:
        close = difflib.get_close_matches(str(recipe.fusion), FUSION_CHOICES, n=3)
        raise ValueError(f"fusion must be one of {list(FUSION_CHOICES)} (or none: late fusion alone); got "
                         f"{recipe.fusion!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    weights = recipe.stream_weights(modalities)
    init = recipe.init or ("identity" if weights else "paper")
    plain = replace(recipe, fusion=None, fusion_stages=[], normalize="dataset")
    if recipe.fusion == "early":
        if "=" in recipe.model or recipe.weights:
            raise ValueError("fusion='early' runs one network over the stacked modalities: give model as one spec "
                             f"(e.g. resnet20) and no per-modality weights; got model {recipe.model!r}, weights "
                             f"{recipe.weights!r}")
        sizes = {tuple(shape[1:]) for shape in shapes.values()}
        size = max(sizes)  # the largest grid, so no modality loses resolution
        channels = [shape[0] for shape in shapes.values()]
        backbone, notes = build_model(plain, num_classes=num_classes, in_channels=sum(channels))
        notes.append(f"early fusion: {modalities} resampled to {list(size)} and stacked as {sum(channels)} channels, "
                     f"{recipe.fusion_attention or 'no'} attention over them ({init})")
        return EarlyFusion(backbone, modalities, channels, size, attention=recipe.fusion_attention, init=init), notes
    specs = recipe.streams(modalities)
    streams, notes = {}, []
    for name, spec in specs.items():
        stream, stream_notes = build_model(replace(plain, model=spec, weights=weights.get(name)),
                                           num_classes=num_classes, in_channels=shapes[name][0],
                                           load_weights=load_weights)
        streams[name] = stream
        notes += [f"{name}: {note}" for note in stream_notes]
    if len(streams) == 1:
        if recipe.fusion is not None:
            raise ValueError(f"fusion {recipe.fusion!r} needs two or more modalities in model; got {recipe.model!r}")
        name = next(iter(streams))
        notes.append(f"{name} alone (the other modalities are ignored)")
        return ModalitySelect(streams[name], modalities.index(name), name), notes
    if len(streams) != len(modalities):
        raise ValueError(f"model names {list(streams)}; a multi-stream network takes every modality of the data "
                         f"{modalities} (or one alone)")
    options = dict(recipe.fusion_options)
    if recipe.fusion == "concat":
        options["attention"] = recipe.fusion_attention
    examples = {name: torch.zeros(2, *shapes[name]) for name in modalities}
    network = MultiStreamNet(streams, examples, fusion=recipe.fusion, stages=recipe.fusion_stages, late=recipe.late,
                             num_classes=num_classes, init=init, **options)
    notes.append(f"fusion: {recipe.fusion or 'none'} at stages {recipe.fusion_stages} ({init}), late fusion "
                 f"{recipe.late!r}")
    return network, notes
