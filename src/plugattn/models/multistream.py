"""Networks over several modalities: one backbone per modality (any network that runs as a chain of its modules:
the zoo, torchvision and timm ResNets, VGG-style nets, a user's Sequential), fusion blocks between them at chosen
stages, and late fusion at the end; or early fusion, the modalities stacked as input channels.

A stage is where a fusion block sits: after ``layerN`` (the zoo's and torchvision's ResNets), after entry N of
timm's ``feature_info`` (timm's ``out_indices``; ``layerN`` again for its ResNets), or after a named module. The
backbone is cut there into segments that run its own modules in order; the cut is checked at construction by
comparing the segments' output with the network's own forward on an example input, so a network whose forward
does work outside its modules is refused, not run wrongly.

How the fused maps go on (``MultiStreamNet``): ``mmtm`` gates every stream, and each continues in its own network
(the paper's design; the official ``MMTNet.forward`` discards the visual stream's gated maps of its first two
MMTMs — plugattn does not). ``se-sum``, ``gated-sum`` and ``concat`` replace the first (main) stream's maps and the
other streams go on unchanged (ESANet's encoder). The other streams are fitted to the main one: spatial size by
adaptive average pooling (up or down), channels by a 1×1 convolution (sums only; ``concat`` projects its ΣC
channels back to the main stream's). With ``init="identity"`` the network computes at first exactly what its
streams computed alone (projections start as a selection of the main stream's channels).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from plugattn.blocks._checks import require_choice, require_positive_int
from plugattn.blocks.fusion import create_fusion
from plugattn.blocks.identity import BLEND_INITS
from plugattn.blocks.registry import create_attention
from plugattn.models.head import classifier_of

LATE_FUSIONS = ("average", "concat")
"""``average``: the mean of each stream's logits (the official MMTM network's); ``concat``: each stream's pooled
features concatenated, then one linear classifier."""

_MODALITY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_modalities(names: Sequence[str]) -> tuple[str, ...]:
    """Modality names as identifiers, unique, at least two."""
    names = tuple(names)
    bad = [name for name in names if not isinstance(name, str) or not _MODALITY.match(name)]
    if bad:
        raise ValueError(f"modality names must be identifiers such as 'image' or 'audio', got {bad}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ValueError(f"a multi-stream network needs at least two distinct modalities, got {list(names)}")
    return names


def stage_module(model: nn.Module, stage: int | str, stream: str = "stream") -> str:
    """The qualified name of the module after which stage ``stage`` ends: ``stage`` itself when it is a str naming a
    module of ``model``; else ``layerN``, or entry N of timm's (or the zoo's) ``feature_info``."""
    names = dict(model.named_modules())
    if isinstance(stage, str) and stage and stage in names:
        return stage
    if isinstance(stage, str) and not stage.isdigit():
        if stage not in names or stage == "":
            raise ValueError(f"fusion stage {stage!r} is not a module of the {stream} network "
                             f"({type(model).__name__}); its top-level modules: {list(dict(model.named_children()))}")
        return stage
    number = int(stage)
    if f"layer{number}" in names and number >= 1:
        return f"layer{number}"
    info = [entry.get("module") for entry in getattr(model, "feature_info", None) or [] if isinstance(entry, dict)]
    if 0 <= number < len(info) and info[number] in names:
        return info[number]
    layers = sorted(int(name[5:]) for name in names if re.fullmatch(r"layer\d+", name))
    have = (f"stages {layers[0]}..{layers[-1]} (layer1..layer{layers[-1]})" if layers else
            f"feature_info stages 0..{len(info) - 1}" if info else "no layerN and no feature_info: name modules instead")
    raise ValueError(f"fusion stage {stage} is beyond the {stream} network ({type(model).__name__}): it has {have}")


def _chain(model: nn.Module, ends: Sequence[str]) -> list[str]:
    """The modules ``model`` runs, in order, as qualified names: its children, descending into the Sequentials that
    hold a stage end."""
    chain: list[str] = []

    def expand(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}{name}"
            if any(end.startswith(f"{full}.") for end in ends):
                if not isinstance(child, nn.Sequential):
                    raise ValueError(f"cannot cut the network after {[e for e in ends if e.startswith(full)]}: "
                                     f"{full} is a {type(child).__name__}, not a Sequential of stages")
                expand(f"{full}.", child)
            else:
                chain.append(full)

    expand("", model)
    missing = [end for end in ends if end not in chain]
    if missing:
        raise ValueError(f"cannot cut the network after {missing}: they are not in the chain of its modules")
    return chain


class StreamPlan:
    """A backbone cut into segments at stage ends: each segment a list of (module name, flatten first)."""

    def __init__(self, model: nn.Module, ends: Sequence[str], example: Tensor, stream: str) -> None:
        chain = _chain(model, ends)
        self.segments: list[list[tuple[str, bool]]] = [[]]
        self.shapes: list[tuple[int, ...]] = []
        """The ``(C, *spatial)`` of each stage end's output."""
        was_training = model.training
        model.eval()
        failure: Exception | None = None
        try:
            with torch.no_grad():
                x, expected = self._dry_run(model, chain, ends, example), model(example)
        except (RuntimeError, ValueError, TypeError) as error:  # a module fed what the network never feeds it
            failure = error
        finally:
            model.train(was_training)
        if failure is None and isinstance(expected, Tensor):
            self.output_shape = tuple(expected.shape[1:])
            self.flatten_output = x.dim() > 2 and expected.dim() == 2
            """Whether the network flattens its output after its last module (a classifier replaced by the identity)."""
            x = torch.flatten(x, 1) if self.flatten_output else x
        if failure is not None or not isinstance(expected, Tensor) or expected.shape != x.shape or \
                not torch.allclose(x, expected, rtol=1e-4, atol=1e-5):
            why = f" ({failure})" if failure is not None else ""
            raise ValueError(f"the {stream} network ({type(model).__name__}) does not run as the chain of its modules "
                             f"(its forward does work outside them){why}, so it cannot be cut into stages; give it as "
                             "a Sequential, or use a zoo, torchvision or timm ResNet")
        self.chain = chain

    def _dry_run(self, model: nn.Module, chain: list[str], ends: Sequence[str], x: Tensor) -> Tensor:
        """Run the chain on ``x``, recording the segments, where to flatten and the maps' shapes at the ends."""
        for name in chain:
            module = model.get_submodule(name)
            flatten = isinstance(module, nn.Linear) and x.dim() > 2
            x = module(torch.flatten(x, 1) if flatten else x)
            self.segments[-1].append((name, flatten))
            if name in ends:
                self.shapes.append(tuple(x.shape[1:]))
                self.segments.append([])
        return x

    def run(self, model: nn.Module, index: int, x: Tensor) -> Tensor:
        """Segment ``index`` of ``model`` on ``x``."""
        for name, flatten in self.segments[index]:
            x = model.get_submodule(name)(torch.flatten(x, 1) if flatten else x)
        return torch.flatten(x, 1) if self.flatten_output and index == len(self.segments) - 1 else x


def _pool_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x`` average-pooled (or repeated) to spatial ``size``."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    pools = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
    return pools[x.dim() - 2](x, list(size))


def _conv1x1(dims: int, in_channels: int, out_channels: int, select: bool) -> nn.Module:
    """A 1×1 convolution over ``dims`` spatial dimensions (a Linear for rank-2 maps); ``select``: it starts as the
    selection of the first ``out_channels`` inputs."""
    conv = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims](in_channels, out_channels, *(() if dims == 0 else (1,)))
    if select:
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.zero_()
            conv.weight.view(out_channels, in_channels)[:, :out_channels] += torch.eye(out_channels)
    return conv


class FusionPoint(nn.Module):
    """One fusion block between the streams at one stage, with what fits the streams to it (see the module's
    docstring): takes and returns the list of the streams' maps."""

    plugattn_block = True

    def __init__(self, fusion: str, shapes: Sequence[tuple[int, ...]], *, init: str = "paper",
                 **options: Any) -> None:
        super().__init__()
        self.kind = fusion
        self.shapes = [tuple(shape) for shape in shapes]
        channels = [shape[0] for shape in self.shapes]
        main = self.shapes[0]
        self.adapt = nn.ModuleList()
        if fusion == "mmtm":
            self.block = create_fusion(fusion, channels, init=init, **options)
            self.project = None
            return
        ranks = {len(shape) for shape in self.shapes}
        if len(ranks) != 1:
            raise ValueError(f"fusion {fusion!r} sums or concatenates maps, which needs streams of one rank; the streams "
                             f"here are {self.shapes} (C, *spatial): use mmtm, or cut the streams where ranks agree")
        dims = len(main) - 1
        if fusion == "concat":
            self.adapt.extend(nn.Identity() for _ in channels[1:])
            self.block = create_fusion(fusion, channels, init=init, **options)
            self.project = _conv1x1(dims, sum(channels), main[0], select=init == "identity")
            return
        self.adapt.extend(_conv1x1(dims, c, main[0], select=False) if c != main[0] else nn.Identity()
                          for c in channels[1:])
        self.block = create_fusion(fusion, main[0], streams=len(channels), init=init, **options)
        self.project = None

    def _fitted(self, streams: Sequence[Tensor]) -> list[Tensor]:
        main = streams[0]
        return [main] + [adapt(_pool_to(x, main.shape[2:])) for adapt, x in zip(self.adapt, streams[1:])]

    def forward(self, streams: list[Tensor]) -> list[Tensor]:
        if self.kind == "mmtm":
            return list(self.block(*streams))
        fused = self.block(*self._fitted(streams))
        if self.project is not None:
            fused = self.project(fused)
        return [fused] + list(streams[1:])

    @property
    def weighs_modalities(self) -> bool:
        return getattr(self.block, "weighs_modalities", True)

    def modality_weights(self, streams: list[Tensor]) -> Tensor:
        """(N, streams): the mean gate each stream got (see each fusion block's ``modality_weights``)."""
        return self.block.modality_weights(*(streams if self.kind == "mmtm" else self._fitted(streams)))


class MultiStreamNet(nn.Module):
    """One backbone per modality (``streams``, named), fusion blocks after the given ``stages`` (the same stage
    numbers, or module names, in every stream), and ``late`` fusion of the streams' outputs.
    ``forward(*inputs)`` takes one tensor per modality, in ``modalities`` order.

    ``example_inputs``: one example tensor (N, C, …) per modality, to measure the maps at each stage and check the
    cut. ``late="concat"`` replaces each backbone's classifier by one linear layer over the concatenated features.

    :param streams: modality name → its backbone (a classification network).
    :param example_inputs: modality name → an example batch.
    :param fusion: a fusion name (:func:`plugattn.blocks.list_fusions`), or None (late fusion alone).
    :param stages: where the fusion blocks go: stage numbers (``layerN``, timm's ``feature_info``) or module names.
    :param late: ``"average"`` (the streams' logits averaged) or ``"concat"`` (features concatenated, one classifier).
    :param num_classes: the classes of ``late="concat"``'s classifier.
    :param init: ``"paper"`` or ``"identity"`` (the network first computes what its streams computed alone).
    :param fusion_options: the fusion blocks' options.
    :raises ValueError: bad or missing modality names, an unknown fusion or late fusion, stages a stream lacks, a
        network whose forward does work outside its modules (the cut is checked against it), streams whose maps
        a fusion cannot take.
    """

    def __init__(self, streams: Mapping[str, nn.Module], example_inputs: Mapping[str, Tensor], *,
                 fusion: str | None = None, stages: Sequence[int | str] = (), late: str = "average",
                 num_classes: int | None = None, init: str = "paper", **fusion_options: Any) -> None:
        super().__init__()
        self.modalities = check_modalities(list(streams))
        self.late = require_choice("late", late, LATE_FUSIONS)
        require_choice("init", init, BLEND_INITS)
        missing = [name for name in self.modalities if name not in example_inputs]
        if missing:
            raise ValueError(f"example_inputs needs a tensor for every modality; missing {missing}")
        if fusion is None and stages:
            raise ValueError(f"fusion stages {list(stages)} given without a fusion block (fusion=None)")
        if fusion is not None and not stages:
            raise ValueError(f"fusion {fusion!r} needs at least one stage to sit at (stages=(2, 3), or module names)")
        self.streams = nn.ModuleDict(streams)
        self.stages = list(stages)
        if late == "concat":
            features = [self._drop_classifier(name) for name in self.modalities]
            self.head = nn.Linear(sum(features), require_positive_int("num_classes", num_classes))
        else:
            self.head = None
        ends = {name: [stage_module(self.streams[name], stage, name) for stage in stages] for name in self.modalities}
        self.plans = {name: StreamPlan(self.streams[name], ends[name], example_inputs[name], name)
                      for name in self.modalities}
        self._check_logits()
        self.fusions = nn.ModuleList(
            FusionPoint(fusion, [self.plans[name].shapes[index] for name in self.modalities], init=init,
                        **fusion_options) for index in range(len(self.stages)))

    def _drop_classifier(self, name: str) -> int:
        """Replace stream ``name``'s final classifier by the identity; returns its input width."""
        qualified, classifier = classifier_of(self.streams[name])
        if not isinstance(classifier, nn.Linear):
            raise ValueError(f"late='concat' needs the {name} network's classifier to be a Linear, got "
                             f"{type(classifier).__name__} at {qualified}")
        parent, _, child = qualified.rpartition(".")
        setattr(self.streams[name].get_submodule(parent), child, nn.Identity())
        return classifier.in_features

    def _check_logits(self) -> None:
        outputs = {name: self.plans[name].output_shape for name in self.modalities}
        if self.late == "average" and len(set(outputs.values())) != 1:
            raise ValueError(f"late='average' needs every stream to output as many logits; got {outputs}")

    def forward(self, *inputs: Tensor) -> Tensor:
        if len(inputs) != len(self.modalities):
            raise ValueError(f"the network takes one input per modality {list(self.modalities)}, got {len(inputs)}")
        if any(x.shape[0] != inputs[0].shape[0] for x in inputs[1:]):
            raise ValueError(f"the modalities' batches must have one size, got "
                             f"{dict(zip(self.modalities, (int(x.shape[0]) for x in inputs)))}")
        xs = list(inputs)
        for index in range(len(self.stages) + 1):
            xs = [self.plans[name].run(self.streams[name], index, x)
                  for name, x in zip(self.modalities, xs)]
            if index < len(self.fusions):
                xs = self.fusions[index](xs)
        if self.head is not None:
            return self.head(torch.cat([x.flatten(1) for x in xs], 1))
        return torch.stack(xs).mean(0)

    def extra_repr(self) -> str:
        kinds = sorted({point.kind for point in self.fusions})
        return f"modalities={list(self.modalities)}, fusion={kinds or None}, stages={self.stages}, late={self.late!r}"


class EarlyFusion(nn.Module):
    """The seed's idea: the modalities resampled to one grid (``size``, bilinear for 2-D maps) and stacked as input
    channels, an attention block (``attention``: any registered name, or None) over those channels, then
    ``backbone`` (which must take ΣC input channels). ``forward(*inputs)`` in ``modalities`` order.

    :param backbone: the network over the stacked inputs.
    :param modalities: the modality names, in input order.
    :param channels: each modality's channels.
    :param size: the common grid (the largest modality's, so none loses resolution).
    :param attention: the block over the stacked channels (a registry name), or None.
    :param init: ``"paper"`` or ``"identity"``.
    :param options: the block's options.
    :raises ValueError: bad modality names, a channel count per modality missing, a bad size or block.
    """

    def __init__(self, backbone: nn.Module, modalities: Sequence[str], channels: Sequence[int], size: Sequence[int],
                 *, attention: str | None = "se", init: str = "paper", **options: Any) -> None:
        super().__init__()
        self.modalities = check_modalities(modalities)
        if len(channels) != len(self.modalities):
            raise ValueError(f"channels must give one count per modality {list(self.modalities)}, got {list(channels)}")
        self.channels = [require_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels)]
        self.size = [require_positive_int(f"size[{i}]", s) for i, s in enumerate(size)]
        if attention is None:
            self.attention = nn.Identity()
        else:
            from plugattn.blocks.identity import with_init

            options.setdefault("reduction", 1)  # a handful of input channels: no bottleneck below them
            self.attention = with_init(create_attention(attention, sum(self.channels), **options), init)
        self.backbone = backbone

    def stack(self, *inputs: Tensor) -> Tensor:
        """The modalities on one grid, stacked along channels ``(N, ΣC, *size)``."""
        if len(inputs) != len(self.modalities):
            raise ValueError(f"the network takes one input per modality {list(self.modalities)}, got {len(inputs)}")
        for name, x, c in zip(self.modalities, inputs, self.channels):
            if x.dim() != len(self.size) + 2 or x.shape[1] != c:
                raise ValueError(f"modality {name} must be (N, {c}, {len(self.size)} spatial dims), got {tuple(x.shape)}")
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(self.size)]
        return torch.cat([x if list(x.shape[2:]) == self.size else
                          F.interpolate(x, size=self.size, mode=mode, align_corners=False) for x in inputs], 1)

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.backbone(self.attention(self.stack(*inputs)))

    @property
    def weighs_modalities(self) -> bool:
        block = getattr(self.attention, "block", self.attention)
        return hasattr(getattr(block, "channel_gate", block), "channel_weights")

    def modality_weights(self, *inputs: Tensor) -> Tensor:
        """(N, modalities): the attention's mean channel weight over each modality's input channels."""
        block = getattr(self.attention, "block", self.attention)
        gate = getattr(block, "channel_gate", block)
        if not hasattr(gate, "channel_weights"):
            raise ValueError(f"early fusion's attention {type(block).__name__} has no channel gate: it weighs no modality")
        weights = gate.channel_weights(self.stack(*inputs))
        alpha = getattr(self.attention, "alpha", None)
        if alpha is not None:
            weights = torch.lerp(torch.ones_like(weights), weights, alpha.to(weights.dtype))
        return torch.stack([part.mean(1) for part in weights.split(self.channels, 1)], 1)
