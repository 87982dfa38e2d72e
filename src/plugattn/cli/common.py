"""What every command shares: the typer app, a console, error reporting, and the options several commands take."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugattn.extras import require

typer = require("typer", "cli")
require("rich", "cli")
from rich.console import Console  # noqa: E402  (after the check that names the extra)
from rich.text import Text  # noqa: E402

if TYPE_CHECKING:
    from plugattn.training import TrainConfig

app = typer.Typer(help="Plug-and-play channel and spatial attention (SE, CBAM) for PyTorch.", no_args_is_help=True)


def console(*, stderr: bool = False) -> Console:
    """A console that prints text verbatim: no rich markup, so bracketed lists and paths in messages survive."""
    return Console(stderr=stderr, markup=False, highlight=False)


def parse_shape(text: str, *, argument: str) -> tuple[int, ...]:
    """Parse ``"64x32x32"`` into ``(64, 32, 32)``, naming ``argument`` when the text is malformed."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if not shape or any(size < 1 for size in shape):
        raise typer.BadParameter(f"expected sizes joined by 'x' such as 64x32x32, got {text!r}", param_hint=argument)
    return shape


def _summarise(values: torch.Tensor) -> str:
    return f"{values.min():.3f} / {values.mean():.3f} / {values.max():.3f}"


@app.callback()
def main_options() -> None:
    """Plug-and-play channel and spatial attention (SE, CBAM) for PyTorch."""


# Model options shared by `profile`, `train` and `sweep`.
MODEL_OPTION = typer.Option("resnet20", help="Zoo name (plugattn.list_models()), torchvision:NAME, timm:NAME or "
                            "package.module:factory (your own builder).")
WEIGHTS_OPTION = typer.Option(None, help="Weights to start from (torchvision, timm, plugattn or any layout "
                              "load_pretrained reads); the classifier is replaced for the data set's classes.")
WHERE_OPTION = typer.Option("residual", help="Where attention goes: residual, a glob over module names, re:REGEX, "
                            "or comma-separated names (see plugattn.insertion_points).")
SPEC_OPTION = typer.Option(None, "--model", help="Instead of a checkpoint: a zoo name, torchvision:NAME, timm:NAME or "
                           "package.module:factory, with --weights.")
INIT_OPTION = typer.Option(None, help="How inserted blocks start: identity (x + a*(block(x) - x), a from 0), "
                           "identity-boost (the same, a learning 10x faster), zero-sigmoid / zero-tanh (gate logits "
                           "from zero, gates 2*sigmoid / 1+tanh: exactly 1), or paper; default: identity-boost when "
                           "--weights are loaded and attention is inserted, else paper.")
NORMALIZE_OPTION = typer.Option(None, help="weights (the statistics, and for image folders the eval resize/crop and "
                                "interpolation, the weights were trained with), dataset (the data set's own) or "
                                "MEAN,STD numbers (2, or C means then C stds); default: weights when --weights are "
                                "given, else dataset.")


AUGMENT_OPTION = typer.Option("cifar", help="cifar (pad-crop + flip), imagenet (RandomResizedCrop + flip; Resize + "
                             "CenterCrop to evaluate; streams the folder) or none.")
IMAGE_SIZE_OPTION = typer.Option(None, help="Square input size for imagefolder data (shorter side resized, then cropped).")

# Fine-tuning options shared by `train` and `sweep`.
ATTENTION_LR_MULT_OPTION = typer.Option(1.0, help="Learning rate of the attention blocks relative to --lr.")
FREEZE_OPTION = typer.Option(0, help="Epochs at the start during which only attention and classifier train "
                             "(backbone BatchNorms keep their statistics).")
EMA_OPTION = typer.Option(None, help="Keep an exponential moving average of the weights with this decay (e.g. 0.999); "
                          "evaluated every epoch as ema_test_top1.")

# Optimiser and schedule options shared by `train` and `sweep`.
OPTIMIZER_OPTION = typer.Option("sgd", help="sgd (with momentum) or adamw.")
MOMENTUM_OPTION = typer.Option(0.9)
NESTEROV_OPTION = typer.Option(True, help="Nesterov momentum for sgd; --no-nesterov as He et al. trained.")
WEIGHT_DECAY_OPTION = typer.Option(5e-4)
WARMUP_EPOCHS_OPTION = typer.Option(0.0)
MILESTONES_OPTION = typer.Option("30,60,90", help="Epochs at which the step schedule divides the lr by 10.")
LABEL_SMOOTHING_OPTION = typer.Option(0.0)
SCHEDULE_OPTION = typer.Option("cosine", help="cosine, step (x0.1 at each of --milestones) or constant.")

# Paired data (multi-stream networks) options of `train` and `sweep`.
FUSION_OPTION = typer.Option(None, help="Paired data: early (modalities stacked as input channels), mmtm, se-sum, "
                             "gated-sum or concat (fusion blocks at --fusion-stages); default none: late fusion alone.")
FUSION_STAGES_OPTION = typer.Option(None, help="Where fusion blocks sit, e.g. 2,3: after layerN (zoo, torchvision), "
                                    "timm feature_info entry N, or module names.")
FUSION_ATTENTION_OPTION = typer.Option("se", help="The block over the stacked inputs (early) or concatenated maps "
                                       "(concat): se, cbam, … (any registry name) or none.")
FUSION_OPTION_OPTION = typer.Option(None, "--fusion-option", help="Fusion block option key=value (repeatable), e.g. "
                                    "gate=2sigmoid (MMTM), ratio=8, reduction=8.")
LATE_OPTION = typer.Option("average", help="How the streams end: average (mean of their logits) or concat (features "
                           "concatenated, one classifier).")


def _fail(error: Exception, hint: str | None = None) -> typer.Exit:
    message = Text("error: ", style="bold red")
    message.append(f"{error}" + (f"\n{hint}" if hint else ""))
    console(stderr=True).print(message)
    return typer.Exit(2)


def _train_config(**values: object) -> "TrainConfig":
    from plugattn.cli.parsing import parse_int_list, parse_options, parse_where
    from plugattn.training import TrainConfig

    values["stages"] = parse_int_list(values.pop("stages"), "--stages")
    if "fusion_stages" in values:
        values["fusion"] = None if values["fusion"] in (None, "none") else values["fusion"]
        stages = values["fusion_stages"] or ""
        values["fusion_stages"] = [int(s) if s.strip().isdigit() else s.strip() for s in stages.split(",") if s.strip()]
        values["fusion_attention"] = None if values["fusion_attention"] in (None, "none") else values["fusion_attention"]
        values["fusion_options"] = parse_options(values.pop("fusion_option", None) or [])
    values["milestones"] = parse_int_list(values["milestones"], "--milestones") or []
    values["block_options"] = parse_options(values.pop("option") or [])
    values["attention"] = None if values["attention"] in (None, "none") else values["attention"]
    if isinstance(values.get("where"), str):
        values["where"] = parse_where(values["where"])
    return TrainConfig(**values)
