"""The ``plugattn`` command line."""

from __future__ import annotations

import torch
import typer
from rich.console import Console
from rich.table import Table

from plugattn.blocks import attention_options, create_attention, find_gates, list_attention
from plugattn.profiling import count_macs, count_parameters

app = typer.Typer(help="Plug-and-play channel and spatial attention (SE, CBAM) for PyTorch.", no_args_is_help=True)


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


@app.command()
def blocks(
    shape: str = typer.Option("64x32x32", "--shape", help="Feature map C x H x W (or C x L, C x D x H x W)."),
    reduction: int = typer.Option(16, help="Reduction ratio r of every block."),
    seed: int = typer.Option(0, help="Seed for the weights and the sample input."),
) -> None:
    """Every registered block on one sample feature map: cost, output shape and the attention it computes."""
    channels, *spatial = parse_shape(shape, argument="--shape")
    if not spatial:
        raise typer.BadParameter("needs at least one spatial size, e.g. 64x32x32", param_hint="--shape")
    torch.manual_seed(seed)
    x = torch.randn(1, channels, *spatial)
    table = Table(title=f"plugattn blocks on a (1, {', '.join(map(str, (channels, *spatial)))}) feature map, r={reduction}")
    for column in ("block", "params", "MACs", "output shape", "channel weights min/mean/max", "spatial map min/mean/max"):
        table.add_column(column, justify="left" if column in ("block", "output shape") else "right")
    for name in list_attention():
        wanted = {"dims": len(spatial), "reduction": reduction}
        accepted = attention_options(name)
        options = {key: value for key, value in wanted.items() if accepted is None or key in accepted}
        block = create_attention(name, channels, **options).eval()
        recorded: dict[str, torch.Tensor] = {}
        handles = [
            gate.register_forward_hook(lambda module, args, output: recorded.__setitem__(module.kind, output))
            for _, gate in find_gates(block)
        ]
        out = block(x)
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
    Console().print(table)
