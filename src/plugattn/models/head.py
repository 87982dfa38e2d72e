"""The classifier end shared by the zoo's networks, with the interface timm and torchvision users expect:
``forward_features`` (unpooled maps), ``forward_head(x, pre_logits)``, ``get_classifier``/``reset_classifier``,
``num_classes`` (0: no classifier), ``num_features`` and ``global_pool`` (``"avg"``, or ``""`` for none)."""

import torch
from torch import Tensor, nn

from plugattn.blocks._checks import factory_like, require_choice

GLOBAL_POOLS = ("avg", "")


def require_num_classes(value: object) -> int:
    """``num_classes`` as an int ≥ 0 (0 builds no classifier: the network returns its pooled features)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"num_classes must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {value}")
    return value


class ClassifierHead(nn.Module):
    """Base of the zoo's networks: global pooling (``avgpool``) and a linear classifier (``fc``) after
    :meth:`forward_features`, which subclasses define."""

    def init_head(self, num_features: int, num_classes: int, global_pool: str) -> None:
        self.num_features = self.head_hidden_size = num_features
        self.reset_classifier(require_num_classes(num_classes), global_pool)

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool (unless ``global_pool=""``) and classify; ``pre_logits`` stops before the classifier."""
        if self.global_pool == "avg":
            x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:  # evaluated annotations: FX writes them into the code it generates
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh classifier for ``num_classes`` (0: none), on the network's device and dtype; ``global_pool``
        ``"avg"`` or ``""`` (no pooling) when given."""
        if global_pool is not None:
            self.global_pool = require_choice("global_pool", global_pool, GLOBAL_POOLS)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1)) if global_pool == "avg" else nn.Identity()
        self.num_classes = require_num_classes(num_classes)
        self.fc = nn.Linear(self.num_features, num_classes, **factory_like(self)) if num_classes > 0 else nn.Identity()


def classifier_of(model: nn.Module) -> tuple[str, nn.Module]:
    """The name and module of ``model``'s final classifier: ``get_classifier()`` (timm, the zoo), else the
    ``fc``, ``classifier`` or ``head`` Linear (the last Linear of a ``classifier`` Sequential), else the last
    Linear of the network."""
    names = {id(module): name for name, module in model.named_modules()}
    if callable(getattr(model, "get_classifier", None)):
        module = model.get_classifier()
        if id(module) in names:
            return names[id(module)], module
    for attribute in ("fc", "classifier", "head"):
        module = getattr(model, attribute, None)
        if isinstance(module, nn.Sequential):
            linears = [(f"{attribute}.{n}", m) for n, m in module.named_children() if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1]
        if isinstance(module, nn.Linear):
            return attribute, module
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linears:  # a user's network: its last Linear
        return linears[-1]
    raise ValueError(f"cannot find the classifier of {type(model).__name__} (no get_classifier(), no fc, classifier "
                     "or head, no Linear at all): build it with the right number of classes in your factory")
