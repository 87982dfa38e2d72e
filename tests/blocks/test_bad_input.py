"""Every bad argument and bad input named in the foundation issue raises a clear, specific error."""

import pytest
import torch

from plugattn import CBAM, ChannelGate, SpatialGate, SqueezeExcite

BAD_ARGUMENTS = [
    (lambda: SqueezeExcite(0), ValueError, ["channels", ">= 1", "0"]),
    (lambda: SqueezeExcite(-4), ValueError, ["channels", "-4"]),
    (lambda: SqueezeExcite(64.0), TypeError, ["channels", "int", "float"]),
    (lambda: CBAM("64"), TypeError, ["channels", "int", "str"]),
    (lambda: ChannelGate(True), TypeError, ["channels", "bool"]),
    (lambda: SqueezeExcite(64, 0), ValueError, ["reduction", "0"]),
    (lambda: ChannelGate(64, -1), ValueError, ["reduction", "-1"]),
    (lambda: CBAM(64, 0), ValueError, ["reduction", "0"]),
    (lambda: SqueezeExcite(64, squeeze="mean"), ValueError, ["squeeze", "'avg'", "'max'", "'mean'"]),
    (lambda: SqueezeExcite(64, gate="softmax"), ValueError, ["gate", "'sigmoid'", "'softmax'"]),
    (lambda: ChannelGate(64, pool_types=("avg", "median")), ValueError, ["pool_types", "'lse'", "'median'"]),
    (lambda: CBAM(64, pool_types=("max", "l2")), ValueError, ["pool_types", "'l2'"]),
    (lambda: ChannelGate(64, pool_types=()), ValueError, ["pool_types", "empty"]),
    (lambda: ChannelGate(64, pool_types=("avg", "avg")), ValueError, ["pool_types", "repeat", "avg"]),
    (lambda: ChannelGate(64, pool_types=3), TypeError, ["pool_types", "3"]),
    (lambda: CBAM(64, order="channel-first"), ValueError, ["order", "'parallel'", "'channel-first'"]),
    (lambda: SpatialGate(4), ValueError, ["kernel_size", "odd", "4"]),
    (lambda: SpatialGate(0), ValueError, ["kernel_size", "0"]),
    (lambda: CBAM(64, kernel_size=6), ValueError, ["kernel_size", "odd", "6"]),
    (lambda: CBAM(64, kernel_size=6, spatial=False), ValueError, ["kernel_size", "6"]),
    (lambda: SpatialGate(7, dims=4), ValueError, ["dims", "1", "3", "4"]),
    (lambda: CBAM(64, dims=0), ValueError, ["dims", "0"]),
]


@pytest.mark.parametrize(("make", "error", "fragments"), BAD_ARGUMENTS, ids=lambda v: None)
def test_bad_arguments(make, error, fragments):
    with pytest.raises(error) as caught:
        make()
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))


BAD_INPUTS = [
    (lambda: SqueezeExcite(16), torch.randn(2, 8, 4, 4), ValueError, ["SqueezeExcite", "16 channels", "8 channels", "[2, 8, 4, 4]"]),
    (lambda: ChannelGate(16), torch.randn(2, 8, 4), ValueError, ["ChannelGate", "16", "8", "[2, 8, 4]"]),
    (lambda: CBAM(16), torch.randn(2, 12, 4, 4), ValueError, ["CBAM", "16 channels", "12 channels"]),
    (lambda: SqueezeExcite(16), torch.randn(2, 16), ValueError, ["rank >= 3", "rank 2", "[2, 16]"]),
    (lambda: CBAM(16), torch.randn(2, 16, 4, 4, 4), ValueError, ["dims=2", "rank 4", "rank 5"]),
    (lambda: CBAM(16, dims=1), torch.randn(2, 16, 4, 4), ValueError, ["dims=1", "rank 3", "rank 4"]),
    (lambda: SpatialGate(dims=3), torch.randn(2, 16, 4, 4), ValueError, ["SpatialGate", "rank 5", "rank 4"]),
    (lambda: SqueezeExcite(4), torch.ones(2, 4, 3, 3, dtype=torch.int64), TypeError, ["floating-point", "torch.int64"]),
    (lambda: CBAM(4, 1), torch.ones(2, 4, 3, 3, dtype=torch.uint8), TypeError, ["CBAM", "torch.uint8"]),
    (lambda: SpatialGate(), torch.ones(2, 4, 3, 3, dtype=torch.int32), TypeError, ["torch.int32"]),
]


@pytest.mark.parametrize(("make", "x", "error", "fragments"), BAD_INPUTS, ids=lambda v: None)
def test_bad_inputs(make, x, error, fragments):
    with pytest.raises(error) as caught:
        make()(x)
    for fragment in fragments:
        assert fragment in str(caught.value), (fragment, str(caught.value))
