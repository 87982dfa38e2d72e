"""Published weight layouts: a checkpoint written by an independent re-implementation of each foreign
architecture (tests/foreign_models.py, or the real timm/torchvision model) loads with equal outputs into the
plugattn model of the same architecture, and is refused by every other; bad files get CheckpointError."""

import os
import pickle

import pytest
import timm
import torch
import torchvision
from typer.testing import CliRunner

from plugattn import attach
from plugattn.checkpoint import CheckpointError
from plugattn.cli import app
from plugattn.interop import load_pretrained, read_state_dict
from plugattn.models import create_model
from tests import foreign_models


def _outputs_equal(a, b, shape=(2, 3, 64, 64)):
    torch.manual_seed(1)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def _agree(foreign, ours, shape):
    """Outputs within 1e-5 relative (fp32) of the foreign network's, on natural-size inputs."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = foreign.eval()(x), ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def ca_mobilenet_v2():
    """torchvision's MobileNetV2 with coordinate attention after the depthwise stage of every block with expansion 6."""
    model = torchvision.models.mobilenet_v2()
    return attach(model, "coord", [f"features.{i}.conv.1" for i in range(2, 18)],
                  example_input=torch.randn(1, 3, 224, 224))


def _save(state, path):
    torch.save(state, path)
    return path


# ---------------------------------------------------------------- each layout against an independent re-implementation

FOREIGN = {
    # layout: (foreign network, the plugattn model that is the same architecture, input shape, saved as DataParallel)
    "cbam-official/resnet50": (lambda: foreign_models.OfficialResidualNet(), lambda: create_model("cbam_resnet50"),
                      (1, 3, 224, 224), True),
    "cadene/se_resnet50": (lambda: foreign_models.CadeneSENet(), lambda: create_model("se_resnet50_v1", stem_pool="ceil"),
                           (1, 3, 224, 224), False),
    "cadene/se_resnext50_32x4d": (lambda: foreign_models.CadeneSENet(groups=32, resnext=True),
                                  lambda: create_model("se_resnext50_32x4d", stem_pool="ceil"), (1, 3, 224, 224), False),
    "senet.pytorch/cifar_se_resnet20": (lambda: foreign_models.SenetCifarResNet(),
                            lambda: create_model("se_resnet20", shortcut="B", bias=False), (2, 3, 32, 32), False),
    "senet.pytorch/se_resnet50": (foreign_models.senet_imagenet_se_resnet50,
                                  lambda: create_model("se_resnet50", bias=False), (1, 3, 224, 224), False),
    "coord-official/mbv2_ca": (lambda: foreign_models.OfficialMobileNetV2CA(), lambda: ca_mobilenet_v2(),
                               (1, 3, 224, 224), True),
    "timm/seresnet18": (lambda: timm.create_model("seresnet18"), lambda: create_model("se_resnet18", divisor=8),
                        (1, 3, 224, 224), False),
    "timm/seresnet34": (lambda: timm.create_model("seresnet34"), lambda: create_model("se_resnet34", divisor=8),
                        (1, 3, 224, 224), False),
    "torchvision/resnet18": (lambda: torchvision.models.resnet18(), lambda: create_model("resnet18"),
                             (1, 3, 224, 224), False),
}


@pytest.mark.parametrize("case", FOREIGN)
def test_foreign_checkpoint_loads_with_equal_outputs(case, tmp_path):
    build_foreign, build_ours, shape, data_parallel = FOREIGN[case]
    foreign = foreign_models.randomise(build_foreign())
    state = foreign.state_dict()
    if data_parallel:  # the official CBAM code saves {'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}
        state = {"epoch": 90, "arch": "resnet", "state_dict": {f"module.{k}": v for k, v in state.items()}}
    ours = build_ours()
    report = load_pretrained(ours, _save(state, tmp_path / "weights.pth"))
    assert report.layout == case.split("/")[0] and not report.missing and not report.unexpected
    _agree(foreign, ours, shape)


WRONG_VARIANTS = {
    "official CBAM (v1.5) into a v1 model": ("cbam-official/resnet50", lambda: create_model("cbam_resnet50_v1"),
                                               r"v1\.5 \(stride in the 3×3.*a name without _v1"),
    "Cadene se_resnet50 into the padded stem": ("cadene/se_resnet50", lambda: create_model("se_resnet50_v1"),
                                                r"ceil_mode=True.*stem_pool='ceil'"),
    "Cadene se_resnet50 into v1.5": ("cadene/se_resnet50", lambda: create_model("se_resnet50", stem_pool="ceil"),
                                     r"ResNet v1 \(stride in the first 1×1"),
    "Cadene se_resnext50 into the padded stem": ("cadene/se_resnext50_32x4d", lambda: create_model("se_resnext50_32x4d"),
                                                 r"stem_pool='ceil'"),
    "senet.pytorch CIFAR into option-A shortcuts": ("senet.pytorch/cifar_se_resnet20", lambda: create_model("se_resnet20", bias=False),
                                                    r"projection shortcuts.*shortcut='B'"),
    "timm seresnet18 without rounded SE widths": ("timm/seresnet18", lambda: create_model("se_resnet18"),
                                                  r"shape mismatch for layer1\.0\.attention\.fc\.0\.weight.*divisor=8"),
    "torchvision resnet50 (v1.5) into a v1 model": (lambda: torchvision.models.resnet50(),
                                                    lambda: create_model("se_resnet50_v1"), r"a name without _v1"),
    "senet.pytorch ImageNet SE-ResNet-50 into a v1 model": (
        lambda: foreign_models.senet_imagenet_se_resnet50(), lambda: create_model("se_resnet50_v1", bias=False),
        r"'senet\.pytorch'.*ResNet v1\.5"),
}


@pytest.mark.parametrize("case", WRONG_VARIANTS)
def test_weights_for_another_architecture_are_refused(case, tmp_path):
    source, build_wrong, message = WRONG_VARIANTS[case]
    foreign = foreign_models.randomise(source() if callable(source) else FOREIGN[source][0]())
    model = build_wrong()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(model, _save(foreign.state_dict(), tmp_path / "weights.pth"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing was loaded


@pytest.mark.parametrize(("att_type", "name", "layout"), [("ECA", "eca_resnet50", "eca-official"),
                                                         ("Triplet", "triplet_resnet50", "triplet-official")])
def test_official_eca_and_triplet_resnets_load_and_agree(att_type, name, layout, tmp_path):
    official = foreign_models.randomise(foreign_models.OfficialResidualNet(att_type=att_type)).eval()
    path = _save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, tmp_path / "w.pth.tar")
    model = create_model(name).eval()
    report = load_pretrained(model, path)
    assert report.layout == layout and not report.missing and not report.unexpected
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(CheckpointError, match="ResNet v1.5"):
        load_pretrained(create_model(f"{name}_v1"), path)
    if att_type == "ECA":  # ECANet's per-stage kernels: the paper's rule gives 5 in stage 1, a shape error
        with pytest.raises(CheckpointError, match=r"shape mismatch for layer1\.0\.attention\.conv\.weight"):
            load_pretrained(create_model("resnet50", attention="eca", kernel_size=5), path)


def test_official_bam_weights_load_into_the_official_variant_only(tmp_path):
    official = foreign_models.randomise(foreign_models.OfficialResidualNet(att_type="BAM")).eval()
    path = _save({"state_dict": {f"module.{k}": v for k, v in official.state_dict().items()}}, tmp_path / "bam.pth.tar")
    model = create_model("bam_resnet50", combine="product").eval()
    report = load_pretrained(model, path)
    assert report.layout == "bam-official" and not report.missing and not report.unexpected
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), official(x), atol=1e-4, rtol=1e-4)
    paper = create_model("bam_resnet50")  # combine="sum": the same tensors would compute something else
    with pytest.raises(CheckpointError, match=r"BAM blocks that multiply their branches.*combine='product'"):
        load_pretrained(paper, path)
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "out.safetensors")])
    assert result.exit_code == 0, result.output


def test_attention_parameters_the_layout_lacks_are_reported_and_nothing_else_is_tolerated():
    plain = foreign_models.randomise(torchvision.models.resnet18())
    report = load_pretrained(create_model("se_resnet18"), plain.state_dict())  # a plain backbone: SE left as built
    assert report.layout == "torchvision" and report.missing
    assert all(".attention." in key for key in report.missing)
    extra = dict(plain.state_dict(), **{"head.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"(?s)fits no known layout.*tried:.*torchvision: 1 keys of the file are "
                                              r"not in the model \(e\.g\. \['head\.weight'\]\)"):
        load_pretrained(create_model("resnet18"), extra)
    lenient = load_pretrained(create_model("resnet18"), extra, strict=False)
    assert lenient.unexpected == ["head.weight"] and lenient.missing == []
    partial = {k: v for k, v in plain.state_dict().items() if not k.startswith("fc.")}
    report = load_pretrained(create_model("resnet18"), partial, strict=False)
    assert report.missing == ["fc.weight", "fc.bias"] and report.unexpected == []


def test_real_timm_seresnet50_loads_and_agrees():
    torch.manual_seed(0)
    reference = timm.create_model("seresnet50").eval()
    ours = create_model("se_resnet50")
    report = load_pretrained(ours, reference.state_dict())
    assert report.layout == "timm"
    _outputs_equal(reference, ours)


def test_shape_mismatch_names_the_key_and_both_shapes():
    foreign = timm.create_model("seresnet50").state_dict()
    with pytest.raises(ValueError, match=r"shape mismatch for layer1\.0\.attention\.fc\.0\.weight: the weights have "
                                         r"\(16, 256\), the model has \(32, 256\)"):
        load_pretrained(create_model("se_resnet50", reduction=8), foreign)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickles_that_run_code_are_refused_and_truncated_files_explained(tmp_path):
    exploit = _Exploit()
    exploit.marker = tmp_path / "pwned"
    planted = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": exploit}, planted)
    with pytest.raises(CheckpointError, match="refused to load.*could run code"):
        read_state_dict(planted)
    assert not exploit.marker.exists()
    with open(tmp_path / "raw.pkl", "wb") as handle:
        pickle.dump(exploit, handle)
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path / "raw.pkl")
    assert not exploit.marker.exists()
    good = tmp_path / "good.pth"
    torch.save(create_model("resnet20").state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(truncated)


def test_convert_cli_records_the_architecture_and_loading_checks_it(tmp_path):
    foreign = foreign_models.randomise(foreign_models.CadeneSENet())
    torch.save(foreign.state_dict(), tmp_path / "se_resnet50-ce0d4300.pth")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "se_resnet50-ce0d4300.pth"),
                                      str(tmp_path / "ours.safetensors"), "--from", "cadene"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "cadene" in result.output and "ceil_mode=True" in result.output
    target = create_model("se_resnet50_v1", stem_pool="ceil")
    assert load_pretrained(target, tmp_path / "ours.safetensors").layout == "plugattn"
    _agree(foreign, target, (1, 3, 224, 224))
    with pytest.raises(CheckpointError, match="stem_pool='ceil'"):
        load_pretrained(create_model("se_resnet50_v1"), tmp_path / "ours.safetensors")


@pytest.mark.parametrize(("content", "message"), [
    (torch.zeros(3), r"holds a Tensor, not a state dict"),
    ([torch.zeros(3)], r"holds a list, not a state dict"),
    ({"conv1.weight": torch.zeros(3), "epoch": 3}, r"not a state dict of tensors.*epoch \(int\)"),
    ({}, r"not a state dict of tensors: it has no entries"),
])
def test_files_that_are_not_state_dicts_are_refused_naming_the_file(content, message, tmp_path):
    path = _save(content, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match=rf"{tmp_path}/odd\.pth.*{message}|{message}"):
        load_pretrained(create_model("resnet18"), path)
    (tmp_path / "noise.bin").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=r"noise\.bin is corrupt or truncated, or not a torch file"):
        read_state_dict(tmp_path / "noise.bin")
    with pytest.raises(TypeError, match="source must be a file path or a mapping"):
        load_pretrained(create_model("resnet18"), torch.zeros(3))
