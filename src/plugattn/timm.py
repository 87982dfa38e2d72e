"""Register the plugattn zoo in timm: after ``import plugattn.timm``,
``timm.create_model("plugattn_cbam_resnet50", num_classes=10)`` returns our model.

Every name of :func:`plugattn.list_models` is registered with a ``plugattn_`` prefix; keyword arguments
go to :func:`plugattn.create_model` (timm's ``in_chans`` becomes ``in_channels``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from plugattn.extras import require
from plugattn.models import create_model, list_models

require("timm", "timm")
from timm.models import register_model  # noqa: E402  (after the check that names the extra)

PREFIX = "plugattn_"
_TIMM_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only", "device", "dtype")


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    def build(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise ValueError(f"{PREFIX}{name} has no hub weights; build it and use plugattn.load_pretrained(model, path)")
        for key in _TIMM_ONLY:
            kwargs.pop(key, None)
        if "in_chans" in kwargs:
            kwargs["in_channels"] = kwargs.pop("in_chans")
        return create_model(name, **kwargs)

    build.__name__ = f"{PREFIX}{name}"
    build.__qualname__ = build.__name__
    build.__module__ = __name__
    build.__doc__ = f"plugattn's {name} (see plugattn.create_model)."
    return build


REGISTERED = [register_model(_entrypoint(name)).__name__ for name in list_models()]
