"""AV-MNIST from MNIST and the Free Spoken Digit Dataset: pairing by digit within a split, PCA fitted on the
training images only, noise at the stated SNR, cached features, the speaker split, bad input."""

import pathlib
import wave

import numpy as np
import pytest
import torch

from plugattn.data import DataError
from plugattn.data.avmnist import AVMNISTOptions, add_noise, load_avmnist, principal_projection
from plugattn.data.images import read_idx
from tests.conftest import SHARED_DATA

needs_data = pytest.mark.skipif(not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "fsdd").is_dir(),
                                reason="MNIST and FSDD are not in ../shared/data (a user's clone has no shared/)")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def official(cache_dir):
    return load_avmnist(SHARED_DATA, cache_dir=cache_dir)


@needs_data
def test_each_image_is_paired_with_a_recording_of_its_digit_from_its_split(official):
    for split, indices in (("train", range(5, 50)), ("test", range(0, 5))):
        part = getattr(official, split)
        names = [part.names[int(i)] for i in part.recording]
        assert [int(name[0]) for name in names] == part.labels.tolist()
        assert all(int(name.rsplit("_", 1)[1].removesuffix(".wav")) in indices for name in names)
    assert len(official.train) == 60000 and len(official.test) == 10000 and not official.skipped
    assert official.reuse == pytest.approx({"train": 60000 / 2700, "test": 10000 / 300})
    (image, audio), label = official.test[3]
    assert image.shape == (1, 28, 28) and audio.shape == (1, 40, 64) and label == int(official.test.labels[3])


@needs_data
def test_images_keep_the_training_sets_leading_components_only(official):
    train = torch.from_numpy(read_idx(SHARED_DATA / "mnist" / "train-images-idx3-ubyte.gz", 0x803).copy())
    flat = train.flatten(1).double() / 255
    mean, basis = principal_projection(flat, 0.25)
    variance = torch.linalg.svdvals(flat[::10] - flat[::10].mean(0)) ** 2  # an independent estimate, on a sample
    kept = basis.shape[1]
    assert (variance[:kept].sum() / variance.sum()).item() >= 0.24 and (variance[:kept - 1].sum() / variance.sum()) < 0.26
    rebuilt = ((flat[:5] - mean) @ basis @ basis.T + mean).float().view(-1, 1, 28, 28)
    torch.testing.assert_close(official.train.images[:5], rebuilt)
    residual = (official.train.images.flatten(1).double() - flat).pow(2).sum() / (flat - flat.mean(0)).pow(2).sum()
    assert 0.70 < residual.item() < 0.78  # about three quarters of the variance removed


@needs_data
def test_the_second_load_reads_the_cache_and_gives_the_same_data(official, cache_dir):
    assert len(list(cache_dir.glob("avmnist-*.safetensors"))) == 1
    again = load_avmnist(SHARED_DATA, cache_dir=cache_dir)
    assert torch.equal(again.train.audio[:100], official.train.audio[:100])
    assert torch.equal(again.test.images, official.test.images) and torch.equal(again.test.labels, official.test.labels)


def test_noise_has_the_stated_snr():
    signal = torch.sin(torch.arange(80000) / 7.0)
    for snr in (-5.0, 0.0, 10.0):
        noisy = add_noise(signal, snr, torch.Generator().manual_seed(0))
        measured = 10 * torch.log10(signal.pow(2).mean() / (noisy - signal).pow(2).mean())
        assert measured.item() == pytest.approx(snr, abs=0.1)


def _wav(path: pathlib.Path, samples: np.ndarray, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(2)
        handle.setframerate(8000)
        handle.writeframes(samples.astype(np.int16).tobytes())


@needs_data
def test_speaker_split_and_unreadable_recordings(tmp_path):
    root = tmp_path / "data"
    (root / "fsdd" / "recordings").mkdir(parents=True)
    (root / "mnist").symlink_to(SHARED_DATA / "mnist")
    tone = (np.sin(np.arange(3000) / 3.0) * 8000)
    for digit in range(10):
        for speaker in ("theo", "lucas"):
            _wav(root / "fsdd" / "recordings" / f"{digit}_{speaker}_7.wav", tone * (digit + 1) / 10)
    _wav(root / "fsdd" / "recordings" / "3_lucas_8.wav", np.repeat(tone, 2), channels=2)
    data = load_avmnist(root, AVMNISTOptions(split="speaker:theo"), cache_dir=tmp_path / "cache")
    assert {data.test.names[int(i)].split("_")[1] for i in data.test.recording.unique()} == {"theo"}
    assert {data.train.names[int(i)].split("_")[1] for i in data.train.recording.unique()} == {"lucas"}
    assert data.skipped == ["WAV file 3_lucas_8.wav has 2 channels; expected mono (1)"]
    with pytest.raises(DataError, match=r"split must be 'official' or 'speaker:NAME' .*got 'speaker:bob'"):
        load_avmnist(root, AVMNISTOptions(split="speaker:bob"))
    with pytest.raises(DataError, match=r"image_energy must be in \(0, 1\]"):
        load_avmnist(root, AVMNISTOptions(image_energy=0))
    (root / "fsdd" / "recordings" / "0_theo_7.wav").unlink()
    with pytest.raises(DataError, match="no readable test recording of digit 0"):
        load_avmnist(root, AVMNISTOptions(split="speaker:theo", seed=1), cache_dir=tmp_path / "cache")
    (tmp_path / "images-only").mkdir()
    (tmp_path / "images-only" / "mnist").symlink_to(SHARED_DATA / "mnist")
    with pytest.raises(DataError, match=r"FSDD recordings not found: expected .*fsdd/recordings/\*\.wav"):
        load_avmnist(tmp_path / "images-only", cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match=r"MNIST files not found"):
        load_avmnist(tmp_path / "cache", cache_dir=tmp_path / "cache")
