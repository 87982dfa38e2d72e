"""Train and evaluate any model recipe on real data: one process or DDP (``torchrun``), exact resume,
progress bars, TensorBoard + CSV logs, a JSON summary and a confusion-matrix plot.

By concern: ``config`` (what a run is), ``setup`` (runtime, model, optimiser, loaders), ``loop`` (the epochs),
``records`` (checkpoints and metrics), ``evaluation`` (testing a model, reading a run back)."""

from plugattn.training.config import TrainConfig, config_from_checkpoint
from plugattn.training.evaluation import (
    evaluate_checkpoint,
    evaluate_model,
    evaluate_on_test,
    load_published,
    load_trained,
)
from plugattn.training.loop import train, train_one_epoch
from plugattn.training.records import RunProgress, check_compatible, restore_run, save_run
from plugattn.training.setup import (
    EpochContext,
    Loaders,
    Runtime,
    attention_parameters,
    build_model,
    lr_factor,
    make_loaders,
    make_optimizer,
    parameter_groups,
    set_backbone_frozen,
    setup_runtime,
)

__all__ = [
    "EpochContext", "Loaders", "RunProgress", "Runtime", "TrainConfig", "attention_parameters", "build_model",
    "check_compatible", "config_from_checkpoint", "evaluate_checkpoint", "evaluate_model", "evaluate_on_test",
    "load_published", "load_trained", "lr_factor",
    "make_loaders", "make_optimizer", "parameter_groups", "restore_run", "save_run", "set_backbone_frozen",
    "setup_runtime", "train", "train_one_epoch",
]
