"""Shared fixtures: a small real-looking ImageFolder tree and the location of the shared data sets."""

import pathlib

import pytest
import torch
from PIL import Image

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PLUGATTN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def make_image_folder(root: pathlib.Path, classes: int = 3, train: int = 48, test: int = 12, size: int = 16) -> pathlib.Path:
    """Class-per-folder PNGs whose class is visible (a coloured square at a class-specific place) under noise."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", train), ("test", test)):
        for label in range(classes):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image = torch.randint(0, 120, (3, size, size), generator=generator, dtype=torch.uint8)
                offset = label * (size // classes)
                image[label % 3, offset : offset + size // classes, :] = 255
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:04d}.png")
    return root


def trained_like(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model`` (in place) with the non-trivial BatchNorm scales, shifts and statistics a trained network has."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 2)
                module.running_mean.normal_(0, 0.2)
    return model


@pytest.fixture
def image_folder(tmp_path) -> pathlib.Path:
    return make_image_folder(tmp_path / "images")
