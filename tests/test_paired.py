"""Paired data: a user's manifest (images, WAVs, arrays), modality dropout, corruptions, statistics, AV-MNIST as
paired data, and fetching AV-MNIST's sources (digests checked against the shared copies; offline failure)."""

import hashlib
import gzip
import pathlib
import urllib.error

import numpy as np
import pytest
import torch

from plugattn.data import DataError
from plugattn.data.fetch import FSDD_DIGEST, MNIST_SHA256, fetch_avmnist, fetch_mnist, recordings_digest
from plugattn.data.paired import (
    PairedTensors,
    PairedTransform,
    channel_statistics,
    load_manifest,
    load_paired,
    parse_corruptions,
)
from tests.conftest import make_manifest, write_wav

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir() or not (SHARED / "fsdd").is_dir(),
                                  reason=f"AV-MNIST sources not found in {SHARED} (mnist/ and fsdd/)")


def test_a_manifest_of_arrays_loads_with_its_split_and_statistics(tmp_path):
    data = load_manifest(make_manifest(tmp_path))
    assert data.modalities == ("image", "audio") and data.classes == ("digit0", "digit1", "digit2")
    assert (len(data.train), len(data.test)) == (48, 18)
    assert data.shapes == {"image": (1, 8, 8), "audio": (1, 6, 10)}
    images = data.train.modality(0)
    # float32 data: each row's spread is taken in float32, the rows combined in float64
    assert data.mean[0][0] == pytest.approx(images.double().mean().item(), rel=1e-6)
    assert data.std[0][0] == pytest.approx(images.double().std().item(), rel=1e-6)
    (x_image, x_audio), label = data.test[0]
    assert x_image.shape == (1, 8, 8) and x_audio.shape == (1, 6, 10) and label == 0


def test_a_manifest_without_split_is_split_at_random_reproducibly(tmp_path):
    manifest = make_manifest(tmp_path, split_column=False)
    first, again = load_manifest(manifest, seed=3), load_manifest(manifest, seed=3)
    assert len(first.test) == round(66 * 0.2) and len(first.train) == 66 - len(first.test)
    assert torch.equal(first.test.modality(0), again.test.modality(0))
    assert not torch.equal(first.test.modality(0), load_manifest(manifest, seed=4).test.modality(0))


def test_images_and_wavs_in_a_manifest(tmp_path):
    from PIL import Image

    lines = ["label,image,audio,split"]
    for index in range(6):
        Image.fromarray(np.full((5, 7, 3), 40 * index, dtype=np.uint8)).save(tmp_path / f"{index}.png")
        write_wav(tmp_path / f"{index}.wav", torch.sin(torch.arange(2000) * 0.05 * (index + 1)) * 0.5)
        lines.append(f"{index % 2},{index}.png,{index}.wav,{'train' if index < 4 else 'test'}")
    write_wav(tmp_path / "stereo.wav", torch.zeros(2000), channels=2)
    lines.append("0,0.png,stereo.wav,train")  # undecodable: skipped and named
    (tmp_path / "pairs.csv").write_text("\n".join(lines))
    data = load_manifest(tmp_path / "pairs.csv")
    assert data.shapes["image"] == (3, 5, 7) and data.shapes["audio"][0] == 1 and data.shapes["audio"][1] == 40
    assert torch.allclose(data.train.modality(0)[1], torch.full((3, 5, 7), 40 / 255))
    assert len(data.skipped) == 1 and "stereo.wav" in data.skipped[0] and "2 channels" in data.skipped[0]


@pytest.mark.parametrize(("edit", "fragments"), [
    (lambda rows: rows[:1] + [rows[1].replace("train_0_0_image.npy", "gone.npy")] + rows[2:], ["not found", "gone.npy"]),
    (lambda rows: rows[:1] + [",".join(["digit0", "", *rows[1].split(",")[2:]])] + rows[2:], ["empty cell", "image"]),
    (lambda rows: ["label,image"] + rows[1:], ["header", "MODALITY2"]),
    (lambda rows: rows[:1] + [rows[1].rsplit(",", 1)[0] + ",dev"] + rows[2:], ["split must be", "'dev'"]),
    (lambda rows: rows[:1] + [rows[1].replace("train_0_0_image.npy", "train_0_0_image.txt")] + rows[2:],
     ["expected an image", ".txt"]),
])
def test_bad_manifests_are_named(tmp_path, edit, fragments):
    manifest = make_manifest(tmp_path)
    rows = manifest.read_text().splitlines()
    (tmp_path / "train_0_0_image.txt").write_text("x")
    manifest.write_text("\n".join(edit(rows)) + "\n")
    with pytest.raises(DataError) as error:
        load_manifest(manifest)
    assert all(fragment in str(error.value) for fragment in fragments), str(error.value)


def test_wavs_of_one_modality_must_share_a_sample_rate(tmp_path):
    lines = ["label,x,y,split"]
    for index, rate in enumerate((8000, 16000)):
        np.save(tmp_path / f"{index}.npy", np.zeros((1, 4), dtype=np.float32))
        write_wav(tmp_path / f"{index}.wav", torch.zeros(800) + 0.1, rate=rate)
        lines.append(f"0,{index}.npy,{index}.wav,train")
    (tmp_path / "pairs.csv").write_text("\n".join(lines))
    with pytest.raises(DataError, match="need samples in both splits"):
        load_manifest(tmp_path / "pairs.csv")  # the 16 kHz file is refused (skipped, named), none reach test
    assert any("16000 Hz; expected 8000 Hz" in reason for reason in _skipped(tmp_path / "pairs.csv"))


def _skipped(manifest: pathlib.Path) -> list[str]:
    rows = manifest.read_text().splitlines()
    manifest.write_text("\n".join(rows + [rows[1].replace("train", "test")]))
    return load_manifest(manifest).skipped


def test_modality_dropout_never_drops_every_modality_and_repeats_with_its_generator():
    transform = PairedTransform([[0.0], [0.0], [0.0]], [[1.0], [1.0], [1.0]], dropout=0.6)
    inputs = [torch.ones(4000, 1, 2), torch.ones(4000, 1, 3, 3), torch.ones(4000, 1)]
    out = transform(inputs, torch.Generator().manual_seed(0))
    kept = torch.stack([x.flatten(1).amax(1) > 0 for x in out], 1)
    assert kept.any(1).all()
    assert 0.3 < 1 - kept.float().mean().item() < 0.6  # 0.6 drawn, then one modality spared where all three fell
    again = transform(inputs, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    assert all(torch.equal(x, torch.ones_like(x)) for x in transform(inputs))  # evaluation: no dropout


def test_statistics_of_shared_rows_equal_those_of_the_expanded_tensor():
    rows = torch.tensor([0, 0, 2, 1, 2, 2])
    features = torch.randn(3, 2, 4, 5, dtype=torch.float64)
    expanded = features[rows]
    mean, std = channel_statistics(features, rows)
    assert mean == pytest.approx(expanded.mean((0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(expanded.std((0, 2, 3)).tolist(), abs=1e-12)
    split = PairedTensors([torch.zeros(6, 1), features], torch.arange(6), [None, rows])
    assert torch.equal(split[4][0][1], features[2])


def test_corruptions_parse_and_apply(tmp_path):
    assert parse_corruptions("image=blank,audio=noise:-5") == {"image": ("blank", None), "audio": ("noise", -5.0)}
    for bad in ("image", "image=blur", "image=noise", "image=noise:loud", "=blank"):
        with pytest.raises(ValueError, match="--corrupt"):
            parse_corruptions(bad)
    data = load_manifest(make_manifest(tmp_path))
    blank = data.corrupted({"image": ("blank", None)})
    normalised = blank.transform()(blank.test_batch(5)[0])
    assert torch.allclose(normalised[0], torch.zeros_like(normalised[0]), atol=1e-6)
    assert torch.equal(blank.test.modality(1), data.test.modality(1))
    noisy = data.corrupted({"audio": ("noise", 2.0)})
    added = noisy.test.modality(1) - data.test.modality(1)
    assert added.std().item() == pytest.approx(2 * data.std[1][0], rel=0.1)
    with pytest.raises(ValueError, match="'depth'.*\\['image', 'audio'\\]"):
        data.corrupted({"depth": ("blank", None)})


@needs_shared
def test_avmnist_as_paired_data_and_its_audio_corruption_at_an_snr():
    data = load_paired("avmnist", SHARED)
    assert data.shapes == {"image": (1, 28, 28), "audio": (1, 40, 64)} and (len(data.train), len(data.test)) == (60000, 10000)
    assert "recordings at 10 dB SNR" in data.notes[0]
    louder = data.corrupted({"audio": ("noise", -10.0)})
    clean_audio, noisy_audio = data.test_batch(50)[0][1], louder.test_batch(50)[0][1]
    assert torch.equal(data.test_batch(50)[0][0], louder.test_batch(50)[0][0])
    assert noisy_audio.mean() > clean_audio.mean() + 0.5  # ten times more noise power: louder log-mel everywhere


@needs_shared
def test_the_fetch_digests_are_those_of_the_shared_sources(tmp_path):
    for name, expected in MNIST_SHA256.items():
        assert hashlib.sha256(gzip.decompress((SHARED / "mnist" / name).read_bytes())).hexdigest() == expected
    import tarfile

    with tarfile.open(next((SHARED / "fsdd").glob("*.tar*"))) as archive:
        recordings = {pathlib.Path(m.name).name: archive.extractfile(m).read() for m in archive.getmembers()
                      if m.isfile() and m.name.endswith(".wav")}
    assert len(recordings) == 3000 and recordings_digest(recordings) == FSDD_DIGEST
    (tmp_path / "mnist").mkdir()
    for name in MNIST_SHA256:
        (tmp_path / "mnist" / name).write_bytes((SHARED / "mnist" / name).read_bytes())
    reports: list[str] = []
    fetch_mnist(tmp_path, report=reports.append)  # present and correct: nothing downloaded
    assert len(reports) == 4 and all("checksum correct" in line and "present" in line for line in reports)


def test_fetching_offline_fails_with_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    def offline(url, timeout):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DataError) as error:
        fetch_avmnist(tmp_path / "data", report=lambda line: None)
    message = str(error.value)
    assert "cannot download https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert "offline?" in message and "--data-dir" in message
    assert not any(path.is_file() for path in (tmp_path / "data").rglob("*"))
