"""`export` and `convert`: models out to ONNX/TorchScript, published weights in."""

from __future__ import annotations

import pathlib

from plugattn.cli.common import _fail, app, console, parse_shape, typer
from plugattn.models import create_model, model_entry

@app.command()
def export(
    source: str = typer.Argument(..., help="Zoo model name (random weights) or a checkpoint from `plugattn train`."),
    onnx: str = typer.Option(None, "--onnx", help="Write an ONNX file here (dynamic batch), checked with ONNX Runtime."),
    torchscript: str = typer.Option(None, "--torchscript", help="Write a TorchScript file here."),
    input: str = typer.Option(None, "--input", help="Sample shape C x H x W (default: the model's)."),
    opset: int = typer.Option(18, help="ONNX opset (>= 17)."),
) -> None:
    """Export a model to ONNX (verified against PyTorch in ONNX Runtime) and/or TorchScript."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.data import DataError
    from plugattn.export import export_onnx, script_model
    from plugattn.training import load_trained

    if not onnx and not torchscript:
        raise typer.BadParameter("give --onnx PATH and/or --torchscript PATH", param_hint="--onnx")
    import json

    try:
        recorded: dict[str, str] = {}
        if pathlib.Path(source).is_file():
            model, data, _, meta = load_trained(source)
            shape = (data.in_channels, *data.image_size)
            if meta.get("preprocessing"):  # what a deployment must do to its inputs, carried in the exported file
                recorded = {"plugattn.preprocessing": json.dumps(meta["preprocessing"])}
                console().print(f"inputs: {data.image_size[0]}x{data.image_size[1]}, normalised with mean "
                                f"{list(data.mean)} and std {list(data.std)} ({meta['preprocessing']['source']}); "
                                "recorded in the exported files")
        else:
            model, shape = create_model(source), model_entry(source).input_size
        shape = parse_shape(input, argument="--input") if input else shape
        if onnx:
            report = export_onnx(model, onnx, shape, opset=opset, metadata=recorded)
            differences = ", ".join(f"batch {b}: {d:.2e}" for b, d in report.max_abs_difference.items())
            console().print(f"{onnx}: opset {opset}, dynamic batch; ONNX Runtime vs PyTorch max |difference| {differences}")
        if torchscript:
            extra = {"preprocessing.json": recorded["plugattn.preprocessing"]} if recorded else {}
            script_model(model).save(torchscript, _extra_files=extra)
            console().print(f"{torchscript}: TorchScript")
    except (DataError, CheckpointError, ValueError, TypeError) as error:
        raise _fail(error) from None


@app.command()
def convert(
    source: str = typer.Argument(..., help="Weights file: safetensors, or a torch file (loaded with weights_only=True)."),
    destination: str = typer.Argument(..., help="Output safetensors file in plugattn's layout."),
    layout: str = typer.Option(None, "--from", help="cbam-official, senet.pytorch, cadene, timm, torchvision, plugattn (default: detect)."),
) -> None:
    """Convert published SE/CBAM weights to plugattn's layout."""
    from plugattn.checkpoint import CheckpointError
    from plugattn.interop import convert_file, describe_architecture

    try:
        detected, architecture = convert_file(source, destination, layout=layout)
    except (CheckpointError, ValueError) as error:
        raise _fail(error) from None
    console().print(f"{destination}: converted from layout {detected!r}"
                    + (f"; load it into a model with {describe_architecture(architecture)}" if architecture else ""))
