"""optimize(): BatchNorm folding (only where a BN really follows its conv), channels-last, compile."""

import copy

import pytest
import torch
import torchvision

from plugattn.models import create_model
from plugattn.inference import fold_batchnorm, optimize


def _randomise_statistics(model):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 32, 32))
    return model.eval()


@pytest.mark.parametrize(("name", "expected_folds"), [("cbam_resnet20", 19 + 9), ("preact_resnet164", 0),
                                                      ("se_resnet20", 19)])
def test_folding_keeps_outputs_and_skips_pre_activation(name, expected_folds):
    model = _randomise_statistics(create_model(name))
    x = torch.randn(2, 3, 32, 32)
    reference = model(x)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    folded_model, folded = fold_batchnorm(model, x[:1])
    assert len(folded) == expected_folds
    torch.testing.assert_close(folded_model(x), reference, atol=1e-4, rtol=1e-4)
    assert model.state_dict().keys() == state.keys()  # the argument is untouched
    assert all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def test_folds_torchvision_resnet_conv_bn_pairs():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    reference = model(x)
    folded_model, folded = fold_batchnorm(model, x)
    assert len(folded) == 1 + 8 * 2 + 3  # stem, two per block, three downsample pairs
    assert "bn1" in folded and "layer1.0.bn2" in folded and "layer2.0.downsample.1" in folded
    torch.testing.assert_close(folded_model(x), reference, atol=1e-4, rtol=1e-4)


def test_optimize_returns_a_faithful_copy_and_leaves_the_model_alone():
    model = _randomise_statistics(create_model("cbam_resnet20"))
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    fast = optimize(model, x[:1], compile=False)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-4, rtol=1e-4)
    assert list(model.state_dict()) == keys


def _trained_statistics(model, shape=(4, 3, 64, 64)):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(shape))
    return model.eval()


@pytest.mark.parametrize(("attention", "where"), [("se", "residual"), ("cbam", "residual"),
                                                  ("se", ["layer1.0.bn2", "layer2.1.conv1"])])
def test_optimize_and_folding_keep_attached_blocks(attention, where):
    """Blocks attached by hooks on BatchNorms (the standard position of torchvision's units, or an explicit
    'after' point) move with the folded norm; a hooked convolution is not folded."""
    import plugattn

    plain = torchvision.models.resnet18().eval()
    model = _trained_statistics(plugattn.attach(copy.deepcopy(plain), attention, where, reduction=4))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k in plain.state_dict()})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, without = model(x), plain(x)
    assert (expected - without).abs().max() > 1e-3  # the attention matters to the output
    blocks = [name for name, _ in plugattn.attached_blocks(model)]
    folded_model, folded = fold_batchnorm(model, x[:1])
    if isinstance(where, list):
        assert "layer1.0.bn2" in folded and "layer2.1.bn1" not in folded  # conv1 is hooked: left alone
    assert [name for name, _ in plugattn.attached_blocks(folded_model)] == blocks
    with torch.no_grad():
        torch.testing.assert_close(folded_model(x), expected, atol=1e-4, rtol=1e-4)
        optimized = plugattn.optimize(model, x, compile=False)
        torch.testing.assert_close(optimized(x.contiguous(memory_format=torch.channels_last)), expected,
                                   atol=1e-4, rtol=1e-4)
    assert plugattn.detach(folded_model) is folded_model and not plugattn.attached_blocks(folded_model)
    with torch.no_grad():
        torch.testing.assert_close(folded_model(x), plugattn.fold_batchnorm(plain, x[:1])[0](x), atol=1e-4, rtol=1e-4)
