"""What a training run is: every setting it depends on, stored in each of its checkpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plugattn.blocks import INITS, LEGACY_INSERTION_INIT
from plugattn.compilation import compile_mode
from plugattn.data import AUGMENTATIONS
from plugattn.data.paired import is_paired
from plugattn.recipe import ModelRecipe

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
ARCHITECTURE_FIELDS = ("model", "attention", "reduction", "position", "stages", "where", "init", "block_options",
                       "dataset", "image_size", "normalize", "fusion", "fusion_stages", "fusion_attention", "late",
                       "fusion_options")
"""Config fields a checkpoint must agree on to be resumed or evaluated (hyper-parameters may change)."""


@dataclass
class TrainConfig(ModelRecipe):
    """Everything a training run depends on — the model's recipe (the fields of
    :class:`~plugattn.recipe.ModelRecipe`, whose parameters it takes first: ``model``, ``weights``, ``attention``,
    ``reduction``, ``position``, ``stages``, ``where``, ``init``, ``block_options``, ``normalize``, ``fusion``,
    ``fusion_stages``, ``fusion_attention``, ``late``, ``fusion_options``), the data and the optimisation;
    stored in every checkpoint. The ``plugattn train`` options are these fields.

    :param dataset: ``fashion-mnist``, ``cifar10``, ``cifar100``, ``imagefolder:PATH``, ``avmnist`` or
        ``pairs:MANIFEST.csv``.
    :param data_dir: where the data set's files are.
    :param image_size: resize the shorter side and centre-crop to this size.
    :param augment: ``cifar`` (pad-crop and flip), ``imagenet`` (random resized crop and flip) or ``none``.
    :param download: let torchvision download CIFAR (nothing downloads otherwise).
    :param train_subset: a fixed subset of the training images.
    :param test_subset: the first test images only.
    :param epochs: training epochs.
    :param batch_size: the batch size (per process under DDP).
    :param optimizer: ``sgd`` (Nesterov unless ``nesterov=False``) or ``adamw``.
    :param lr: the peak learning rate.
    :param momentum: SGD momentum.
    :param nesterov: Nesterov momentum.
    :param weight_decay: weight decay (not on BatchNorm scales and shifts, biases or α).
    :param schedule: ``cosine``, ``step`` or ``constant``, after the warm-up.
    :param warmup_epochs: linear warm-up, in (fractional) epochs.
    :param milestones: the ``step`` schedule's epochs (×0.1 each).
    :param label_smoothing: cross-entropy label smoothing.
    :param attention_lr_mult: the attention parameters' learning-rate multiplier.
    :param freeze_backbone_epochs: epochs during which only attention and classifier train.
    :param ema: an exponential moving average of the weights with this decay (evaluated and saved), or None.
    :param precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
    :param compile: ``none``, ``regional`` (the attention compiled, the rest eager: :func:`plugattn.compile`) or
        ``full`` (``torch.compile`` of the whole model); ``True``, as checkpoints stored it before, is ``full``.
    :param channels_last: channels-last memory format.
    :param clip_grad: clip the gradients' norm to this, or None.
    :param modality_dropout: paired data: the probability a sample's modality is replaced by its mean.
    :param seed: the seed every random draw derives from.
    :param workers: DataLoader workers.
    :param device: ``auto``, ``cpu`` or ``cuda``.
    :param out_dir: the run's folder.
    :param progress: progress bars and notes on the console.
    """

    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    image_size: int | None = None
    augment: str = "cifar"
    download: bool = False
    train_subset: int | None = None
    test_subset: int | None = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [30, 60, 90])
    label_smoothing: float = 0.0
    attention_lr_mult: float = 1.0
    freeze_backbone_epochs: int = 0
    ema: float | None = None
    precision: str = "fp32"
    compile: str | bool = "none"
    channels_last: bool = False
    clip_grad: float | None = None
    modality_dropout: float = 0.0
    """Paired data: the probability that a training sample's modality is replaced by its mean (never all)."""
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    out_dir: str = "runs/train"
    progress: bool = True

    def validate(self) -> None:
        """Raise a clear error on values no run can use."""
        for name in ("epochs", "batch_size", "reduction"):
            value = getattr(self, name)
            if name == "reduction" and value is None:  # each block's own default
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, value, choices in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("precision", self.precision, PRECISIONS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not self.attention_lr_mult > 0:
            raise ValueError(f"attention_lr_mult must be > 0, got {self.attention_lr_mult}")
        if isinstance(self.freeze_backbone_epochs, bool) or not isinstance(self.freeze_backbone_epochs, int) \
                or self.freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be an int >= 0, got {self.freeze_backbone_epochs!r}")
        if self.ema is not None and not 0 < self.ema < 1:
            raise ValueError(f"ema must be a decay in (0, 1) such as 0.999, got {self.ema}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}; got {self.augment!r}")
        if self.image_size is not None and (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                                            or self.image_size < 1):
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        self.normalize_mode()
        compile_mode(self.compile)
        if not 0 <= self.modality_dropout < 1:
            raise ValueError(f"modality_dropout must be a probability in [0, 1), got {self.modality_dropout}")
        if self.modality_dropout and not is_paired(self.dataset):
            raise ValueError(f"modality_dropout applies to paired data (avmnist, pairs:MANIFEST.csv); dataset is "
                             f"{self.dataset!r}")
        if (self.fusion or self.fusion_stages) and not is_paired(self.dataset):
            raise ValueError(f"fusion and fusion_stages apply to paired data (avmnist, pairs:MANIFEST.csv); dataset is "
                             f"{self.dataset!r}")
        if self.init not in (None, *INITS):
            raise ValueError(f"init must be one of {list(INITS)} (or unset: identity-boost with weights, paper "
                             f"without); got {self.init!r}")

    def architecture(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ARCHITECTURE_FIELDS}

    def with_resolved_init(self, insertion_default: str | None = None) -> TrainConfig:
        """This config with ``init`` set to what an unset one means (:meth:`~plugattn.recipe.ModelRecipe.resolved_init`), so that a checkpoint
        records the start it was built with and a later change of the default cannot rebuild it differently.
        Without attention it stays unset (nothing starts), and paired data keep theirs unset (their fusion blocks have
        their own rule, which has not changed)."""
        if self.init is not None or self.attention is None or is_paired(self.dataset):
            return self
        init = self.resolved_init() if insertion_default is None else self.resolved_init(insertion_default)
        return dataclasses.replace(self, init=init)


def config_from_checkpoint(meta: Mapping[str, Any]) -> TrainConfig:
    """The config a checkpoint stored. Its ``init``, where unset, is what unset meant when it was written: runs
    record the resolved start since the insertion default became ``identity-boost``, so an unset one is older
    and meant :data:`~plugattn.blocks.LEGACY_INSERTION_INIT`."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in names})
    return config.with_resolved_init(LEGACY_INSERTION_INIT)
