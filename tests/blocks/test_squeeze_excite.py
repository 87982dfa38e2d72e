"""SqueezeExcite against the naive reference, the seed's SELayer, hand-counted parameters and gradcheck."""

import itertools

import pytest
import torch

from plugattn import SqueezeExcite
from tests.blocks import naive

SHAPES = [(2, 32, 17), (2, 32, 9, 7), (2, 32, 3, 5, 4)]


def _weights(block: SqueezeExcite):
    fc = block.fc
    return fc[0].weight, fc[0].bias, fc[2].weight, fc[2].bias


@pytest.mark.parametrize("shape", SHAPES, ids=["1d", "2d", "3d"])
@pytest.mark.parametrize(("squeeze", "gate", "bias"), list(itertools.product(["avg", "max"], ["sigmoid", "tanh", "relu"], [False, True])))
def test_matches_naive_reference(shape, squeeze, gate, bias):
    torch.manual_seed(0)
    block = SqueezeExcite(32, 4, squeeze=squeeze, gate=gate, bias=bias)
    x = torch.randn(shape)
    expected = naive.squeeze_excite(x, *_weights(block), squeeze=squeeze, gate=gate)
    torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=0)


def test_loads_the_seed_selayer_checkpoint_and_agrees():
    torch.manual_seed(0)
    seed_layer = naive.SeedSELayer(64, 16)
    block = SqueezeExcite(64, 16)
    block.load_state_dict(seed_layer.state_dict(), strict=True)
    x = torch.randn(3, 64, 8, 8)
    torch.testing.assert_close(block(x), seed_layer(x), atol=1e-6, rtol=0)


def test_parameter_counts_by_hand():
    assert sum(p.numel() for p in SqueezeExcite(256, 16).parameters()) == 2 * 256 * 16 == 8192
    # the papers' SE: W1 (16x256) + b1 (16) + W2 (256x16) + b2 (256)
    assert sum(p.numel() for p in SqueezeExcite(256, 16, bias=True).parameters()) == 8192 + 16 + 256


def test_hidden_width_never_zero():
    block = SqueezeExcite(8, 16)
    assert block.fc[0].weight.shape == (1, 8)
    assert block(torch.randn(2, 8, 3, 3)).shape == (2, 8, 3, 3)


def test_output_is_input_times_channel_weights():
    torch.manual_seed(1)
    block = SqueezeExcite(16, 4)
    x = torch.randn(2, 16, 5, 5)
    weights = block.channel_weights(x)
    assert weights.shape == (2, 16) and bool(((weights > 0) & (weights < 1)).all())
    torch.testing.assert_close(block(x), x * weights[:, :, None, None])


@pytest.mark.parametrize("squeeze", ["avg", "max"])
def test_gradcheck(squeeze):
    torch.manual_seed(0)
    block = SqueezeExcite(8, 2, squeeze=squeeze, bias=True).double()
    x = torch.randn(2, 8, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


def test_device_and_dtype_factory_arguments():
    block = SqueezeExcite(16, 4, bias=True, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in block.parameters()} == {torch.float64}
