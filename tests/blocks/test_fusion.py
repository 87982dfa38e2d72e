"""Fusion blocks across modalities: MMTM against an independent re-implementation of the official code's
structure, SE-sum and the gated sum against their formulas, identity insertion, gradients, bad input."""

import pytest
import torch
from torch import nn

from plugattn.blocks import MMTM, ConcatFusion, GatedSum, SESum, create_fusion, list_fusions


class OfficialMMTM(nn.Module):
    """haamoon/mmtm's MMTM written again from its published structure: two streams named visual and skeleton,
    squeezes by ``tensor.view(N, C, -1).mean(-1)``, ``fc_squeeze`` to ``int(2·dim/ratio)``, ReLU, one Linear per
    stream, sigmoid, each stream times its gate viewed to the stream's rank."""

    def __init__(self, dim_visual: int, dim_skeleton: int, ratio: float) -> None:
        super().__init__()
        dim = dim_visual + dim_skeleton
        dim_out = int(2 * dim / ratio)
        self.fc_squeeze = nn.Linear(dim, dim_out)
        self.fc_visual = nn.Linear(dim_out, dim_visual)
        self.fc_skeleton = nn.Linear(dim_out, dim_skeleton)

    def forward(self, visual: torch.Tensor, skeleton: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        squeezed = [t.view(t.shape[:2] + (-1,)).mean(-1) for t in (visual, skeleton)]
        excitation = torch.relu(self.fc_squeeze(torch.cat(squeezed, 1)))
        vis = torch.sigmoid(self.fc_visual(excitation))
        sk = torch.sigmoid(self.fc_skeleton(excitation))
        vis = vis.view(vis.shape + (1,) * (visual.dim() - vis.dim()))
        sk = sk.view(sk.shape + (1,) * (skeleton.dim() - sk.dim()))
        return visual * vis, skeleton * sk


def _mapped(official: OfficialMMTM) -> dict[str, torch.Tensor]:
    """The official state dict under plugattn's names."""
    renames = {"fc_visual": "fc_out.0", "fc_skeleton": "fc_out.1"}
    return {next((new + key[len(old):] for old, new in renames.items() if key.startswith(old)), key): value
            for key, value in official.state_dict().items()}


@pytest.mark.parametrize(("visual_shape", "skeleton_shape"), [
    ((3, 512, 7, 7), (3, 128, 25, 4)),       # the official first placement: layer2 maps and skeleton conv5 maps
    ((3, 2048, 2, 3, 3), (3, 512)),          # a 3-D (video) map against a rank-2 vector, as the third MMTM gates
])
def test_mmtm_equals_the_official_structure_in_float64(visual_shape, skeleton_shape):
    torch.manual_seed(0)
    official = OfficialMMTM(visual_shape[1], skeleton_shape[1], 4).double()
    ours = MMTM([visual_shape[1], skeleton_shape[1]], 4, gate="sigmoid", dtype=torch.float64)
    ours.load_state_dict(_mapped(official))
    assert ours.hidden == official.fc_squeeze.out_features == (visual_shape[1] + skeleton_shape[1]) // 2
    visual, skeleton = torch.randn(visual_shape, dtype=torch.float64), torch.randn(skeleton_shape, dtype=torch.float64)
    for mine, theirs in zip(ours(visual, skeleton), official(visual, skeleton)):
        torch.testing.assert_close(mine, theirs, atol=1e-12, rtol=0)


def test_mmtm_over_three_streams_of_mixed_rank_by_hand():
    torch.manual_seed(1)
    block = MMTM([6, 4, 2], ratio=2, gate="2sigmoid").double()
    streams = (torch.randn(2, 6, 5, 5, dtype=torch.float64), torch.randn(2, 4, 9, dtype=torch.float64),
               torch.randn(2, 2, 3, 3, 3, dtype=torch.float64))
    squeezed = torch.cat([streams[0].mean((2, 3)), streams[1].mean(2), streams[2].mean((2, 3, 4))], 1)
    joint = torch.relu(squeezed @ block.fc_squeeze.weight.T + block.fc_squeeze.bias)
    assert block.hidden == 12  # int(2 * 12 / 2)
    outputs = block(*streams)
    for index, (stream, layer, out) in enumerate(zip(streams, block.fc_out, outputs)):
        gate = 2 * torch.sigmoid(joint @ layer.weight.T + layer.bias)
        assert out.shape == stream.shape
        torch.testing.assert_close(out, stream * gate.view(*gate.shape, *(1,) * (stream.dim() - 2)))
    assert max(g.max().item() for g in block.gates(*streams)) > 1  # the scaled gate can amplify


def test_se_sum_and_gated_sum_follow_their_formulas():
    torch.manual_seed(2)
    rgb, depth = torch.randn(2, 32, 6, 6), torch.randn(2, 32, 6, 6)
    se_sum = SESum(32, reduction=16)

    def esanet_se(se, x):  # GAP, 1x1 conv with bias, ReLU, 1x1 conv with bias, sigmoid
        first, second = se.fc[0], se.fc[2]
        hidden = torch.relu(x.mean((2, 3)) @ first.weight.reshape(first.weight.shape[0], -1).T + first.bias)
        return x * torch.sigmoid(hidden @ second.weight.reshape(second.weight.shape[0], -1).T + second.bias)[..., None, None]

    torch.testing.assert_close(se_sum(rgb, depth), esanet_se(se_sum.se[0], rgb) + esanet_se(se_sum.se[1], depth))
    gated = GatedSum(32)
    merged = torch.randn(2, 32, 6, 6)

    def acnet_gate(gate, x):
        return x * torch.sigmoid(x.mean((2, 3)) @ gate.conv.weight.T + gate.conv.bias)[..., None, None]

    expected = acnet_gate(gated.gate[0], rgb) + acnet_gate(gated.gate[1], depth)
    torch.testing.assert_close(gated(rgb, depth), expected)
    torch.testing.assert_close(gated(rgb, depth, merged=merged), expected + merged)


@pytest.mark.parametrize("make", [
    lambda: MMTM([8, 4], gate="sigmoid", init="identity"), lambda: MMTM([8, 4], init="identity"),
    lambda: SESum(8, reduction=2, init="identity"), lambda: GatedSum(8, init="identity"),
    lambda: ConcatFusion([8, 8], "cbam", reduction=2, init="identity"),
])
def test_identity_insertion_is_exact_and_learns(make):
    torch.manual_seed(3)
    block = make()
    first, second = torch.randn(2, 8, 5, 5), torch.randn(2, block.channels[1], 5, 5)
    out = block(first, second)
    if isinstance(block, MMTM):
        assert torch.equal(out[0], first) and torch.equal(out[1], second)
        loss = sum((o * torch.randn_like(o)).sum() for o in out)
    elif isinstance(block, ConcatFusion):
        assert torch.equal(out, torch.cat([first, second], 1))
        loss = (out * torch.randn_like(out)).sum()
    else:
        assert torch.equal(out, first)
        loss = (out * torch.randn_like(out)).sum()
    loss.backward()
    grads = {name: p.grad for name, p in block.named_parameters()}
    learning = [name for name, grad in grads.items() if grad is not None and grad.abs().sum() > 0]
    assert learning, "nothing receives a gradient at the first step"


@pytest.mark.parametrize("make", [lambda: MMTM([4, 3], ratio=2, gate="sigmoid"), lambda: MMTM([4, 3]),
                                  lambda: SESum(4, reduction=2), lambda: GatedSum(4),
                                  lambda: ConcatFusion([4, 4], "se", reduction=2)])
def test_gradients_and_second_derivatives_match_finite_differences(make):
    torch.manual_seed(4)
    block = make().double()
    streams = [torch.randn(2, c, 3, 3, dtype=torch.float64, requires_grad=True) for c in block.channels]

    def fn(*inputs):
        out = block(*inputs)
        return tuple(out) if isinstance(out, tuple) else out

    assert torch.autograd.gradcheck(fn, streams)
    assert torch.autograd.gradgradcheck(fn, streams)


def test_trace_and_export_with_several_inputs():
    block = MMTM([8, 4]).eval()
    inputs = (torch.randn(2, 8, 5, 5), torch.randn(2, 4, 7))
    traced = torch.jit.trace(block, inputs)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(block, inputs, dynamic_shapes=(({0: batch}, {0: batch}),))  # one *streams
    larger = (torch.randn(5, 8, 5, 5), torch.randn(5, 4, 7))
    for out, reference in zip(exported.module()(*larger), block(*larger)):
        torch.testing.assert_close(out, reference)
    for out, reference in zip(traced(*inputs), block(*inputs)):
        torch.testing.assert_close(out, reference)


@pytest.mark.parametrize(("build", "call", "message"), [
    (lambda: MMTM([8]), None, r"at least 2 streams"),
    (lambda: MMTM([8, 0]), None, r"channels\[1\] must be a positive int"),
    (lambda: MMTM([8, 4], ratio=0), None, r"ratio must be a number > 0, got 0"),
    (lambda: MMTM([8, 4], gate="tanh"), None, r"gate must be one of '2sigmoid', 'sigmoid'; got 'tanh'"),
    (lambda: MMTM([8, 4]), lambda b: b(torch.randn(2, 8, 3, 3)), r"built for 2 streams, got 1"),
    (lambda: MMTM([8, 4]), lambda b: b(torch.randn(2, 8, 3, 3), torch.randn(2, 5, 3)),
     r"stream 1 must have 4 channels, got 5"),
    (lambda: MMTM([8, 4]), lambda b: b(torch.randn(2, 8, 3, 3), torch.randn(3, 4, 3)),
     r"share one batch size, got \[2, 3\]"),
    (lambda: SESum(8, reduction=2), lambda b: b(torch.randn(2, 8, 3, 3), torch.randn(2, 8, 4, 4)),
     r"one spatial size .*\[\(3, 3\), \(4, 4\)\]"),
    (lambda: SESum(8, streams=1), None, r"streams must be >= 2"),
    (lambda: create_fusion("mmtn", [8, 4]), None, r"fusion must be one of .* got 'mmtn' \(did you mean 'mmtm'\?\)"),
])
def test_bad_input_is_named(build, call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        block = build()
        call(block)


def test_the_registry_lists_every_fusion():
    assert list_fusions() == ["concat", "gated-sum", "mmtm", "se-sum"]
    assert isinstance(create_fusion("se-sum", 16, streams=3), SESum)


def test_onnx_with_several_inputs_runs_in_onnx_runtime(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    block = MMTM([8, 4], gate="2sigmoid").eval()
    inputs = (torch.randn(2, 8, 5, 5), torch.randn(2, 4, 7))
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(block, inputs, str(tmp_path / "mmtm.onnx"), dynamo=True, opset_version=18,
                      dynamic_shapes=(({0: batch}, {0: batch}),))
    session = onnxruntime.InferenceSession(str(tmp_path / "mmtm.onnx"), providers=["CPUExecutionProvider"])
    larger = (torch.randn(3, 8, 5, 5), torch.randn(3, 4, 7))
    results = session.run(None, {node.name: x.numpy() for node, x in zip(session.get_inputs(), larger)})
    for result, reference in zip(results, block(*larger)):
        torch.testing.assert_close(torch.from_numpy(result), reference.detach(), atol=1e-5, rtol=1e-5)
