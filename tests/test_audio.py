"""Audio features: WAV reading against soundfile, the mel filterbank and log-mel spectrogram against librosa,
bad recordings named."""

import math
import pathlib
import tarfile
import wave

import numpy as np
import pytest
import torch

from plugattn.data import DataError
from plugattn.data.audio import log_mel_spectrogram, mel_filterbank, read_wav
from tests.conftest import SHARED_DATA

librosa = pytest.importorskip("librosa")
FSDD = SHARED_DATA / "fsdd" / "fsdd-recordings.tar.xz"


def _write(path: pathlib.Path, samples: np.ndarray, *, rate: int = 8000, channels: int = 1, width: int = 2) -> pathlib.Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> pathlib.Path:
    """A real spoken digit from the Free Spoken Digit Dataset when ../shared/data has it, else a synthetic chirp."""
    folder = tmp_path_factory.mktemp("wav")
    if FSDD.exists():
        with tarfile.open(FSDD) as archive:
            member = archive.getmember("recordings/7_jackson_12.wav")
            (folder / "digit.wav").write_bytes(archive.extractfile(member).read())
        return folder / "digit.wav"
    time = np.arange(4000) / 8000
    chirp = (0.5 * np.sin(2 * np.pi * (200 + 1500 * time) * time) * 32767).astype(np.int16)
    return _write(folder / "digit.wav", chirp)


@pytest.mark.parametrize(("rate", "n_fft", "n_mels", "fmin", "fmax"), [(8000, 256, 40, 0.0, None),
                                                                       (16000, 512, 64, 20.0, 7600.0)])
def test_mel_filterbank_equals_librosas(rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax)
    theirs = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    assert ours.shape == theirs.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-7, rtol=1e-5)


def test_reading_and_log_mel_equal_soundfile_and_librosa(recording):
    import soundfile

    samples = read_wav(recording, rate=8000)
    reference, rate = soundfile.read(str(recording), dtype="float32")
    assert rate == 8000 and torch.equal(samples, torch.from_numpy(reference))
    ours = log_mel_spectrogram(samples.double(), 8000, n_fft=256, hop=80, n_mels=40)
    power = librosa.feature.melspectrogram(y=reference.astype(np.float64), sr=8000, n_fft=256, hop_length=80,
                                           n_mels=40, power=2.0, center=True, pad_mode="constant")
    np.testing.assert_allclose(ours.numpy(), np.log(power + 1e-6), atol=1e-6)
    fixed = log_mel_spectrogram(samples, 8000, frames=200)
    assert fixed.shape == (40, 200) and torch.all(fixed[:, ours.shape[1]:] == math.log(1e-6))
    assert log_mel_spectrogram(samples, 8000, frames=3).shape == (40, 3)


def test_bad_recordings_are_named(tmp_path):
    good = np.arange(-100, 100, dtype=np.int16)
    with pytest.raises(DataError, match=r"stereo\.wav has 2 channels; expected mono"):
        read_wav(_write(tmp_path / "stereo.wav", np.repeat(good, 2), channels=2))
    with pytest.raises(DataError, match=r"eight\.wav holds 8-bit samples; expected 16-bit PCM"):
        read_wav(_write(tmp_path / "eight.wav", (good % 256).astype(np.uint8), width=1))
    with pytest.raises(DataError, match=r"fast\.wav is sampled at 16000 Hz; expected 8000 Hz"):
        read_wav(_write(tmp_path / "fast.wav", good, rate=16000), rate=8000)
    with pytest.raises(DataError, match=r"empty\.wav is an empty recording"):
        read_wav(_write(tmp_path / "empty.wav", np.zeros(0, np.int16)))
    whole = _write(tmp_path / "cut.wav", good).read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[:-50])
    with pytest.raises(DataError, match=r"cut\.wav is truncated: its header promises 200 samples, it holds 175"):
        read_wav(tmp_path / "cut.wav")
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really")
    with pytest.raises(DataError, match=r"cannot read WAV file .*noise\.wav"):
        read_wav(tmp_path / "noise.wav")
    assert torch.equal(read_wav(_write(tmp_path / "ok.wav", good)), torch.from_numpy(good.astype(np.float32) / 32768))
