"""Audio for multimodal data: WAV files read with the standard library's ``wave`` (no native dependency; the
spoken-digit recordings are 16-bit PCM mono), and log-mel spectrograms computed with ``torch.stft`` and a mel
filterbank (Slaney's mel scale and area normalisation, librosa's default, checked against librosa in the tests;
torchaudio's current release is pinned to an older torch than plugattn's).
"""

from __future__ import annotations

import math
import os
import wave
from typing import BinaryIO

import torch
from torch import Tensor

from plugattn.data.errors import DataError


def read_wav(source: str | os.PathLike | BinaryIO, *, rate: int | None = None, name: str | None = None) -> Tensor:
    """The samples of a mono 16-bit PCM WAV file (a path, or an open binary file called ``name`` in messages) as
    float32 in [-1, 1). Stereo, 8-bit, truncated or empty files, and (when ``rate`` is given) another sample rate
    are a :class:`~plugattn.data.DataError` naming the file: resampling would change the spectra the model sees, so it is refused
    rather than done silently."""
    is_file = hasattr(source, "read")
    path = name or (getattr(source, "name", "the WAV data") if is_file else os.fspath(source))
    try:
        with wave.open(source if is_file else path, "rb") as handle:
            channels, width, found_rate, frames = (handle.getnchannels(), handle.getsampwidth(), handle.getframerate(),
                                                   handle.getnframes())
            data = handle.readframes(frames)
    except (wave.Error, EOFError, OSError) as error:
        raise DataError(f"cannot read WAV file {path}: {error}") from error
    if channels != 1:
        raise DataError(f"WAV file {path} has {channels} channels; expected mono (1)")
    if width != 2:
        raise DataError(f"WAV file {path} holds {8 * width}-bit samples; expected 16-bit PCM")
    if rate is not None and found_rate != rate:
        raise DataError(f"WAV file {path} is sampled at {found_rate} Hz; expected {rate} Hz (resample it first)")
    if frames == 0:
        raise DataError(f"WAV file {path} is an empty recording (0 samples)")
    if len(data) != 2 * frames:
        raise DataError(f"WAV file {path} is truncated: its header promises {frames} samples, it holds {len(data) // 2}")
    return torch.frombuffer(bytearray(data), dtype=torch.int16).float().div_(32768)


def _hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    linear = hz / (200 / 3)
    logarithmic = 15 + torch.log(torch.clamp(hz, min=1e-10) / 1000) / (math.log(6.4) / 27)
    return torch.where(hz >= 1000, logarithmic, linear)


def _mel_to_hz(mel: Tensor) -> Tensor:
    linear = mel * (200 / 3)
    logarithmic = 1000 * torch.exp((math.log(6.4) / 27) * (mel - 15))
    return torch.where(mel >= 15, logarithmic, linear)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters evenly spaced on Slaney's mel scale between ``fmin`` and
    ``fmax`` (default: half the rate), each scaled to unit area (``2 / bandwidth``), as librosa's default."""
    fmax = rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= rate / 2:
        raise ValueError(f"mel filterbank needs 0 <= fmin < fmax <= rate / 2 = {rate / 2}; got fmin {fmin}, fmax {fmax}")
    frequencies = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = _mel_to_hz(torch.linspace(_hz_to_mel(torch.tensor(fmin, dtype=torch.float64)).item(),
                                      _hz_to_mel(torch.tensor(fmax, dtype=torch.float64)).item(), n_mels + 2,
                                      dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (frequencies - lower) / (centre - lower)
    falling = (upper - frequencies) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0)
    return (filters * (2 / (upper - lower))).float()


def log_mel_spectrogram(samples: Tensor, rate: int, *, n_fft: int = 256, hop: int = 80, n_mels: int = 40,
                        frames: int | None = None, floor: float = 1e-6) -> Tensor:
    """(n_mels, frames) ``log(mel power + floor)`` of a 1-D signal: Hann-windowed ``torch.stft`` (centred, zero
    padding), power spectrum, mel filterbank. ``frames`` pads (with the log of ``floor``, i.e. silence) or crops
    the end to a fixed length."""
    if samples.dim() != 1 or samples.numel() == 0:
        raise ValueError(f"samples must be a non-empty 1-D signal, got shape {tuple(samples.shape)}")
    spectrum = torch.stft(samples, n_fft, hop_length=hop, window=torch.hann_window(n_fft, dtype=samples.dtype),
                          center=True, pad_mode="constant", return_complex=True)
    mel = mel_filterbank(rate, n_fft, n_mels).to(samples.dtype) @ spectrum.abs().pow(2)
    log_mel = torch.log(mel + floor)
    if frames is None:
        return log_mel
    if log_mel.shape[1] >= frames:
        return log_mel[:, :frames]
    return torch.nn.functional.pad(log_mel, (0, frames - log_mel.shape[1]), value=math.log(floor))
