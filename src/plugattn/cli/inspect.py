"""`blocks` and `profile`: what the blocks and a network cost."""

from __future__ import annotations

import torch
from rich.table import Table

from plugattn.blocks import attention_options, create_attention, find_gates, list_attention
from plugattn.cli.common import WHERE_OPTION, app, console, parse_shape, typer
from plugattn.insertion import without_attention
from plugattn.models import model_entry
from plugattn.profiling import count_macs, count_parameters
from plugattn.profiling import profile as profile_model

def _summarise(values: torch.Tensor) -> str:
    return f"{values.min():.3f} / {values.mean():.3f} / {values.max():.3f}"


@app.command()
def blocks(
    shape: str = typer.Option("64x32x32", "--shape", help="Feature map C x H x W (or C x L, C x D x H x W)."),
    reduction: int = typer.Option(None, help="Reduction ratio r of every block (default: each block's own)."),
    seed: int = typer.Option(0, help="Seed for the weights and the sample input."),
) -> None:
    """Every registered block on one sample feature map: cost, output shape and the attention it computes."""
    channels, *spatial = parse_shape(shape, argument="--shape")
    if not spatial:
        raise typer.BadParameter("needs at least one spatial size, e.g. 64x32x32", param_hint="--shape")
    torch.manual_seed(seed)
    x = torch.randn(1, channels, *spatial)
    ratio = f"r={reduction}" if reduction is not None else "each block's own r"
    table = Table(title=f"plugattn blocks on a (1, {', '.join(map(str, (channels, *spatial)))}) feature map, {ratio}")
    for column in ("block", "params", "MACs", "output shape", "channel weights min/mean/max", "spatial map min/mean/max"):
        table.add_column(column, justify="left" if column in ("block", "output shape") else "right")
    for name in list_attention():
        wanted = {"dims": len(spatial), **({"reduction": reduction} if reduction is not None else {})}
        accepted = attention_options(name)
        options = {key: value for key, value in wanted.items() if accepted is None or key in accepted}
        try:
            block = create_attention(name, channels, **options).eval()
            recorded: dict[str, torch.Tensor] = {}
            handles = [
                gate.register_forward_hook(lambda module, args, output: recorded.__setitem__(module.kind, output))
                for _, gate in find_gates(block)
            ]
            out = block(x)
        except ValueError as error:  # a block whose formula needs another rank (coord, triplet: 2-D maps)
            table.add_row(name, "-", "-", f"not for this map: {str(error).split(';')[0]}", "-", "-")
            continue
        macs = count_macs(block, x)
        for handle in handles:
            handle.remove()
        table.add_row(
            name,
            f"{count_parameters(block):,}",
            f"{macs:,}",
            str(tuple(out.shape)),
            _summarise(recorded["channel"]) if "channel" in recorded else "-",
            _summarise(recorded["spatial"]) if "spatial" in recorded else "-",
        )
    console().print(table)


@app.command()
def profile(
    name: str = typer.Argument(..., help="Zoo model (cbam_resnet50, se_resnet20, resnet50_v1, …), torchvision:NAME, "
                                         "timm:NAME or package.module:factory."),
    attention: str = typer.Option(None, help="Attention to insert (any registry name); zoo se_/cbam_ names carry theirs."),
    where: str = WHERE_OPTION,
    reduction: int = typer.Option(None, help="Reduction ratio r of inserted blocks (default: each block's own)."),
    input: str = typer.Option(None, "--input", help="Sample shape C x H x W; default: the model's natural size "
                              "(3x224x224 outside the zoo)."),
    num_classes: int = typer.Option(None, help="Classifier outputs; default 1000 (ImageNet-style) or 10 (CIFAR-style)."),
    rounds: int = typer.Option(5, help="Timed rounds per batch size (median reported)."),
    batch_sizes: str = typer.Option("1,8", help="Comma-separated batch sizes for latency."),
    latency: bool = typer.Option(True, help="Measure latency against the same model without attention."),
) -> None:
    """Parameters, MACs (conv + linear multiply-accumulates, the papers' "FLOPs"), the attention's share, and
    latency relative to the same network without attention, measured in one run."""
    from plugattn.cli.parsing import parse_where
    from plugattn.recipe import ModelRecipe, build_model

    zoo = ":" not in name
    try:
        classes = num_classes or (model_entry(name).default_classes if zoo else 1000)
        recipe = ModelRecipe(model=name, attention=attention, reduction=reduction,
                             where=parse_where(where))
        model, _ = build_model(recipe, num_classes=classes)
    except (TypeError, ValueError) as error:
        raise typer.BadParameter(str(error), param_hint="NAME") from error
    natural = model_entry(name).input_size if zoo else (3, 224, 224)
    shape = parse_shape(input, argument="--input") if input else natural
    try:
        sizes = tuple(int(size) for size in batch_sizes.split(","))
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated ints such as 1,8, got {batch_sizes!r}", param_hint="--batch-sizes") from None
    torch.manual_seed(0)
    report = profile_model(
        model, shape, baseline=without_attention(model) if latency else None, batch_sizes=sizes, rounds=rounds
    )
    table = Table(title=f"{name} on {'x'.join(map(str, shape))} (MACs: conv + linear multiply-accumulates)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("parameters", f"{report.params / 1e6:.3f} M")
    table.add_row("MACs", f"{report.macs / 1e9:.4f} G")
    table.add_row("attention blocks", str(report.attention_blocks))
    table.add_row("attention parameters", f"{report.attention_params / 1e6:.3f} M ({report.attention_param_share:.2%})")
    table.add_row("attention MACs", f"{report.attention_macs / 1e6:.3f} M ({report.attention_mac_share:.3%})")
    for batch_size in report.latency_ms:
        table.add_row(
            f"latency, batch {batch_size}",
            f"{report.latency_ms[batch_size]:.1f} ms vs {report.baseline_latency_ms[batch_size]:.1f} ms plain "
            f"(x{report.latency_ratio(batch_size):.3f})",
        )
    console().print(table)
    if report.latency_ms:
        console().print(f"threads: {torch.get_num_threads()}; median of {rounds} interleaved rounds")
