"""capture() and the pictures: captured gates equal hand-computed ones; PNGs have the documented sizes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from typer.testing import CliRunner

import plugattn
from plugattn import attach
from torch import nn
from plugattn.cli import app
from plugattn.inspection import capture
from plugattn.visualisation import (
    channel_group_figure,
    check_images,
    excitation_figure,
    gradcam_figure,
    parse_groups,
    spatial_attention_figure,
)
from plugattn.models import create_model
from plugattn.training import TrainConfig, train


def _inputs_of(module, model, x):
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    model(x)
    handle.remove()
    return seen[0]


def test_captured_gates_equal_the_gates_computed_by_hand():
    torch.manual_seed(0)
    model = create_model("resnet20", attention="cbam", reduction=4).eval()
    x = torch.randn(3, 3, 32, 32)
    block = model.layer2[1].attention
    block_input = _inputs_of(block, model, x)
    with torch.no_grad(), capture(model) as seen:
        model(x)
    fc = block.channel_gate.mlp
    mlp = lambda z: F.linear(F.relu(F.linear(z, fc[1].weight, fc[1].bias)), fc[3].weight, fc[3].bias)  # noqa: E731
    by_hand = torch.sigmoid(mlp(block_input.mean((2, 3))) + mlp(block_input.amax((2, 3))))
    torch.testing.assert_close(seen.channel_weights("layer2.1.attention"), by_hand)
    gated = block_input * by_hand[:, :, None, None]
    bn = block.spatial_gate.spatial.bn
    pooled = torch.cat([gated.amax(1, keepdim=True), gated.mean(1, keepdim=True)], 1)
    conv = F.conv2d(pooled, block.spatial_gate.spatial.conv.weight, padding=3)
    spatial = torch.sigmoid((conv - bn.running_mean.view(1, -1, 1, 1)) / (bn.running_var.view(1, -1, 1, 1) + bn.eps).sqrt()
                            * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(seen.spatial_map("layer2.1.attention"), spatial)
    assert seen.spatial_map("layer1.0.attention").shape == (3, 1, 32, 32)
    assert len(seen.names) == 9


def test_capture_changes_nothing_and_keeps_nothing():
    torch.manual_seed(0)
    model = create_model("se_resnet20", reduction=4).eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    with capture(model) as seen:
        during = model(x)
        model(x)
    torch.testing.assert_close(during, before, rtol=0, atol=0)
    assert len(seen["layer1.0.attention"].channel) == 2  # one entry per forward pass
    assert seen["layer1.0.attention"].spatial == []
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before
    model(x)
    assert len(seen["layer1.0.attention"].channel) == 2


def test_capture_sees_attached_blocks_of_any_model():
    model = attach(torchvision.models.resnet18(), "cbam").eval()
    with torch.no_grad(), capture(model) as seen:
        model(torch.randn(1, 3, 64, 64))
    assert seen.names[0] == "layer1.0.attention" and seen.channel_weights("layer4.1.attention").shape == (1, 512)


def _png(path):
    image = np.asarray(Image.open(path).convert("RGB"))
    return image.shape[1], image.shape[0], float(image.var())


def test_figures_have_documented_sizes_and_are_not_blank(tmp_path):
    torch.manual_seed(0)
    cbam = create_model("cbam_resnet20", reduction=4).eval()
    plain = create_model("resnet20").eval()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    chosen = spatial_attention_figure(cbam, images, tmp_path / "spatial.png")
    assert list(chosen) == [1, 2, 3]
    width, height, variance = _png(tmp_path / "spatial.png")
    assert (width, height) == (160 * 4, 160 * 4) and variance > 0
    gradcam_figure(plain, cbam, images, labels.tolist(), tmp_path / "gradcam.png")
    width, height, variance = _png(tmp_path / "gradcam.png")
    assert (width, height) == (160 * 3, 160 * 4) and variance > 0
    many, many_labels = torch.randn(64, 3, 32, 32), torch.arange(64) % 4
    spreads = excitation_figure(cbam, many, many_labels, [f"c{i}" for i in range(10)], tmp_path / "exc.png")
    assert len(spreads) == 3
    with capture(cbam) as seen:
        cbam(many)
    last_of_stage3 = [name for name in seen.names if name.startswith("layer3.")][-1]
    weights = seen.channel_weights(last_of_stage3)  # independent of excitation_figure's own statistics
    class_means = torch.stack([weights[many_labels == c].mean(0) for c in range(4)])
    expected = class_means.std(0, correction=0).mean().item()
    assert expected > 0
    assert spreads[f"stage 3 ({last_of_stage3})"] == pytest.approx(expected, rel=1e-5)
    width, height, variance = _png(tmp_path / "exc.png")
    assert (width, height) == (400 * 3, 320) and variance > 0
    weights = channel_group_figure(cbam, many, parse_groups("low=0-7,high=8-15"), tmp_path / "groups.png")
    assert set(weights) == {"low", "high"} and all(0 < v < 1 for v in weights.values())
    width, height, variance = _png(tmp_path / "groups.png")
    assert (width, height) == (500, 350) and variance > 0


def test_bad_input(tmp_path):
    plain = create_model("resnet20")
    with pytest.raises(ValueError, match="no attention blocks to capture.*plugattn.attach"):
        with capture(plain):
            pass
    cbam = create_model("cbam_resnet20")
    with pytest.raises(ValueError, match=r"images have 1 channels but the model takes 3"):
        check_images(cbam, torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"images are \(28, 28\) but the model was trained on \(32, 32\)"):
        check_images(cbam, torch.randn(2, 3, 28, 28), image_size=(32, 32))
    with pytest.raises(ValueError, match=r"class indices must be in 0\.\.9; got \[12\]"):
        excitation_figure(cbam, torch.randn(8, 3, 32, 32), torch.zeros(8, dtype=torch.long),
                          [str(i) for i in range(10)], tmp_path / "x.png", classes=[0, 12])
    with pytest.raises(ValueError, match="no spatial or element gate"):
        spatial_attention_figure(create_model("se_resnet20"), torch.randn(1, 3, 32, 32), tmp_path / "s.png")
    with pytest.raises(ValueError, match="groups must look like"):
        parse_groups("rgb:0-2")


def test_viz_cli_on_a_trained_checkpoint(image_folder, tmp_path):
    for attention in ("none", "cbam"):
        train(TrainConfig(model="resnet20", attention=None if attention == "none" else attention, reduction=4,
                          dataset=f"imagefolder:{image_folder}", epochs=1, batch_size=16, progress=False,
                          out_dir=str(tmp_path / attention)))
    result = CliRunner().invoke(app, ["viz", str(tmp_path / "cbam" / "last.safetensors"), "--plain",
                                      str(tmp_path / "none" / "last.safetensors"), "--out", str(tmp_path / "viz"),
                                      "--images", "3", "--classes", "0,1,2", "--groups", "a=0-7,b=8-15"])
    assert result.exit_code == 0, result.output
    for name in ("spatial.png", "gradcam.png", "excitation.png", "groups.png"):
        assert _png(tmp_path / "viz" / name)[2] > 0
    bad = CliRunner().invoke(app, ["viz", str(tmp_path / "none" / "last.safetensors"), "--out", str(tmp_path / "v2")])
    assert bad.exit_code == 2 and "no attention blocks" in bad.output


@pytest.mark.parametrize(("name", "kinds"), [
    ("eca", {"channel"}), ("gc", {"spatial"}), ("scse", {"channel", "spatial"}), ("simam", {"element"}),
    ("coord", {"element"}), ("triplet", {"spatial", "element"}), ("bam", {"element"}),
])
def test_capture_records_each_family_blocks_gates_by_kind(name, kinds):
    torch.manual_seed(0)
    model = create_model("resnet20", attention=name, num_classes=10).eval()
    x = torch.randn(3, 3, 32, 32)
    with capture(model) as seen:
        model(x)
    assert len(seen.names) == {"gc": 6, "bam": 2}.get(name, 9)  # GC: stages 2–3; BAM: between the stages
    record = seen[seen.names[0]]
    found = {kind for kind in ("channel", "spatial", "element") if getattr(record, kind)}
    assert found == kinds
    if "channel" in kinds:
        assert seen.channel_weights(seen.names[0]).shape == (3, 16)
    if name == "gc":  # GC's attention pooling: a softmax over the positions of each sample
        mask = seen.spatial_map(seen.names[0])
        torch.testing.assert_close(mask.flatten(1).sum(1), torch.ones(3))
    if name == "triplet":  # the H–W branch is a spatial map of x; the rotated branches are recorded apart
        assert seen.spatial_map(seen.names[0]).shape == (3, 1, 32, 32) and len(record.element) == 2


def test_gate_spread_is_the_hand_computed_spread_of_the_effective_gates():
    from plugattn.blocks import IdentityStart, with_init
    from plugattn.inspection import gate_spread

    model = nn.Sequential(nn.Conv2d(3, 4, 1), with_init(plugattn.create_attention("se", 4, reduction=2, bias=True), "zero-sigmoid"))
    images = torch.randn(5, 3, 6, 6)
    assert gate_spread(model, images) == {"1": {"channel spread": 0.0, "channel shift": 0.0}}
    bias = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    with torch.no_grad():
        model[1].fc[2].bias.copy_(bias)  # weights stay 0: the gate is 2σ(bias) for every image
    gates = 2 * torch.sigmoid(bias.double())
    stats = gate_spread(model, images)["1"]
    assert stats["channel spread"] == pytest.approx(gates.std().item())
    assert stats["channel shift"] == pytest.approx((gates - 1).abs().mean().item())
    blended = nn.Sequential(nn.Conv2d(3, 4, 1), IdentityStart(plugattn.create_attention("se", 4, reduction=2, bias=True)))
    with torch.no_grad():
        blended[1].block.fc[2].weight.zero_()
        blended[1].block.fc[2].bias.copy_(bias)
        blended[1].alpha.fill_(0.25)
    effective = 1 + 0.25 * (torch.sigmoid(bias.double()) - 1)
    stats = gate_spread(blended, images)["1"]
    assert stats["channel spread"] == pytest.approx(effective.std().item())
    assert stats["channel shift"] == pytest.approx((effective - 1).abs().mean().item())


@pytest.mark.parametrize("block", ["simam", "bam", "coord"])
def test_blocks_with_element_gates_give_the_channel_mean_of_their_weights_as_maps(block, tmp_path):
    from plugattn.visualisation import spatial_attention_figure

    torch.manual_seed(0)
    model = nn.Sequential(plugattn.create_attention(block, 16)).eval()
    x = torch.randn(2, 16, 12, 9)
    with capture(model) as seen, torch.no_grad():
        out = model(x)
    weights = out / x - (1 if block == "bam" else 0)  # BAM computes x·(1 + gate)
    torch.testing.assert_close(seen.spatial_map("0"), weights.mean(1, keepdim=True), atol=1e-4, rtol=1e-4)
    network = create_model("resnet20", attention=block).eval()
    chosen = spatial_attention_figure(network, torch.randn(2, 3, 32, 24), tmp_path / "spatial.png")
    assert (tmp_path / "spatial.png").stat().st_size > 0 and len(chosen) == (2 if block == "bam" else 3)
