"""Fine-tuning controls: attention learning-rate multiplier, no weight decay on BatchNorm/bias/alpha, a frozen
backbone for the first epochs, an EMA of the weights — all resumable exactly."""

import pytest
import torch

from plugattn.checkpoint import load_checkpoint, split_prefix
from plugattn.models import create_model
from plugattn.training import TrainConfig, make_optimizer, train


def test_parameter_groups():
    model = create_model("se_resnet20", reduction=4, init="identity")
    optimizer = make_optimizer(TrainConfig(lr=0.1, weight_decay=5e-4, attention_lr_mult=10.0), model)
    by_parameter = {id(p): group for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    assert len(by_parameter) == len(names)
    alpha, fc1 = names["layer1.0.attention.alpha"], names["layer1.0.attention.block.fc.0.weight"]
    assert by_parameter[id(alpha)]["weight_decay"] == 0 and by_parameter[id(alpha)]["lr"] == pytest.approx(1.0)
    assert by_parameter[id(fc1)]["weight_decay"] == 5e-4 and by_parameter[id(fc1)]["lr"] == pytest.approx(1.0)
    for name in ("bn1.weight", "bn1.bias", "fc.bias", "layer1.0.attention.block.fc.0.bias"):
        assert by_parameter[id(names[name])]["weight_decay"] == 0, name
    assert by_parameter[id(names["conv1.weight"])]["weight_decay"] == 5e-4
    assert by_parameter[id(names["conv1.weight"])]["lr"] == pytest.approx(0.1)


def _config(folder, out, **overrides):
    values = dict(model="resnet20", attention="se", reduction=4, init="identity", dataset=f"imagefolder:{folder}",
                  batch_size=16, lr=0.05, schedule="constant", progress=False, out_dir=str(out))
    return TrainConfig(**(values | overrides))


def test_frozen_backbone_trains_only_attention_and_classifier_then_everything(image_folder, tmp_path):
    train(_config(image_folder, tmp_path / "frozen", epochs=1, freeze_backbone_epochs=1))
    after = split_prefix(load_checkpoint(tmp_path / "frozen" / "last.safetensors")[0], "model")
    torch.manual_seed(0)  # the run builds its model after seeding with its seed (0): the same start
    reference = create_model("se_resnet20", reduction=4, init="identity", num_classes=3).state_dict()
    changed = {name for name, value in after.items() if not torch.equal(value, reference[name])}
    assert changed and all(".attention." in name or name.startswith("fc.") for name in changed), sorted(changed)[:5]
    assert "layer1.0.attention.alpha" in changed and "fc.weight" in changed
    train(_config(image_folder, tmp_path / "frozen", epochs=2, freeze_backbone_epochs=1),
          resume=tmp_path / "frozen" / "last.safetensors")
    released = split_prefix(load_checkpoint(tmp_path / "frozen" / "last.safetensors")[0], "model")
    assert not torch.equal(released["conv1.weight"], after["conv1.weight"])


def test_ema_and_freezing_resume_exactly(image_folder, tmp_path):
    options = dict(freeze_backbone_epochs=1, ema=0.9, attention_lr_mult=5.0)
    train(_config(image_folder, tmp_path / "whole", epochs=2, **options))
    train(_config(image_folder, tmp_path / "cut", epochs=1, **options))
    train(_config(image_folder, tmp_path / "cut", epochs=2, **options), resume=tmp_path / "cut" / "last.safetensors")
    whole, meta = load_checkpoint(tmp_path / "whole" / "last.safetensors")
    cut, _ = load_checkpoint(tmp_path / "cut" / "last.safetensors")
    assert any(name.startswith("ema.") for name in whole) and "ema_test_top1" in meta["history"][-1]
    for name in whole:
        if name.startswith(("model.", "ema.")):
            assert torch.equal(whole[name], cut[name]), name


@pytest.mark.parametrize(("overrides", "message"), [
    ({"attention_lr_mult": 0.0}, "attention_lr_mult must be > 0"),
    ({"freeze_backbone_epochs": -1}, "freeze_backbone_epochs must be an int >= 0"),
    ({"ema": 1.5}, r"ema must be a decay in \(0, 1\)"),
])
def test_bad_fine_tuning_values(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()
