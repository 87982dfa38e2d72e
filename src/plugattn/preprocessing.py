"""How a network's inputs are prepared: the normalisation statistics, evaluation resize and crop, and
interpolation that its weights were trained with — read from where the weights come from, never assumed.

Sources, in order: a plugattn checkpoint's recorded preprocessing; torchvision's weights enum (``DEFAULT``) for
``torchvision:NAME``; timm's ``pretrained_cfg`` (the default tag, or ``timm:NAME.TAG``) through
``timm.data.resolve_data_config``; torchvision's ImageNet preset for a foreign file loaded into one of the zoo's
ImageNet-shaped networks. Where none applies, the data set's own statistics are used (the caller's choice).
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
NORMALIZE_MODES = ("weights", "dataset")


@dataclass(frozen=True)
class Preprocessing:
    """``mean``/``std`` per input channel (of images scaled to [0, 1]); for evaluation, the shorter side resized
    to ``resize_size`` with ``interpolation``, then the centre ``crop_size`` square (None: the data's own size);
    ``source`` says where the values come from (for the run log)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_size: int | None = None
    resize_size: int | None = None
    interpolation: str = "bilinear"
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"normalize needs one mean and one std per channel; got mean {list(self.mean)} and std "
                             f"{list(self.std)}")
        if not all(isinstance(s, (int, float)) and s > 0 and math.isfinite(s) for s in self.std):
            raise ValueError(f"normalize std must be > 0 for every channel; got {list(self.std)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}; got {self.interpolation!r}")

    def for_channels(self, channels: int) -> Preprocessing:
        """These statistics for ``channels`` input channels: three values become their mean for one channel
        (timm's rule for grey input); any other mismatch is an error naming both counts."""
        if len(self.mean) == channels:
            return self
        if len(self.mean) == 3 and channels == 1:
            return replace(self, mean=(sum(self.mean) / 3,), std=(sum(self.std) / 3,),
                           source=f"{self.source}; one channel: the mean of the three values")
        raise ValueError(f"normalize: the statistics ({self.source}) have {len(self.mean)} values per statistic but the "
                         f"input has {channels} channel(s)")

    def geometry_for(self, image_size: int | None) -> tuple[int | None, int | None]:
        """(crop, resize) for evaluation: these values, or ``image_size`` as the crop with the resize scaled by
        the same ratio (the weights' crop share kept)."""
        if image_size is None or self.crop_size is None:
            return (image_size or self.crop_size), (self.resize_size if image_size is None else None)
        resize = self.resize_size or self.crop_size
        return image_size, max(image_size, int(round(image_size * resize / self.crop_size)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})


def parse_normalize(value: str | Sequence[Any] | None) -> str | tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``normalize`` as given: None, ``"weights"``, ``"dataset"``, ``"MEAN,…,STD,…"`` (2 numbers: one mean and
    one std for every channel; 2·C: C means, then C stds), or a (mean, std) pair of sequences."""
    if value is None or value in NORMALIZE_MODES:
        return value
    if isinstance(value, str):
        try:
            numbers = [float(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(f"normalize must be 'weights', 'dataset' or MEAN,STD numbers such as 0.5,0.25 (or 2·C "
                             f"numbers: C means then C stds); got {value!r}") from None
        if len(numbers) % 2:
            raise ValueError(f"normalize must hold as many means as stds (2 or 2·C numbers); got {len(numbers)}: "
                             f"{value!r}")
        half = len(numbers) // 2
        return tuple(numbers[:half]), tuple(numbers[half:])
    if isinstance(value, Sequence) and len(value) == 2:
        mean, std = value
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    raise ValueError(f"normalize must be 'weights', 'dataset', 'MEAN,STD' or a (mean, std) pair; got {value!r}")


def explicit_preprocessing(pair: tuple[tuple[float, ...], tuple[float, ...]], channels: int) -> Preprocessing:
    """The statistics a user gave, for ``channels`` input channels (one value each, or one per channel)."""
    mean, std = pair
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels:
        raise ValueError(f"normalize: expected 2 numbers (one mean, one std) or {2 * channels} (means then stds) for "
                         f"{channels}-channel input, got {2 * len(mean)}")
    return Preprocessing(mean, std, source="given with normalize")


def _torchvision(name: str) -> Preprocessing | None:
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        return None
    return _from_preset(weights.transforms(), f"torchvision {name} weights {weights.name}")


def _from_preset(preset: Any, source: str) -> Preprocessing:
    """The values of a torchvision ``ImageClassification`` preset."""
    return Preprocessing(tuple(preset.mean), tuple(preset.std), preset.crop_size[0], preset.resize_size[0],
                         preset.interpolation.value, source)


def _timm(name: str) -> Preprocessing | None:
    from plugattn.extras import require

    timm = require("timm", "timm")
    from timm.data import resolve_data_config

    cfg = timm.get_pretrained_cfg(name)
    if cfg is None:
        return None
    config = resolve_data_config(pretrained_cfg=cfg.to_dict())
    crop = config["input_size"][-1]
    interpolation = config["interpolation"] if config["interpolation"] in INTERPOLATIONS else "bilinear"
    tag = name if "." in name else f"{name}.{getattr(cfg, 'tag', None) or 'default'}"
    return Preprocessing(tuple(config["mean"]), tuple(config["std"]), crop, math.floor(crop / config["crop_pct"]),
                         interpolation, f"timm pretrained_cfg of {tag}")


def imagenet_preprocessing(source: str) -> Preprocessing:
    """ImageNet's evaluation preprocessing as torchvision's classification preset defines it."""
    from torchvision.transforms._presets import ImageClassification

    return _from_preset(ImageClassification(crop_size=224), source)


def recorded_preprocessing(path: str | pathlib.Path) -> tuple[bool, Preprocessing | None]:
    """(is a plugattn training checkpoint, the preprocessing it records or None) for a weights file; only the
    safetensors header is read."""
    from safetensors import SafetensorError, safe_open

    from plugattn.checkpoint import FORMAT

    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return False, None
    if metadata.get("format") != FORMAT:
        return False, None
    recorded = json.loads(metadata.get("meta", "{}")).get("preprocessing")
    return True, (Preprocessing.from_dict(recorded) if recorded else None)


def weights_preprocessing(model: str, weights: str | pathlib.Path) -> Preprocessing | None:
    """The preprocessing ``weights`` were trained with, for the network ``model`` names (a zoo name,
    ``torchvision:NAME``, ``timm:NAME[.TAG]`` or ``module:factory``); None when nothing says."""
    is_run, recorded = recorded_preprocessing(weights)
    if is_run:  # None: written before plugattn recorded preprocessing, i.e. the data set's own
        return replace(recorded, source=f"{recorded.source}, as recorded in {pathlib.Path(weights).name}") \
            if recorded is not None else None
    if model.startswith("torchvision:"):
        return _torchvision(model.removeprefix("torchvision:"))
    if model.startswith("timm:"):
        return _timm(model.removeprefix("timm:"))
    if ":" not in model:
        from plugattn.models.zoo import model_entry, resolve_model_name

        if model_entry(resolve_model_name(model)[0]).family == "imagenet":
            return imagenet_preprocessing(f"ImageNet's (torchvision preset): {pathlib.Path(weights).name} is a foreign "
                                          f"file loaded into the ImageNet-shaped {model}")
    return None
