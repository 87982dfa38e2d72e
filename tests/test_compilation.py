"""plugattn.compile: regions compiled in place and shared between blocks of one shape, a recompilation limit that
covers every block's shapes and modes without touching the process's, an eager fallback where the compiler fails,
and the compile modes of optimize(), TrainConfig and the CLI."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

import plugattn
from plugattn.cli.parsing import bare_flags_with_values
from plugattn.compilation import compile_mode, compiled_regions, uncompile
from plugattn.training import TrainConfig


class CountingBackend:
    """A dynamo backend that runs the captured graph as it is and counts graphs compiled and graph calls."""

    def __init__(self) -> None:
        self.graphs = 0
        self.calls = 0

    def __call__(self, graph, example_inputs):
        self.graphs += 1

        def run(*args):
            self.calls += 1
            return graph.forward(*args)

        return run


def _cbam20() -> torch.nn.Module:
    torch.manual_seed(0)
    return plugattn.create_model("cbam_resnet20", reduction=4)


def test_every_block_runs_compiled_in_every_mode_and_shape_without_exhausting_dynamo():
    """9 blocks of 3 shapes, each in evaluation without and with autograd and in training: 9 graphs, more than
    dynamo's default limit of 8 per function — every call still runs a compiled graph, and the process's own
    limit is unchanged."""
    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    backend = CountingBackend()
    model = plugattn.compile(_cbam20().eval(), backend=backend)
    blocks = len(compiled_regions(model))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)
    model(x)
    model.train()(x).sum().backward()
    assert backend.graphs == 9 and backend.calls == 3 * blocks
    assert torch._dynamo.config.recompile_limit == limit


def test_regions_are_the_blocks_or_their_units_and_compile_in_place():
    model = _cbam20()
    keys = list(model.state_dict())
    assert [name for name, _ in compiled_regions(model)][:2] == ["layer1.0.attention", "layer1.1.attention"]
    assert [name for name, _ in compiled_regions(model, units=True)][:2] == ["layer1.0", "layer1.1"]
    assert plugattn.compile(model, backend="eager") is model and list(model.state_dict()) == keys
    assert uncompile(model) is model
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())
    attached = plugattn.attach(torchvision.models.resnet18(num_classes=3), "se", stages=(4,))
    assert [name for name, _ in compiled_regions(attached)] == ["layer4.0.attention", "layer4.1.attention"]


def test_a_region_the_compiler_cannot_handle_warns_and_runs_eagerly():
    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler here")

    torch._dynamo.reset()
    model = _cbam20().eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    plugattn.compile(model, backend=broken)
    with pytest.warns(UserWarning, match="could not be compiled .RuntimeError: no C\\+\\+ compiler here.; it runs eagerly"):
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_modes_and_bad_input():
    assert [compile_mode(v) for v in (True, False, None, "none", "regional", "full")] == \
        ["full", "none", "none", "none", "regional", "full"]
    with pytest.raises(ValueError, match=r"compile must be one of \['none', 'regional', 'full'\].*got 'fast'"):
        compile_mode("fast")
    with pytest.raises(ValueError, match="no attention blocks to compile regionally; .* mode='full'"):
        plugattn.compile(plugattn.create_model("resnet20"))
    with pytest.raises(TypeError, match="model must be an nn.Module, got str"):
        plugattn.compile("resnet20")
    plain = plugattn.create_model("resnet20")
    assert plugattn.compile(plain, "none") is plain
    with pytest.raises(ValueError, match="compile must be one of"):
        TrainConfig(compile="always").validate()
    TrainConfig(compile=True).validate()  # as checkpoints stored it before the modes
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimized = plugattn.optimize(_cbam20().eval(), torch.randn(1, 3, 32, 32), compile="regional")
    assert compiled_regions(optimized) and optimized is not None


def test_a_bare_compile_flag_means_full():
    assert bare_flags_with_values(["train", "--compile"], {"--compile": "full"}) == ["train", "--compile", "full"]
    assert bare_flags_with_values(["train", "--compile", "--epochs", "1"], {"--compile": "full"}) == \
        ["train", "--compile", "full", "--epochs", "1"]
    assert bare_flags_with_values(["train", "--compile", "regional"], {"--compile": "full"}) == \
        ["train", "--compile", "regional"]
