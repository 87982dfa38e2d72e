"""optimize(): BatchNorm folding (only where a BN really follows its conv), channels-last, compile."""

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
    folded = fold_batchnorm(model, x[:1])
    assert folded == expected_folds
    torch.testing.assert_close(model(x), reference, atol=1e-4, rtol=1e-4)


def test_folds_torchvision_resnet_conv_bn_pairs():
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    reference = model(x)
    assert fold_batchnorm(model, x) == 1 + 8 * 2 + 3  # stem, two per block, three downsample pairs
    torch.testing.assert_close(model(x), reference, atol=1e-4, rtol=1e-4)


def test_optimize_returns_a_faithful_copy_and_leaves_the_model_alone():
    model = _randomise_statistics(create_model("cbam_resnet20"))
    keys = list(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    fast = optimize(model, x[:1], compile=False)
    torch.testing.assert_close(fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-4, rtol=1e-4)
    assert list(model.state_dict()) == keys
