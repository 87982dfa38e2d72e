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


def write_wav(path: pathlib.Path, samples: torch.Tensor, rate: int = 8000, width: int = 2, channels: int = 1) -> None:
    """A PCM WAV file of ``samples`` in [-1, 1) (``width`` bytes per sample, ``channels`` copies)."""
    import wave

    scale = 2 ** (8 * width - 1) - 1
    values = (samples.clamp(-1, 1) * scale).round().to(torch.int16 if width == 2 else torch.int8)
    data = values.repeat_interleave(channels).numpy().tobytes() if width == 2 else (values + 128).to(torch.uint8).numpy().tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(data)


def make_manifest(root: pathlib.Path, *, classes: int = 3, train: int = 16, test: int = 6,
                  split_column: bool = True) -> pathlib.Path:
    """A pairs manifest of .npy samples, modality ``image`` (1, 8, 8) and ``audio`` (1, 6, 10), whose class shows in
    both modalities under noise (the image more clearly); returns the manifest's path."""
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["label,image,audio" + (",split" if split_column else "")]
    for split, count in (("train", train), ("test", test)):
        for label in range(classes):
            for index in range(count):
                image = torch.randn(1, 8, 8, generator=generator) * 0.5
                image[0, label * 2:label * 2 + 3, 2:5] += 1.5
                audio = torch.randn(1, 6, 10, generator=generator) * 0.8
                audio[0, label * 2:label * 2 + 2, :] += 1.0
                stem = f"{split}_{label}_{index}"
                np.save(root / f"{stem}_image.npy", image.numpy())
                np.save(root / f"{stem}_audio.npy", audio.numpy())
                lines.append(f"digit{label},{stem}_image.npy,{stem}_audio.npy" + (f",{split}" if split_column else ""))
    manifest = root / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
