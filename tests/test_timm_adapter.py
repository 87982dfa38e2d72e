"""plugattn's models are real timm models: the checks of timm's own ``tests/test_models.py`` (forward,
backward, pretrained cfg, classifier reset, TorchScript, features_only, FX feature extraction), written
here for the registered ``plugattn_*`` models so that CI runs them offline. (The script
``scripts/run_timm_model_tests.py`` runs timm's file itself from a pytorch-image-models checkout.)"""

import functools
import math

import pytest
import timm
import torch
from timm.models import get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import plugattn
import plugattn.timm as plugattn_timm
from plugattn import create_model

MODELS = ["plugattn_resnet20", "plugattn_cbam_resnet20", "plugattn_se_preact_resnet164", "plugattn_cbam_resnet50",
          "plugattn_se_wide_resnet18_x1_5"]


def _input(model, batch=1, limit=128):
    size = tuple(min(s, limit) for s in model.default_cfg["input_size"])
    return torch.randn(batch, *size, generator=torch.Generator().manual_seed(0))


def test_every_zoo_name_is_registered_with_a_pretrained_cfg():
    names = timm.list_models("plugattn_*")
    assert sorted(names) == sorted(plugattn_timm.REGISTERED) and len(names) == len(plugattn.list_models())
    cfg = timm.get_pretrained_cfg("plugattn_cbam_resnet50").to_dict()
    assert cfg["input_size"] == (3, 224, 224) and cfg["pool_size"] == (7, 7) and cfg["num_classes"] == 1000
    assert timm.get_pretrained_cfg("plugattn_resnet20").to_dict()["pool_size"] == (8, 8)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_and_cfg_like_timms_tests(name):
    model = timm.create_model(name).eval()
    cfg = model.default_cfg
    x = _input(model, limit=448)
    with torch.no_grad():
        features = model.forward_features(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        logits = model(x)
    assert features.shape[1] == model.num_features and tuple(features.shape[-2:]) == cfg["pool_size"]
    assert pre_logits.shape == (1, model.head_hidden_size) and logits.shape == (1, model.num_classes)
    torch.testing.assert_close(logits, model.get_classifier()(pre_logits))
    state = model.state_dict()
    assert f"{cfg['classifier']}.weight" in state and f"{cfg['first_conv']}.weight" in state
    model.reset_classifier(0)
    assert model.num_classes == 0 and model(x).shape == pre_logits.shape
    model.reset_classifier(0, "")
    assert model(x).shape == features.shape
    bare = timm.create_model(name, num_classes=0, global_pool="").eval()
    assert bare(x).shape == features.shape
    trainable = timm.create_model(name, num_classes=42).train()
    out = trainable(_input(trainable, batch=2))
    out.mean().backward()
    assert out.shape == (2, 42)
    assert all(p.grad is not None for p in trainable.parameters())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "164" in n else n for n in MODELS])
def test_torchscript_with_timms_scriptable_layer_config(name):
    with timm.layers.set_layer_config(scriptable=True):
        model = timm.create_model(name).eval()
    scripted = torch.jit.script(model)
    x = _input(model)
    with torch.no_grad():
        expected = model(x)
        scale = expected.abs().max().item()  # 54 units of a fresh pre-activation net reorder sums visibly
        torch.testing.assert_close(scripted(x), expected, atol=1e-5 * max(1.0, scale), rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_features_only_through_timms_wrappers_equals_the_stage_outputs(name):
    model = timm.create_model(name, features_only=True).eval()
    channels, reductions = model.feature_info.channels(), model.feature_info.reduction()
    assert len(channels) >= 4
    x = _input(model, limit=96)
    with torch.no_grad():
        outputs = model(x)
    assert [o.shape[1] for o in outputs] == channels
    for output, reduction in zip(outputs, reductions):
        assert output.shape[-1] <= math.ceil(x.shape[-1] / reduction) + 1
    # the same levels read from the plain network with forward hooks
    plain = timm.create_model(name).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    seen = {}
    for info in plain.feature_info:
        plain.get_submodule(info["module"]).register_forward_hook(
            lambda m, a, o, key=info["module"]: seen.setdefault(key, o))
    with torch.no_grad():
        plain(x)
    for info, output in zip(plain.feature_info, outputs):
        torch.testing.assert_close(output, seen[info["module"]])
    subset = timm.create_model(name, features_only=True, out_indices=(1, 3))
    assert subset.feature_info.channels() == [channels[1], channels[3]]
    for feature_cls in ("dict", "hook", "fx"):
        wrapped = timm.create_model(name, features_only=True, feature_cls=feature_cls).eval()
        with torch.no_grad():
            result = wrapped(x)
        values = list(result.values()) if isinstance(result, dict) else result
        assert [v.shape[1] for v in values] == channels, feature_cls


@pytest.mark.parametrize("name", ["plugattn_cbam_resnet20", "plugattn_cbam_resnet50"])
def test_fx_feature_extraction_with_timms_leaf_modules(name):
    model = timm.create_model(name).eval()
    tracer = {"leaf_modules": get_notrace_modules(), "autowrap_functions": get_notrace_functions()}
    train_nodes, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer)
    extractor = create_feature_extractor(model, train_return_nodes=[train_nodes[-1]],
                                         eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer).eval()
    x = _input(model)
    with torch.no_grad():
        (out,) = extractor(x).values()
        torch.testing.assert_close(out, model(x))
    torch.jit.script(extractor)


def test_timm_arguments_are_supported_or_refused():
    model = timm.create_model("plugattn_se_resnet20", in_chans=1, reduction=4, dtype=torch.float64,
                              stages=(2, 3), position="post")
    assert model.conv1.in_channels == 1 and next(model.parameters()).dtype == torch.float64
    assert model.layer1[0].attention is None and model.layer3[0].position == "post"
    with pytest.raises(TypeError, match=r"does not support timm's \['drop_path_rate'\]"):
        timm.create_model("plugattn_resnet20", drop_path_rate=0.1)
    with pytest.raises(ValueError, match=r"global_pool must be one of 'avg', ''; got 'max'"):
        timm.create_model("plugattn_resnet20", global_pool="max")
    with pytest.raises(ValueError, match="no hub weights"):
        timm.create_model("plugattn_resnet20", pretrained=True)
    with pytest.raises(TypeError, match="does not take option"):
        timm.create_model("plugattn_se_resnet20", reductoin=4)
    assert create_model("resnet20", num_classes=0)(torch.randn(1, 3, 32, 32)).shape == (1, 64)


@pytest.mark.parametrize("block", plugattn.list_attention())
def test_every_block_works_as_timms_attn_layer(block):
    """timm's ResNets build ``attn_layer(channels)`` in each unit (before the addition): any plugattn block."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=10,
                              block_args=dict(attn_layer=functools.partial(plugattn.create_attention, block)))
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert len(plugattn.blocks.find_attention_blocks(model)) == 8
    out.sum().backward()
    blocks = plugattn.blocks.find_attention_blocks(model)
    assert all(p.grad is not None for _, b in blocks for p in b.parameters())
