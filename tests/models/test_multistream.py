"""The multi-stream network and early fusion: an MMTM network against a hand-written two-stream forward with the
official MMTM, identity at insertion for every fusion, stages from the zoo, torchvision and timm, per-modality weights,
the PyTorch contract (float64 gradients and second derivatives, torch.func, jit.trace, torch.export with a dynamic
batch, ONNX with two inputs in ONNX Runtime, compile, autocast, hooks) and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.func import functional_call, grad, vmap

from plugattn import capture, create_model
from plugattn.models.multistream import EarlyFusion, MultiStreamNet
from plugattn.recipe import ModelRecipe, build_multimodal
from tests.blocks.test_fusion import OfficialMMTM, _mapped
from tests.conftest import trained_like

SHAPES = {"image": (1, 12, 12), "audio": (1, 8, 16)}
FUSIONS = [("mmtm", {}), ("se-sum", {}), ("gated-sum", {}), ("concat", {"attention": "se"}),
           ("concat", {"attention": "cbam"})]


def _streams(dtype: torch.dtype = torch.float32, spec: str = "resnet8") -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {name: trained_like(create_model(spec, in_channels=shape[0], num_classes=4)).to(dtype).eval()
            for name, shape in SHAPES.items()}


def _inputs(batch: int = 3, dtype: torch.dtype = torch.float32, seed: int = 1) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, *shape, generator=generator).to(dtype) for shape in SHAPES.values())


def _examples(dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return dict(zip(SHAPES, _inputs(2, dtype)))


def _net(fusion: str | None = "mmtm", dtype: torch.dtype = torch.float32, **options) -> MultiStreamNet:
    stages = options.pop("stages", (2, 3) if fusion else ())
    return MultiStreamNet(_streams(dtype), _examples(dtype), fusion=fusion, stages=stages, num_classes=4,
                          **options).to(dtype).eval()


def test_an_mmtm_network_equals_a_hand_written_forward_with_the_official_mmtm():
    """Stems and stages of both ResNet-8 streams called by hand, the official MMTM (two streams, mapped weights)
    after stage 2 and stage 3, both gated maps carried on (the paper's design), logits averaged: float64, ≤ 1e-12."""
    torch.manual_seed(3)
    net = _net("mmtm", torch.float64, gate="sigmoid")  # the official code's gate
    official = [OfficialMMTM(32, 32, 4).double(), OfficialMMTM(64, 64, 4).double()]
    for point, reference in zip(net.fusions, official):
        point.block.load_state_dict(_mapped(reference))
    image_net, audio_net = (copy.deepcopy(net.streams[name]) for name in SHAPES)
    image, audio = _inputs(dtype=torch.float64)

    def stem(model, x):
        return model.layer1(model.relu(model.bn1(model.conv1(x))))

    def head(model, x):
        return model.fc(torch.flatten(model.avgpool(model.final_relu(model.final_bn(x))), 1))

    with torch.no_grad():
        v, a = official[0](image_net.layer2(stem(image_net, image)), audio_net.layer2(stem(audio_net, audio)))
        v, a = official[1](image_net.layer3(v), audio_net.layer3(a))
        expected = (head(image_net, v) + head(audio_net, a)) / 2
        torch.testing.assert_close(net(image, audio), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("fusion", "options"), FUSIONS + [(None, {})])
@pytest.mark.parametrize("late", ["average", "concat"])
def test_identity_insertion_computes_what_the_streams_computed_alone(fusion, options, late):
    streams = _streams(torch.float64)
    net = MultiStreamNet(copy.deepcopy(streams), _examples(torch.float64), fusion=fusion,
                         stages=(2, 3) if fusion else (), late=late, num_classes=4, init="identity",
                         **options).double().eval()
    image, audio = _inputs(dtype=torch.float64)
    with torch.no_grad():
        if late == "average":
            expected = (streams["image"](image) + streams["audio"](audio)) / 2
            torch.testing.assert_close(net(image, audio), expected, atol=1e-12, rtol=0)
        else:  # the concatenated head is new; the features reaching it are the streams' own
            features = torch.cat([nn.Sequential(*list(streams[n].children())[:-1])(x).flatten(1)
                                  for n, x in zip(SHAPES, (image, audio))], 1)
            torch.testing.assert_close(net(image, audio), net.head(features), atol=1e-12, rtol=0)


def test_identity_fusion_learns_away_from_the_identity():
    net = _net("se-sum", init="identity").train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.fusions[0].block.alpha.item()
    net(*_inputs()).logsumexp(1).mean().backward()
    assert net.fusions[0].block.alpha.grad is not None and net.fusions[0].block.alpha.grad.abs() > 0
    optimizer.step()
    assert net.fusions[0].block.alpha.item() != before


@pytest.mark.parametrize(("spec", "stage", "module"), [("torchvision:resnet18", 2, "layer2"), ("timm:resnet18", 3, "layer3"),
                                                        ("timm:efficientnet_b0", 3, "blocks.4"), ("resnet8", "layer2.0", "layer2.0")])
def test_stages_come_from_layerN_timm_feature_info_or_module_names(spec, stage, module):
    if spec.startswith("timm:"):
        pytest.importorskip("timm")
    recipe = ModelRecipe(model=spec, fusion="mmtm", fusion_stages=[stage])
    net, notes = build_multimodal(recipe, num_classes=3, shapes={"rgb": (3, 64, 64), "depth": (1, 32, 32)})
    assert [segment[-1][0] for segment in net.plans["rgb"].segments[:-1]] == [module]
    assert net(torch.randn(2, 3, 64, 64), torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_per_modality_weights_from_capture_are_the_gates_means():
    net = _net("mmtm")
    image, audio = _inputs()
    taken: list[tuple[torch.Tensor, torch.Tensor]] = []
    handle = net.fusions[0].block.register_forward_pre_hook(lambda module, args: taken.append(args))
    with capture(net) as seen:
        net(image, audio)
    handle.remove()
    gates = net.fusions[0].block.gates(*taken[0])
    assert all(0 < gate.min() and gate.max() < 2 for gate in gates) and max(g.max() for g in gates) > 1  # 2σ
    expected = torch.stack([gate.mean(1) for gate in gates], 1)
    assert seen.fusion_names == ["fusions.0", "fusions.1"]
    torch.testing.assert_close(seen.modality_weights("fusions.0"), expected)
    early = EarlyFusion(create_model("resnet8", in_channels=2, num_classes=4), list(SHAPES), [1, 1], [8, 16],
                        attention="se").eval()
    with capture(early) as seen:
        early(image, audio)
    weights = early.attention.channel_weights(early.stack(image, audio))
    torch.testing.assert_close(seen.modality_weights("input"), weights)


def test_early_fusion_resamples_to_one_grid_and_stacks():
    early = EarlyFusion(nn.Identity(), ["image", "audio"], [1, 2], [8, 16], attention=None)
    image, audio = torch.randn(2, 1, 4, 8), torch.randn(2, 2, 8, 16)
    out = early(image, audio)
    assert out.shape == (2, 3, 8, 16)
    torch.testing.assert_close(out[:, 1:], audio)
    torch.testing.assert_close(out[:, :1], nn.functional.interpolate(image, size=(8, 16), mode="bilinear"))


# ---------------------------------------------------------------- the PyTorch contract


@pytest.mark.parametrize(("fusion", "options"), FUSIONS)
def test_gradients_and_second_derivatives_match_finite_differences(fusion, options):
    """On 4×4 and 4×6 maps (the gates' maths does not depend on the size; finite differences cost per element)."""
    torch.manual_seed(0)
    streams = {name: trained_like(create_model("resnet8", in_channels=1, num_classes=3)).double().eval()
               for name in SHAPES}
    examples = {"image": torch.randn(2, 1, 4, 4, dtype=torch.float64), "audio": torch.randn(2, 1, 4, 6, dtype=torch.float64)}
    net = MultiStreamNet(streams, examples, fusion=fusion, stages=(2, 3), num_classes=3, **options).double().eval()
    inputs = tuple(x.clone().requires_grad_() for x in examples.values())
    assert torch.autograd.gradcheck(lambda *xs: net(*xs), inputs)
    # second derivatives, along random directions u and v: autograd's uᵀHv against a central difference of ∇f·v
    u = [torch.randn_like(x) for x in inputs]
    v = [torch.randn_like(x) for x in inputs]

    def slope(xs: tuple[torch.Tensor, ...], create_graph: bool) -> torch.Tensor:
        gradients = torch.autograd.grad(net(*xs).square().sum(), xs, create_graph=create_graph)
        return sum((g * d).sum() for g, d in zip(gradients, v))

    exact = sum((g * d).sum() for g, d in zip(torch.autograd.grad(slope(inputs, True), inputs), u))
    step = 1e-6
    shifted = [tuple((x + sign * step * d).detach().requires_grad_() for x, d in zip(inputs, u)) for sign in (1, -1)]
    numeric = (slope(shifted[0], False) - slope(shifted[1], False)) / (2 * step)
    torch.testing.assert_close(exact, numeric, atol=1e-5, rtol=1e-5)


def test_torch_func_grad_and_vmap_agree_with_autograd():
    net = _net("mmtm", torch.float64)
    params = {name: p.detach() for name, p in net.named_parameters()}
    inputs = _inputs(3, torch.float64)

    def loss(parameters, *xs):
        return functional_call(net, parameters, xs).square().mean()

    grads = grad(loss)(params, *inputs)
    net(*inputs).square().mean().backward()
    for name, p in net.named_parameters():
        torch.testing.assert_close(grads[name], p.grad)
    per_sample = vmap(lambda *xs: functional_call(net, params, tuple(x.unsqueeze(0) for x in xs)).squeeze(0))(*inputs)
    torch.testing.assert_close(per_sample, net(*inputs))


def test_trace_export_with_a_dynamic_batch_and_onnx_with_two_inputs(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    net = _net("mmtm")
    inputs = _inputs(3)
    traced = torch.jit.trace(net, inputs)
    larger = _inputs(5, seed=9)
    with torch.no_grad():
        torch.testing.assert_close(traced(*larger), net(*larger))
        batch = torch.export.Dim("batch", min=1, max=64)
        program = torch.export.export(net, inputs, dynamic_shapes=(({0: batch}, {0: batch}),))  # one *inputs
        torch.testing.assert_close(program.module()(*larger), net(*larger))
    path = tmp_path / "two_streams.onnx"
    torch.onnx.export(net, inputs, str(path), dynamo=True, opset_version=18, input_names=["image", "audio"],
                      dynamic_shapes=(({0: batch}, {0: batch}),))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": larger[0].numpy(), "audio": larger[1].numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), net(*larger).detach(), atol=1e-4, rtol=1e-4)


def test_compile_and_autocast_agree_with_eager():
    net = _net("se-sum").train()
    reference = copy.deepcopy(net)
    inputs = _inputs(4)
    compiled = torch.compile(net, backend="aot_eager")  # graph capture and autograd as inductor sees them
    out, expected = compiled(*inputs), reference(*inputs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out.square().sum().backward()
    expected.square().sum().backward()
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = reference.eval()(*inputs)
    torch.testing.assert_close(low.float(), reference(*inputs), atol=0.1, rtol=0.1)


def test_observing_hooks_on_every_module_change_nothing():
    net = _net("mmtm")
    inputs = _inputs()
    with torch.no_grad():
        expected = net(*inputs)
        handles = [m.register_forward_hook(lambda *args: None) for m in net.modules()]
        out = net(*inputs)
    for handle in handles:
        handle.remove()
    torch.testing.assert_close(out, expected, atol=0, rtol=0)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("make", "fragments"), [
    (lambda: _net("mmtm", stages=(5,)), ["fusion stage 5", "stages 1..3"]),
    (lambda: _net("mmtm", stages=("layer9",)), ["'layer9'", "not a module"]),
    (lambda: _net("mmtm", stages=()), ["needs at least one stage"]),
    (lambda: _net(None, stages=(2,)), ["without a fusion block"]),
    (lambda: _net("mmtn"), ["mmtm"]),
    (lambda: MultiStreamNet({"image": torchvision.models.mobilenet_v2(num_classes=4),
                             "audio": torchvision.models.mobilenet_v2(num_classes=4)},
                            {"image": torch.randn(2, 3, 32, 32), "audio": torch.randn(2, 3, 32, 32)},
                            fusion="mmtm", stages=("features.3",)).eval(), ["does not run as the chain"]),
    (lambda: MultiStreamNet({"image": create_model("resnet8", num_classes=4)}, {}), ["at least two"]),
    (lambda: MultiStreamNet({"a b": nn.Linear(2, 2), "c": nn.Linear(2, 2)}, {}), ["identifiers"]),
])
def test_bad_networks_are_named(make, fragments):
    with pytest.raises(ValueError) as error:
        make()
    assert all(fragment in str(error.value) for fragment in fragments), str(error.value)


def test_bad_inputs_are_named():
    net = _net("mmtm")
    image, audio = _inputs()
    with pytest.raises(ValueError, match="one input per modality"):
        net(image)
    with pytest.raises(ValueError, match="one size.*'image': 3, 'audio': 2"):
        net(image, audio[:2])
    sums = MultiStreamNet({"x": nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 3)), "y": create_model("resnet8", num_classes=3)},
                          {"x": torch.randn(2, 4), "y": torch.randn(2, 3, 8, 8)}, fusion="mmtm", stages=("0",))
    assert sums(torch.randn(2, 4), torch.randn(2, 3, 8, 8)).shape == (2, 3)  # a rank-2 stream against a map
    with pytest.raises(ValueError, match="one rank"):
        MultiStreamNet({"x": nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 3)),
                        "y": nn.Sequential(nn.Conv2d(3, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))},
                       {"x": torch.randn(2, 4), "y": torch.randn(2, 3, 8, 8)}, fusion="se-sum", stages=("0",))


def test_the_recipe_names_what_is_wrong():
    shapes = {"image": (1, 12, 12), "audio": (1, 8, 16)}
    for recipe, fragment in [
        (ModelRecipe(model="image=resnet8,video=resnet8"), "one of ['image', 'audio']"),
        (ModelRecipe(model="image=resnet8", fusion="mmtm", fusion_stages=[2]), "two or more modalities"),
        (ModelRecipe(model="resnet8", fusion="early-ish"), "did you mean 'early'"),
        (ModelRecipe(model="resnet8", weights="image.safetensors"), "names its modality"),
        (ModelRecipe(model="resnet8", normalize="weights"), "normalize must be 'dataset'"),
    ]:
        with pytest.raises(ValueError, match=None) as error:
            build_multimodal(recipe, num_classes=3, shapes=shapes)
        assert fragment in str(error.value), str(error.value)
