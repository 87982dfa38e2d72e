"""Reduced precision, TorchScript and torch.compile for every block."""

import pytest
import torch

from plugattn import CBAM, ChannelGate, SpatialGate, SqueezeExcite

BLOCKS = {
    "se": lambda: SqueezeExcite(32, 8, bias=True),
    "channel": lambda: ChannelGate(32, 8, pool_types=("avg", "max", "lp", "lse")),
    "spatial": lambda: SpatialGate(7),
    "cbam": lambda: CBAM(32, 8),
    "cbam-spatial-channel": lambda: CBAM(32, 8, order="spatial-channel"),
    "cbam-parallel": lambda: CBAM(32, 8, order="parallel"),
    "cbam-channel-only": lambda: CBAM(32, 8, spatial=False),
    "cbam-3d": lambda: CBAM(32, 8, dims=3, kernel_size=3),
}


def _input(block, dtype=torch.float32):
    shape = (2, 32, 3, 6, 6) if getattr(block, "dims", 2) == 3 else (2, 32, 12, 12)
    return torch.randn(shape, dtype=dtype)


@pytest.mark.parametrize("name", BLOCKS)
def test_bf16_autocast_is_finite_and_close(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().eval()
    x = _input(block)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), block(x), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("name", BLOCKS)
def test_float16_inputs_give_finite_outputs(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().eval()
    x = _input(block)
    out = block.half()(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), block.float()(x), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("name", BLOCKS)
def test_torchscript_agrees(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().eval()
    scripted = torch.jit.script(block)
    x = _input(block)
    torch.testing.assert_close(scripted(x), block(x))
    if name == "spatial":
        with pytest.raises(torch.jit.Error, match=r"input must have rank 4, got rank 3"):
            scripted(x[0])
    else:
        with pytest.raises(torch.jit.Error, match=r"built for 32 channels, got input with 3 channels"):
            scripted(x[:, :3])


@pytest.mark.parametrize("name", ["se", "channel", "spatial", "cbam", "cbam-parallel"])
def test_torch_compile_fullgraph_agrees(name):
    torch.manual_seed(0)
    block = BLOCKS[name]().eval()
    compiled = torch.compile(block, fullgraph=True)
    x = _input(block)
    torch.testing.assert_close(compiled(x), block(x), atol=1e-5, rtol=1e-5)
