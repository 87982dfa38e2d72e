"""Register the plugattn zoo in timm as real timm models: after ``import plugattn.timm``,
``timm.create_model("plugattn_cbam_resnet50", num_classes=10)`` returns our network with a ``pretrained_cfg``
(``default_cfg``), ``num_classes``, ``feature_info``, ``forward_features``/``forward_head`` and
``get_classifier``/``reset_classifier``, built through timm's ``build_model_with_cfg`` so that
``features_only``/``out_indices``/``feature_cls`` give timm's own feature wrappers.

Every name of :func:`plugattn.list_models` is registered with a ``plugattn_`` prefix. timm's arguments are
supported (``num_classes``, ``in_chans``, ``global_pool`` ``"avg"``/``""``, ``device``, ``dtype``, the
feature arguments) or refused with an error — never silently dropped; other keywords go to
:func:`plugattn.create_model` (``reduction``, ``position``, ``stages``, block options …). The attention blocks
are declared leaf modules for timm's FX feature extraction (they check their inputs in Python)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from plugattn.blocks import BLOCK_CLASSES
from plugattn.extras import require
from plugattn.models import create_model, list_models, model_entry

require("timm", "timm")
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD  # noqa: E402  (after the check naming the extra)
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model, register_notrace_module  # noqa: E402

PREFIX = "plugattn_"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
REFUSED = ("drop_rate", "drop_path_rate", "drop_block_rate", "output_stride", "act_layer", "norm_layer",
           "aa_layer", "attn_layer", "block_args", "zero_init_last", "img_size", "pruned")
"""timm arguments that would change a timm ResNet but that the zoo's networks do not implement."""
FEATURE_LEVELS = {"imagenet": 5, "cifar": 4}


def _cfg(name: str) -> dict[str, Any]:
    entry = model_entry(name)
    imagenet = entry.family == "imagenet"
    _, height, width = entry.input_size
    stride = 32 if imagenet else 4
    return {
        "url": "",
        "num_classes": entry.default_classes,
        "input_size": entry.input_size,
        "pool_size": (height // stride, width // stride),
        "crop_pct": 0.875 if imagenet else 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN if imagenet else CIFAR_MEAN,
        "std": IMAGENET_DEFAULT_STD if imagenet else CIFAR_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "mit",
    }


default_cfgs = generate_default_cfgs({f"{PREFIX}{name}": _cfg(name) for name in list_models()})


def _network(name: str) -> Callable[..., nn.Module]:
    """What ``build_model_with_cfg`` calls with timm's keyword names."""

    def build(*, num_classes: int, in_chans: int = 3, global_pool: str = "avg", device: Any = None,
              dtype: torch.dtype | None = None, **options: Any) -> nn.Module:
        refused = sorted(set(options) & set(REFUSED))
        if refused:
            raise TypeError(f"{PREFIX}{name} does not support timm's {refused}: plugattn's zoo networks do not "
                            "implement them")
        model = create_model(name, num_classes=num_classes, in_channels=in_chans, global_pool=global_pool, **options)
        return model.to(device=device, dtype=dtype) if device is not None or dtype is not None else model

    return build


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise ValueError(f"{PREFIX}{name} has no hub weights; build it and use plugattn.load_pretrained(model, path)")
        levels = FEATURE_LEVELS[model_entry(name).family]  # the stem, then every stage
        feature_cfg = {"out_indices": tuple(range(levels))}
        return build_model_with_cfg(_network(name), f"{PREFIX}{name}", pretrained=False, feature_cfg=feature_cfg,
                                    **kwargs)

    entrypoint.__name__ = f"{PREFIX}{name}"
    entrypoint.__qualname__ = entrypoint.__name__
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"plugattn's {name} (see plugattn.create_model)."
    return entrypoint


for _block in BLOCK_CLASSES:
    register_notrace_module(_block)
REGISTERED = [register_model(_entrypoint(name)).__name__ for name in list_models()]
"""The timm model names registered: ``plugattn_`` and every zoo name (``plugattn_cbam_resnet50``, …)."""
