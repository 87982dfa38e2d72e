"""ChannelGate, SpatialGate and CBAM against the naive reference, by hand, and with gradcheck."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from plugattn import CBAM, ChannelGate, SpatialGate
from plugattn.blocks import global_pool
from tests.blocks import naive

POOLS = ["avg", "max", "lp", "lse"]
ALL_POOL_SUBSETS = [c for k in range(1, 5) for c in itertools.combinations(POOLS, k)]
SHAPES = {1: (2, 32, 19), 2: (2, 32, 9, 11), 3: (2, 32, 4, 5, 6)}


def _fc(gate: ChannelGate):
    return gate.mlp[1].weight, gate.mlp[1].bias, gate.mlp[3].weight, gate.mlp[3].bias


def _randomise_bn(bn: torch.nn.Module) -> None:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("pool_types", ALL_POOL_SUBSETS + [("max", "avg"), ("lse", "lp", "avg")], ids=str)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_channel_gate_matches_naive_for_every_pool_combination(pool_types, dims):
    torch.manual_seed(0)
    gate = ChannelGate(32, 8, pool_types=pool_types)
    x = torch.randn(SHAPES[dims])
    expected = x * naive.expand(naive.channel_attention(x, *_fc(gate), pool_types), x)
    torch.testing.assert_close(gate(x), expected, atol=1e-6, rtol=0)


def test_lp_pool_is_sqrt_of_sum_of_squares_like_lp_pool2d():
    x = torch.randn(3, 5, 6, 7)
    by_hand = x.pow(2).sum((2, 3)).sqrt()
    torch.testing.assert_close(global_pool(x, "lp"), by_hand)
    torch.testing.assert_close(global_pool(x, "lp"), F.lp_pool2d(x, 2, (6, 7)).flatten(1))


def test_lse_pool_stays_finite_where_the_naive_formula_overflows():
    x = torch.full((1, 4, 3, 3), 1e4)
    assert torch.isinf(x.exp().sum((2, 3)).log()).all()  # the unstable formula fails here
    torch.testing.assert_close(global_pool(x, "lse"), torch.full((1, 4), 1e4 + torch.log(torch.tensor(9.0)).item()))
    out = ChannelGate(4, 1, pool_types=("lse",))(x)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("dims", "kernel_size"), [(1, 7), (2, 7), (2, 3), (3, 3), (2, 1)])
def test_spatial_gate_matches_naive(dims, kernel_size, training):
    torch.manual_seed(0)
    gate = SpatialGate(kernel_size, dims=dims)
    _randomise_bn(gate.spatial.bn)
    gate.train(training)
    x = torch.randn(SHAPES[dims])
    expected = x * naive.spatial_attention(x, gate.spatial.conv.weight, gate.spatial.bn)
    torch.testing.assert_close(gate(x), expected, atol=1e-6, rtol=0)


def test_spatial_gate_max_comes_before_mean():
    gate = SpatialGate(1)
    with torch.no_grad():
        gate.spatial.conv.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))  # keep channel 0 only
    gate.eval()
    x = torch.randn(2, 6, 4, 4)
    expected_logits = x.amax(1, keepdim=True) / (1 + gate.spatial.bn.eps) ** 0.5
    torch.testing.assert_close(gate.spatial_map(x), torch.sigmoid(expected_logits))


def test_spatial_batchnorm_uses_official_eps_and_momentum():
    gate = SpatialGate()
    bn = gate.spatial.bn
    assert (bn.eps, bn.momentum) == (1e-5, 0.01)
    x = torch.randn(4, 8, 6, 6)
    conv_out = F.conv2d(torch.cat((x.amax(1, keepdim=True), x.mean(1, keepdim=True)), 1), gate.spatial.conv.weight, padding=3)
    gate.train()(x)
    torch.testing.assert_close(bn.running_mean, 0.01 * conv_out.mean((0, 2, 3)))


@pytest.mark.parametrize("order", ["channel-spatial", "spatial-channel", "parallel"])
@pytest.mark.parametrize("spatial", [True, False])
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_cbam_matches_naive(order, spatial, dims):
    torch.manual_seed(0)
    block = CBAM(32, 8, spatial=spatial, order=order, dims=dims, pool_types=("avg", "max", "lse"))
    if spatial:
        _randomise_bn(block.spatial_gate.spatial.bn)
    block.eval()
    x = torch.randn(SHAPES[dims])
    torch.testing.assert_close(block(x), naive.cbam(x, block, order), atol=1e-6, rtol=0)


def test_cbam_orders_really_differ():
    torch.manual_seed(0)
    block = CBAM(16, 4).eval()
    x = torch.randn(2, 16, 8, 8)
    outputs = []
    for order in ("channel-spatial", "spatial-channel", "parallel"):
        block.order = order
        outputs.append(block(x))
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[0], outputs[2])


def test_parameter_counts_by_hand():
    # MLP 256 -> 16 -> 256 with biases, conv 2x7x7 without bias, BN weight + bias
    assert sum(p.numel() for p in CBAM(256, 16).parameters()) == (256 * 16 + 16 + 16 * 256 + 256) + 2 * 49 + 2
    assert sum(p.numel() for p in CBAM(256, 16, spatial=False).parameters()) == 256 * 16 + 16 + 16 * 256 + 256
    assert sum(p.numel() for p in SpatialGate(3, dims=3).parameters()) == 2 * 27 + 2
    assert ChannelGate(8, 16).mlp[1].weight.shape == (1, 8)  # hidden width never 0


def test_state_dict_keys_follow_the_official_layout():
    keys = set(CBAM(64, 16).state_dict())
    assert {
        "channel_gate.mlp.1.weight", "channel_gate.mlp.1.bias", "channel_gate.mlp.3.weight", "channel_gate.mlp.3.bias",
        "spatial_gate.spatial.conv.weight", "spatial_gate.spatial.bn.weight", "spatial_gate.spatial.bn.bias",
        "spatial_gate.spatial.bn.running_mean", "spatial_gate.spatial.bn.running_var",
        "spatial_gate.spatial.bn.num_batches_tracked",
    } == keys
    assert CBAM(64, 16).spatial_gate.spatial.conv.weight.shape == (1, 2, 7, 7)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ChannelGate(6, 2, pool_types=("avg", "max", "lp", "lse")),
        lambda: SpatialGate(3),
        lambda: CBAM(6, 2, kernel_size=3),
        lambda: CBAM(6, 2, kernel_size=3, order="parallel", dims=1),
    ],
    ids=["channel", "spatial", "cbam", "cbam-parallel-1d"],
)
def test_gradcheck(make):
    torch.manual_seed(0)
    block = make().double().eval()
    shape = (2, 6, 5) if getattr(block, "dims", 2) == 1 else (2, 6, 4, 5)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
