"""The attention family after SE and CBAM (BAM, ECA, Coordinate Attention, SimAM, Triplet, GC, scSE): each block
against a naive reference written from its formula (every option, float32 ≤ 1e-6) and against a re-implementation
of its official code's structure with the official parameter names (float64), parameter counts by hand,
gradients to second order, BatchNorm statistics as the official code keeps them, and bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from plugattn import create_attention
from plugattn.blocks.bam import BAM
from plugattn.blocks.coordinate import CoordinateAttention
from plugattn.blocks.eca import ECA, eca_kernel_size
from plugattn.blocks.global_context import GlobalContext
from plugattn.blocks.scse import SCSE
from plugattn.blocks.simam import SimAM
from plugattn.blocks.triplet import TripletAttention
from tests.blocks import family_references as ref

FAMILY = ("bam", "eca", "coord", "simam", "triplet", "gc", "scse")


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


def _random(module: nn.Module, seed: int = 0) -> nn.Module:
    return ref.randomise(module, torch.Generator().manual_seed(seed)).eval()


def _close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = 1e-6) -> None:
    """Equal within ``tolerance`` at the output's own scale (its largest magnitude, at least 1)."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, atol=tolerance * scale, rtol=0)


# ---------------------------------------------------------------- naive references, every option


@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (2, 128, 11), (1, 48, 3, 4, 5)])
@pytest.mark.parametrize("kernel_size", [None, 3, 7])
def test_eca_matches_its_formula(shape, kernel_size):
    block = _random(ECA(shape[1], kernel_size))
    x = torch.randn(shape)
    _close(block(x), ref.naive_eca(x, block.conv.weight))
    assert block.kernel_size == (kernel_size or ref.kernel_size_by_hand(shape[1]))


@pytest.mark.parametrize(("channels", "expected"), [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_rule_breaks_ties_upwards_as_the_official_code(channels, expected):
    assert eca_kernel_size(channels) == expected == ref.kernel_size_by_hand(channels)


@pytest.mark.parametrize("shape", [(2, 8, 9, 7), (3, 5, 17), (1, 4, 3, 4, 5)])
@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
def test_simam_matches_its_formula(shape, e_lambda):
    x = torch.randn(shape)
    _close(SimAM(shape[1], e_lambda)(x), ref.naive_simam(x, e_lambda))


def test_simam_on_one_position_is_finite_where_the_official_code_is_not():
    x = torch.randn(2, 8, 1, 1)
    assert torch.isnan(ref.OfficialSimAM()(x)).all()
    _close(SimAM(8)(x), x * torch.sigmoid(torch.tensor(0.5)))


@pytest.mark.parametrize("pooling", ["att", "avg"])
@pytest.mark.parametrize("fusion", [("add",), ("mul",), ("add", "mul")])
@pytest.mark.parametrize("shape", [(2, 32, 6, 5), (2, 32, 9), (1, 32, 2, 3, 4)])
def test_global_context_matches_its_formula(pooling, fusion, shape):
    block = _random(GlobalContext(shape[1], 1 / 8, pooling=pooling, fusion=fusion, dims=len(shape) - 2))
    x = torch.randn(shape)
    _close(block(x), ref.naive_global_context(x, block.state_dict(), pooling, fusion))


def test_global_context_starts_as_the_identity_with_addition():
    block = GlobalContext(64).eval()
    x = torch.randn(2, 64, 7, 7)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("combine", ["max", "add"])
@pytest.mark.parametrize("shape", [(2, 16, 6, 5), (2, 16, 9), (1, 16, 2, 3, 4)])
def test_scse_matches_its_formula(combine, shape):
    block = _random(SCSE(shape[1], combine=combine, dims=len(shape) - 2))
    x = torch.randn(shape)
    _close(block(x), ref.naive_scse(x, block.state_dict(), combine))


@pytest.mark.parametrize("shape", [(2, 64, 6, 5), (1, 16, 7, 7), (2, 300, 3, 8)])
def test_coordinate_attention_matches_its_formula(shape):
    block = _random(CoordinateAttention(shape[1]))
    x = torch.randn(shape)
    _close(block(x), ref.naive_coordinate(x, block.state_dict()))
    assert block.hidden == max(8, shape[1] // 32)


def test_coordinate_attention_in_3d_gates_each_axis():
    block = _random(CoordinateAttention(16, dims=3))
    x = torch.randn(2, 16, 3, 4, 5)
    weights = block.axis_weights(x)
    assert [tuple(w.shape) for w in weights] == [(2, 16, 3, 1, 1), (2, 16, 1, 4, 1), (2, 16, 1, 1, 5)]
    _close(block(x), ref.naive_coordinate(x, block.state_dict(), ("conv_d", "conv_h", "conv_w")))


@pytest.mark.parametrize("spatial", [True, False])
@pytest.mark.parametrize("shape", [(2, 8, 6, 5), (1, 3, 9, 9)])
def test_triplet_attention_matches_its_formula(spatial, shape):
    block = _random(TripletAttention(shape[1], spatial=spatial))
    x = torch.randn(shape)
    _close(block(x), ref.naive_triplet(x, block.state_dict(), spatial))


@pytest.mark.parametrize("combine", ["sum", "product"])
@pytest.mark.parametrize("shape", [(2, 32, 9, 9), (2, 32, 6, 11)])
def test_bam_matches_its_formula(combine, shape):
    block = _random(BAM(shape[1], combine=combine))
    x = torch.randn(shape)
    _close(block(x), ref.naive_bam(x, block.state_dict(), combine))


# ---------------------------------------------------------------- the official code's structure, mapped weights


def _official_pairs():
    return [
        ("eca", lambda: ECA(64, 5), lambda: ref.OfficialECA(5), None),
        ("simam", lambda: SimAM(64), lambda: ref.OfficialSimAM(), None),
        ("gc", lambda: GlobalContext(64, 1 / 4, fusion=("add", "mul")),
         lambda: ref.OfficialContextBlock(64, 1 / 4, fusion_types=("channel_add", "channel_mul")), None),
        ("gc-avg", lambda: GlobalContext(64, 1 / 16, pooling="avg"), lambda: ref.OfficialContextBlock(64, 1 / 16, "avg"),
         None),
        ("scse", lambda: SCSE(64), lambda: ref.OfficialSCSE(64), None),
        ("scse-smp", lambda: SCSE(64, 16, combine="add"), lambda: ref.SmpSCSE(64),
         {"cSE.1.": "cSE.fc1.", "cSE.3.": "cSE.fc2.", "sSE.0.": "sSE.conv."}),
        ("coord", lambda: CoordinateAttention(64), lambda: ref.OfficialCoordAtt(64), None),
        ("coord-mbv2", lambda: CoordinateAttention(64), lambda: ref.OfficialCoordAtt(64, output_names=("conv2", "conv3")),
         {"conv2.": "conv_h.", "conv3.": "conv_w."}),
        ("triplet", lambda: TripletAttention(64), lambda: ref.OfficialTriplet("current"),
         {f"{b}.conv.": f"{b}.spatial." for b in ("cw", "hc", "hw")}),
        ("triplet-models", lambda: TripletAttention(64), lambda: ref.OfficialTriplet("models"),
         {"ChannelGateH.": "cw.", "ChannelGateW.": "hc.", "SpatialGate.": "hw."}),
        ("bam", lambda: BAM(64, combine="product"), lambda: ref.OfficialBAM(64), None),
    ]


def _linear_conv_state(official: nn.Module, block: nn.Module, names: dict | None) -> None:
    """The official state dict loaded into ``block``: 1×1 convolutions of smp's cSE become Linear weights."""
    state = {}
    for key, value in official.state_dict().items():
        for old, new in (names or {}).items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        target = block.state_dict()[key]
        state[key] = value.reshape(target.shape)
    block.load_state_dict(state, strict=True)


@pytest.mark.parametrize(("name", "ours", "official", "names"), _official_pairs(), ids=[p[0] for p in _official_pairs()])
def test_equals_the_official_code_with_its_weights_in_float64(name, ours, official, names):
    reference = _random(official().double(), seed=3)
    block = ours().double().eval()
    _linear_conv_state(reference, block, names)
    x = torch.randn(2, 64, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference(x), atol=1e-12, rtol=1e-12)


def test_bam_pools_globally_where_the_official_window_only_fits_square_maps():
    reference = _random(ref.OfficialBAM(32).double(), seed=1)
    block = BAM(32, combine="product").double().eval()
    block.load_state_dict(reference.state_dict())
    for shape in ((2, 32, 4, 9), (2, 32, 9, 4)):
        wide = torch.randn(shape, dtype=torch.float64)
        with pytest.raises(RuntimeError):  # a window of the map's height: (1, 2) descriptors, or none at all
            reference(wide)
        with torch.no_grad():
            assert block(wide).shape == shape


# ---------------------------------------------------------------- parameters, gradients, BatchNorm, bad input


@pytest.mark.parametrize(("name", "channels", "options", "expected"), [
    ("eca", 256, {}, 5),
    ("simam", 256, {}, 0),
    ("triplet", 256, {}, 3 * (2 * 49 + 2)),
    ("gc", 256, {}, (256 + 1) + (256 * 16 + 16) + 2 * 16 + (16 * 256 + 256)),
    ("scse", 256, {}, (256 * 128 + 128) + (128 * 256 + 256) + (256 + 1)),
    ("coord", 256, {}, (256 * 8 + 8) + 2 * 8 + 2 * (8 * 256 + 256)),
    ("bam", 256, {}, (256 * 16 + 16) + 2 * 16 + (16 * 256 + 256) + (256 * 16 + 16) + 2 * 16
     + 2 * (16 * 16 * 9 + 16 + 2 * 16) + (16 + 1)),
])
def test_parameter_counts_by_hand(name, channels, options, expected):
    block = create_attention(name, channels, **options)
    assert sum(p.numel() for p in block.parameters()) == expected


_SMALL = {"bam": dict(reduction=4), "coord": dict(min_hidden=2), "gc": dict(ratio=1 / 4, fusion=("add", "mul"))}


@pytest.mark.parametrize("name", FAMILY)
def test_gradcheck_and_gradgradcheck_in_float64(name):
    torch.manual_seed(0)
    block = _random(create_attention(name, 8, **_SMALL.get(name, {})).double(), seed=2)
    x = torch.randn(2, 8, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))
    assert torch.autograd.gradgradcheck(block, (x,))


@pytest.mark.parametrize("name", FAMILY)
def test_half_precisions_finite_on_non_square_maps_and_batch_of_one_in_eval(name):
    block = create_attention(name, 16).eval()
    x = torch.randn(1, 16, 7, 12)
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    for dtype in (torch.bfloat16, torch.float16):
        half = create_attention(name, 16).to(dtype).eval()
        assert torch.isfinite(half(x.to(dtype))).all()


def test_batch_norm_statistics_follow_the_official_momentum():
    triplet = TripletAttention(8).train()
    x = torch.randn(4, 8, 6, 6)
    triplet(x)
    pooled = torch.stack([x.amax(1), x.mean(1)], 1)
    logits = nn.functional.conv2d(pooled, triplet.hw.spatial.conv.weight, padding=3)
    expected = 0.99 * 0 + 0.01 * logits.mean()  # momentum 0.01 as the official BasicConv
    _close(triplet.hw.spatial.bn.running_mean, expected.view(1))
    coord = CoordinateAttention(8).train()
    coord(x)
    assert coord.bn1.momentum == 0.1 and coord.bn1.num_batches_tracked == 1 and coord.bn1.running_mean.abs().sum() > 0


def test_bam_refuses_a_training_batch_of_one_and_takes_it_in_eval():
    block = BAM(32)
    with pytest.raises(ValueError, match="BAM: a training batch of 1 sample"):
        block(torch.randn(1, 32, 8, 8))
    assert block.eval()(torch.randn(1, 32, 8, 8)).shape == (1, 32, 8, 8)


@pytest.mark.parametrize(("make", "error", "match"), [
    (lambda: ECA(64, 4), ValueError, "kernel_size must be odd.*got 4"),
    (lambda: SimAM(64, 0.0), ValueError, r"e_lambda must be a number > 0.*got 0.0"),
    (lambda: GlobalContext(8, 1 / 16), ValueError, r"ratio 0.0625 gives int\(8 \* 0.0625\) = 0 hidden channels"),
    (lambda: CoordinateAttention(64, dims=1), ValueError, "dims must be 2 .* or 3 .* got 1"),
    (lambda: SCSE(64, combine="min"), ValueError, "combine must be one of 'max', 'add'; got 'min'"),
    (lambda: BAM(64, combine="max"), ValueError, "combine must be one of 'sum', 'product'; got 'max'"),
    (lambda: GlobalContext(64, fusion=("add", "cat")), ValueError, "each entry of fusion must be one of"),
])
def test_bad_options_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(("name", "x", "match"), [
    ("coord", torch.randn(2, 16, 9), r"built for dims=2, so input must have rank 4, got rank 3"),
    ("triplet", torch.randn(2, 16, 3, 4, 5), r"built for dims=2, so input must have rank 4, got rank 5"),
    ("eca", torch.randn(2, 8, 4, 4), r"built for 16 channels, got input with 8 channels"),
    ("simam", torch.randn(2, 16), r"input must have rank >= 3"),
])
def test_bad_input_is_named(name, x, match):
    with pytest.raises(ValueError, match=match):
        create_attention(name, 16).eval()(x)
