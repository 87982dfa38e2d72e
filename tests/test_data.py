"""Image folders of any size: streamed with torchvision transforms v2 (ImageNet- or CIFAR-style), mixed sizes
without distortion, grey or RGB, undecodable files skipped and counted, exact resume; small folders cached."""

import pathlib

import pytest
import torch
from PIL import Image

from plugattn.data import DataError, FolderImages, collate_skipping, load_data
from plugattn.training import TrainConfig, train


def _mixed_folder(root: pathlib.Path, *, grey: bool = False, classes: int = 2, per_class: int = 12) -> pathlib.Path:
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label in range(classes):
            folder = root / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                height, width = 24 + 8 * (index % 3), 40 - 4 * (index % 4)  # every aspect ratio differs
                pixels = torch.randint(0, 256, (height, width, 1 if grey else 3), generator=generator, dtype=torch.uint8)
                pixels[..., 0][:, : width // 2] = 255 if label else 0  # the class is visible
                Image.fromarray(pixels.squeeze(-1).numpy() if grey else pixels.numpy()).save(folder / f"{index}.png")
    return root


def test_mixed_sizes_stream_with_imagenet_augmentation(tmp_path):
    root = _mixed_folder(tmp_path / "mixed")
    data = load_data(f"imagefolder:{root}", image_size=32, augment="imagenet")
    assert isinstance(data.train, FolderImages) and data.image_size == (32, 32) and data.in_channels == 3
    image, label = data.train[5]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(data.train[5][0], image)  # the same (epoch, index) draws the same crop
    assert not torch.equal(data.train[5 + len(data.train)][0], image)  # the next epoch another
    evaluation = data.test[3][0]
    assert torch.equal(data.test[3][0], evaluation)  # Resize + CenterCrop: deterministic
    with pytest.raises(DataError, match=r"images differ in size .*pass --image-size"):
        load_data(f"imagefolder:{root}")
    cached = load_data(f"imagefolder:{root}", image_size=32)  # small and cifar-style: decoded into memory
    assert cached.train.images.shape == (24, 3, 32, 32) and cached.crop_padding == 4


def test_grey_folders_and_bad_input(tmp_path):
    grey = load_data(f"imagefolder:{_mixed_folder(tmp_path / 'grey', grey=True)}", image_size=16, augment="imagenet")
    assert grey.in_channels == 1 and grey.train[0][0].shape == (1, 16, 16)
    root = _mixed_folder(tmp_path / "ok")
    with pytest.raises(DataError, match="image_size must be a positive int"):
        load_data(f"imagefolder:{root}", image_size=0)
    with pytest.raises(DataError, match="augment must be one of"):
        load_data(f"imagefolder:{root}", image_size=16, augment="autoaugment")
    with pytest.raises(DataError, match="streams from disk.*pass --image-size"):
        load_data(f"imagefolder:{root}", augment="imagenet")
    with pytest.raises(DataError, match="--augment imagenet and --image-size are for imagefolder"):
        load_data("fashion-mnist", augment="imagenet")
    (root / "train" / "c2").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train/c2 holds no image files"):
        load_data(f"imagefolder:{root}", image_size=16)
    single = tmp_path / "single"
    for split in ("train", "test"):
        (single / split / "only").mkdir(parents=True)
    with pytest.raises(DataError, match=r"single/train must hold at least 2 class folders, found \['only'\]"):
        load_data(f"imagefolder:{single}", image_size=16)


def test_undecodable_files_are_skipped_reported_and_counted(tmp_path, capfd):
    root = _mixed_folder(tmp_path / "broken")
    bad = root / "train" / "c1" / "3.png"
    bad.write_bytes(b"not an image")
    data = load_data(f"imagefolder:{root}", image_size=16, augment="imagenet")
    batch = collate_skipping([data.train[index] for index in range(len(data.train))])
    images, labels = batch
    assert batch.skipped == 1 and len(labels) == len(data.train) - 1
    assert str(bad) in capfd.readouterr().err
    summary = train(TrainConfig(model="resnet20", dataset=f"imagefolder:{root}", image_size=16, augment="imagenet",
                                epochs=1, batch_size=8, out_dir=str(tmp_path / "run"), progress=False))
    assert summary["top1"] >= 0  # the run finished
    from plugattn.checkpoint import load_checkpoint

    history = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]["history"]
    assert history[0]["skipped_images"] >= 1


def test_streamed_training_resumes_exactly(tmp_path):
    root = _mixed_folder(tmp_path / "data")
    common = dict(model="resnet20", attention="se", reduction=4, dataset=f"imagefolder:{root}", image_size=16,
                  augment="imagenet", batch_size=8, lr=0.05, schedule="constant", progress=False)
    train(TrainConfig(**common, epochs=2, out_dir=str(tmp_path / "whole")))
    train(TrainConfig(**common, epochs=1, out_dir=str(tmp_path / "cut")))
    train(TrainConfig(**common, epochs=2, out_dir=str(tmp_path / "cut")), resume=tmp_path / "cut" / "last.safetensors")
    from plugattn.checkpoint import load_checkpoint

    whole, cut = load_checkpoint(tmp_path / "whole" / "last.safetensors")[0], load_checkpoint(tmp_path / "cut" / "last.safetensors")[0]
    for name in whole:
        if name.startswith("model."):
            assert torch.equal(whole[name], cut[name]), name


def test_random_resized_crop_follows_torchvisions_rule():
    from plugattn.data import random_resized_crop

    crops = [random_resized_crop(40, 60, torch.Generator().manual_seed(seed)) for seed in range(300)]
    assert crops[7] == random_resized_crop(40, 60, torch.Generator().manual_seed(7))  # its seed alone decides
    for top, left, height, width in crops:
        assert 0 <= top <= 40 - height and 0 <= left <= 60 - width
        assert 0.08 * 2400 * 0.9 <= height * width <= 2400 and 3 / 4 * 0.8 <= width / height <= 4 / 3 * 1.25
    areas = torch.tensor([h * w / 2400 for _, _, h, w in crops])
    assert 0.35 < areas.mean() < 0.65  # uniform share in (0.08, 1), a few large draws rejected: mean near 0.5
