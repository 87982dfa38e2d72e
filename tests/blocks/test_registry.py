"""The name -> block registry."""

import pytest
import torch
from torch import nn

import plugattn
from plugattn import CBAM, ChannelGate, SpatialGate, SqueezeExcite, create_attention, list_attention, register_attention


def test_builtin_names_build_the_right_blocks():
    assert {"se", "cbam", "cbam-channel", "channel", "spatial", "bam", "eca", "coord", "simam", "triplet", "gc",
            "scse"} <= set(list_attention())
    assert isinstance(create_attention("se", 32), SqueezeExcite)
    assert isinstance(create_attention("channel", 32), ChannelGate)
    assert isinstance(create_attention("spatial", 32, kernel_size=3), SpatialGate)
    cbam = create_attention("cbam", 32, reduction=8, order="parallel", pool_types=["avg", "lse"])
    assert isinstance(cbam, CBAM) and cbam.order == "parallel" and cbam.channel_gate.pool_types == ["avg", "lse"]
    channel_only = create_attention("cbam-channel", 32)
    assert isinstance(channel_only, CBAM) and channel_only.spatial_gate is None


def test_unknown_name_lists_names_and_close_matches():
    with pytest.raises(ValueError, match=r"attention must be one of .*'cbam'.*got 'cbma'.*did you mean 'cbam'"):
        create_attention("cbma", 32)


def test_unknown_option_names_the_option_and_the_accepted_ones():
    with pytest.raises(TypeError, match=r"'se' does not take option\(s\) \['kernel_size'\].*'reduction'"):
        create_attention("se", 32, kernel_size=7)


def test_options_reach_the_block_and_are_checked_there():
    with pytest.raises(ValueError, match="reduction"):
        create_attention("cbam", 32, reduction=0)
    with pytest.raises(ValueError, match="channels"):
        create_attention("spatial", 0)


def test_users_register_their_own_block():
    @register_attention("test-scale")
    class Scale(nn.Module):
        def __init__(self, channels: int, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    try:
        assert "test-scale" in list_attention()
        block = create_attention("test-scale", 8, factor=3.0)
        torch.testing.assert_close(block(torch.ones(1, 8, 2)), torch.full((1, 8, 2), 3.0))
        with pytest.raises(ValueError, match="already registered"):
            register_attention("test-scale", Scale)
        register_attention("test-scale", SqueezeExcite, overwrite=True)
        assert isinstance(create_attention("test-scale", 8), SqueezeExcite)
    finally:
        plugattn.blocks.registry._REGISTRY.pop("test-scale", None)


def test_register_rejects_non_callables():
    with pytest.raises(TypeError, match="callable"):
        register_attention("test-bad", 42)


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations made in a test stay in that test."""
    monkeypatch.setattr(plugattn.blocks.registry, "_REGISTRY", dict(plugattn.blocks.registry._REGISTRY))


def test_a_factory_returning_a_plain_container_marks_that_instance_only(private_registry):
    import torchvision

    from plugattn import attach
    from plugattn.blocks import find_attention_blocks, is_attention_block

    register_attention("test-seq", lambda channels, **options: nn.Sequential(nn.Identity()))
    block = create_attention("test-seq", 8)
    assert is_attention_block(block) and not is_attention_block(nn.Sequential(nn.Identity()))
    model = attach(torchvision.models.resnet18(), "se")  # its Sequential stages are not attention blocks
    assert len(find_attention_blocks(model)) == 8
    assert all(isinstance(b, SqueezeExcite) for _, b in find_attention_blocks(model))


def test_a_factory_must_return_a_module(private_registry):
    register_attention("test-not-module", lambda channels, **options: "a string")
    with pytest.raises(TypeError, match="test-not-module.*must return an nn.Module, got str"):
        create_attention("test-not-module", 8)
