"""Paired data: one tensor per modality per sample, for multi-stream networks — AV-MNIST
(:mod:`plugattn.data.avmnist`) and a user's own pairs from a CSV manifest (``pairs:manifest.csv``).

Every modality is normalised per channel with its training split's statistics. In training, ``modality dropout``
replaces each modality of each sample, with probability p, by its training mean (zero after normalisation), never
all of a sample's modalities at once. For evaluation, corruptions degrade a modality of the test split:
``blank`` / ``silence`` (the modality replaced by its training mean: what modality dropout shows the network) and
``noise:S`` (Gaussian noise of S training standard deviations added; for AV-MNIST's audio, S is an SNR in dB: the
test recordings rebuilt with white noise at S dB instead of the data set's own).
"""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from plugattn.data.audio import log_mel_spectrogram, read_wav
from plugattn.data.avmnist import AVMNISTOptions, load_avmnist, test_features_at_snr
from plugattn.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
CORRUPTIONS = ("blank", "silence", "noise")


class PairedTensors(Dataset):
    """Samples as ``((x_1, …, x_M), label)`` from one tensor per modality and labels (N,). A modality's tensor holds
    a row per sample, or (with ``rows[m]``, a sample → row index) rows shared by several samples, as AV-MNIST's
    recordings are."""

    def __init__(self, inputs: Sequence[Tensor], labels: Tensor, rows: Sequence[Tensor | None] | None = None) -> None:
        self.inputs = tuple(inputs)
        self.rows = tuple(rows) if rows is not None else (None,) * len(self.inputs)
        sizes = [len(x) if r is None else len(r) for x, r in zip(self.inputs, self.rows)]
        if any(size != len(labels) for size in sizes):
            raise DataError(f"every modality needs one sample per label ({len(labels)}), got {sizes}")
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[tuple[Tensor, ...], int]:
        return (tuple(x[index if r is None else r[index]] for x, r in zip(self.inputs, self.rows)),
                int(self.labels[index]))

    def modality(self, index: int) -> Tensor:
        """Modality ``index``'s tensor with one row per sample (N, C, …)."""
        rows = self.rows[index]
        return self.inputs[index] if rows is None else self.inputs[index][rows]

    def shape(self, index: int) -> tuple[int, ...]:
        """``(C, *spatial)`` of modality ``index``."""
        return tuple(self.inputs[index].shape[1:])


def channel_statistics(x: Tensor, rows: Tensor | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of (R, C, …), each row counted as often as ``rows`` uses it (every
    row once without it); a std of 0 becomes 1. One pass over the data: each row's own mean and spread (float32
    data in float32), combined exactly in float64 (Chan et al.'s pairwise update)."""
    counts = torch.ones(len(x), dtype=torch.float64) if rows is None else \
        torch.bincount(rows, minlength=len(x)).double()
    per_row = x.flatten(2)
    positions = per_row.shape[2]
    precision = torch.promote_types(per_row.dtype, torch.float32)
    row_variance, row_mean = (part.double() for part in torch.var_mean(per_row.to(precision), dim=2, correction=0))
    size = counts.sum() * positions
    mean = counts @ row_mean * positions / size
    spread = counts @ (row_variance + (row_mean - mean) ** 2) * positions
    std = (spread / (size - 1)).sqrt()
    return tuple(mean.tolist()), tuple(torch.where(std > 0, std, 1).tolist())


class PairedTransform:
    """Raw modality tensors -> normalised float tensors; with a generator (training) and ``dropout`` > 0, modality
    dropout per sample (see the module's docstring)."""

    def __init__(self, mean: Sequence[Sequence[float]], std: Sequence[Sequence[float]], dropout: float = 0.0) -> None:
        if not 0 <= dropout < 1:
            raise ValueError(f"modality_dropout must be in [0, 1), got {dropout}")
        self.mean, self.std, self.dropout = [list(m) for m in mean], [list(s) for s in std], dropout

    def __call__(self, inputs: Sequence[Tensor], generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        xs = [(x.float() - _per_channel(m, x)) / _per_channel(s, x) for x, m, s in zip(inputs, self.mean, self.std)]
        if generator is None or not self.dropout:
            return tuple(xs)
        n, count = len(xs[0]), len(xs)
        drop = torch.rand(n, count, generator=generator) < self.dropout
        spared = torch.randint(count, (n,), generator=generator)
        drop[drop.all(1), spared[drop.all(1)]] = False  # never every modality of a sample
        return tuple(torch.where(drop[:, index].view(n, *(1,) * (x.dim() - 1)).to(x.device), 0.0, x)
                     for index, x in enumerate(xs))


def _per_channel(values: Sequence[float], like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, *(1,) * (like.dim() - 2))


@dataclass
class PairedBundle:
    """Train and test splits of paired samples and what a multi-stream model needs to know about them."""

    name: str
    train: PairedTensors
    test: PairedTensors
    classes: tuple[str, ...]
    modalities: tuple[str, ...]
    mean: tuple[tuple[float, ...], ...]
    std: tuple[tuple[float, ...], ...]
    skipped: list[str] = field(default_factory=list)
    """Samples that could not be decoded (named, with the reason)."""
    notes: list[str] = field(default_factory=list)
    """What the source did (pairing, reuse, degradations), for the run log."""
    corrupt_hooks: Mapping[str, Callable[[str, float], Tensor]] = field(default_factory=dict)
    """Per modality, a source's own ``noise`` corruption: (kind, strength) -> the corrupted test tensor."""
    modality_dropout: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """``(C, *spatial)`` of each modality."""
        return {name: self.train.shape(index) for index, name in enumerate(self.modalities)}

    @property
    def in_channels(self) -> dict[str, int]:
        return {name: shape[0] for name, shape in self.shapes.items()}

    def transform(self) -> PairedTransform:
        return PairedTransform(self.mean, self.std, self.modality_dropout)

    def example_input(self, count: int = 1) -> tuple[Tensor, ...]:
        """Zeros shaped like ``count`` samples, one tensor per modality."""
        return tuple(torch.zeros(count, *shape) for shape in self.shapes.values())

    def test_batch(self, count: int) -> tuple[tuple[Tensor, ...], Tensor]:
        """The first ``count`` test samples (raw) and labels."""
        count = min(count, len(self.test))
        items = [self.test[index][0] for index in range(count)]
        return tuple(torch.stack(parts) for parts in zip(*items)), self.test.labels[:count]

    def corrupted(self, corruptions: Mapping[str, tuple[str, float | None]], seed: int = 0) -> "PairedBundle":
        """This bundle with its test split's modalities corrupted (see :func:`parse_corruptions`)."""
        inputs, rows = list(self.test.inputs), list(self.test.rows)
        generator = torch.Generator().manual_seed(seed)
        for modality, (kind, strength) in corruptions.items():
            if modality not in self.modalities:
                raise ValueError(f"--corrupt names modality {modality!r}, but the data have {list(self.modalities)}")
            index = self.modalities.index(modality)
            if kind in ("blank", "silence"):
                x = inputs[index].float()
                inputs[index] = _per_channel(self.mean[index], x).expand_as(x).clone()
            elif modality in self.corrupt_hooks:
                inputs[index] = self.corrupt_hooks[modality](kind, strength)
            else:  # per sample: rows shared by several samples get noise of their own in each
                x = self.test.modality(index).float()
                noise = torch.randn(x.shape, generator=generator) * _per_channel(self.std[index], x)
                inputs[index], rows[index] = x + strength * noise, None
        return replace(self, test=PairedTensors(inputs, self.test.labels, rows))


def parse_corruptions(text: str | None) -> dict[str, tuple[str, float | None]]:
    """``"image=blank,audio=noise:0"`` -> ``{"image": ("blank", None), "audio": ("noise", 0.0)}``."""
    if not text:
        return {}
    parsed: dict[str, tuple[str, float | None]] = {}
    for item in text.split(","):
        modality, sep, how = item.strip().partition("=")
        kind, _, strength = how.partition(":")
        if not sep or not modality or kind not in CORRUPTIONS or (kind == "noise") != bool(strength):
            raise ValueError(f"--corrupt takes MODALITY=blank|silence|noise:S, comma-separated (e.g. "
                             f"image=blank,audio=noise:0); got {item.strip()!r}")
        try:
            parsed[modality] = (kind, float(strength) if strength else None)
        except ValueError:
            raise ValueError(f"--corrupt {item.strip()!r}: the strength after 'noise:' must be a number") from None
    return parsed


def load_paired(dataset: str, data_dir: str | os.PathLike | None, *, seed: int = 0,
                avmnist_options: AVMNISTOptions | None = None) -> PairedBundle:
    """``avmnist`` (``data_dir`` holding ``mnist/`` and ``fsdd/``) or ``pairs:MANIFEST.csv``."""
    if dataset == "avmnist":
        if data_dir is None:
            raise DataError("dataset avmnist needs --data-dir: a folder holding mnist/ and fsdd/ (e.g. ../shared/data; "
                            "`plugattn fetch avmnist --out FOLDER` downloads them)")
        return avmnist_bundle(data_dir, avmnist_options)
    if dataset.startswith("pairs:"):
        return load_manifest(dataset.partition(":")[2], seed=seed)
    raise DataError(f"not a paired data set: {dataset!r} (expected avmnist or pairs:MANIFEST.csv)")


def is_paired(dataset: str) -> bool:
    """Whether ``dataset`` names paired (multimodal) data."""
    return dataset == "avmnist" or dataset.startswith("pairs:")


def bundle_from_splits(name: str, modalities: Sequence[str], train: PairedTensors, test: PairedTensors,
                       classes: Sequence[str], **extra: object) -> PairedBundle:
    """A bundle whose normalisation statistics come from ``train``."""
    statistics = [channel_statistics(x, rows) for x, rows in zip(train.inputs, train.rows)]
    return PairedBundle(name, train, test, tuple(classes), tuple(modalities), tuple(m for m, _ in statistics),
                        tuple(s for _, s in statistics), **extra)


def avmnist_bundle(data_dir: str | os.PathLike, options: AVMNISTOptions | None = None) -> PairedBundle:
    """AV-MNIST as paired data for multi-stream training: modalities ``image`` (1, 28, 28) and ``audio``
    (1, n_mels, frames), the recordings shared by pairs through row indices."""
    options = options or AVMNISTOptions()
    data = load_avmnist(data_dir, options)
    splits = {name: PairedTensors([part.images, part.features], part.labels, [None, part.recording])
              for name, part in (("train", data.train), ("test", data.test))}
    reuse = data.reuse
    notes = [f"AV-MNIST: images keep {options.image_energy:.0%} of their variance (PCA on the training images), "
             f"recordings at {options.snr_db:g} dB SNR, split {options.split}; each recording used by "
             f"{reuse['train']:.1f} training / {reuse['test']:.1f} test pairs on average"]
    if data.skipped:
        notes.append(f"{len(data.skipped)} recording(s) skipped: {data.skipped[:3]}")

    def audio_noise(kind: str, snr_db: float) -> Tensor:
        return test_features_at_snr(pathlib.Path(data_dir), data.test.names, options, snr_db)

    return bundle_from_splits("avmnist", ("image", "audio"), splits["train"], splits["test"],
                              tuple(str(digit) for digit in range(10)), skipped=list(data.skipped), notes=notes,
                              corrupt_hooks={"audio": audio_noise})


# ---------------------------------------------------------------- a user's manifest


def _read_file(path: pathlib.Path, rates: dict[str, int], column: str) -> Tensor:
    """One modality file as a float tensor ``(C, *spatial)``: an image in [0, 1], a WAV's log-mel map, a .npy array."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image = image.convert("L" if image.mode in ("1", "L", "I", "I;16", "F") else "RGB")
                array = np.asarray(image, dtype=np.float32) / 255
        except (OSError, UnidentifiedImageError) as error:
            raise DataError(f"cannot decode image {path}: {error}") from error
        return torch.from_numpy(array).unsqueeze(0) if array.ndim == 2 else torch.from_numpy(array).permute(2, 0, 1)
    if suffix == ".wav":
        samples = read_wav(path, rate=rates.get(column))
        if column not in rates:
            import wave

            with wave.open(str(path), "rb") as handle:
                rates[column] = handle.getframerate()
        return log_mel_spectrogram(samples, rates[column]).unsqueeze(0)
    try:  # a .npy array (load_manifest refuses other suffixes before reading)
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read array {path}: {error}") from error
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return tensor.unsqueeze(0) if tensor.dim() <= 2 else tensor


def load_manifest(manifest: str | os.PathLike, *, seed: int = 0, test_share: float = 0.2) -> PairedBundle:
    """Pairs from a CSV manifest: a header ``label,MODALITY1,MODALITY2[,…][,split]``, one row per sample with a file
    per modality (relative to the manifest's folder; image, WAV or .npy). Rows without a ``split`` column
    (``train``/``test``) are split at random (``seed``; ``test_share`` to test). WAVs of one modality must share
    the first one's sample rate (no resampling); files that cannot be decoded are skipped and named; a missing file
    or an empty cell is an error."""
    path = pathlib.Path(manifest)
    if not path.is_file():
        raise DataError(f"pairs manifest {path} does not exist (expected a CSV: label,MODALITY1,MODALITY2,…)")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or len(rows[0]) < 3 or rows[0][0].strip() != "label":
        raise DataError(f"pairs manifest {path} must start with a header 'label,MODALITY1,MODALITY2[,…][,split]', "
                        f"got {rows[0] if rows else 'an empty file'}")
    header = [name.strip() for name in rows[0]]
    has_split = header[-1] == "split"
    modalities = header[1:-1] if has_split else header[1:]
    from plugattn.models.multistream import check_modalities

    check_modalities(modalities)
    samples: dict[str, list[tuple[list[Tensor], str]]] = {"train": [], "test": []}
    unsplit: list[tuple[list[Tensor], str]] = []
    skipped: list[str] = []
    rates: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: expected {len(header)} cells ({','.join(header)}), got {len(row)}")
        cells = [cell.strip() for cell in row]
        empty = [header[index] for index, cell in enumerate(cells) if not cell]
        if empty:
            raise DataError(f"{path}:{line}: empty cell(s) for {empty} (every sample needs a label and a file per "
                            "modality)")
        if has_split and cells[-1] not in samples:
            raise DataError(f"{path}:{line}: split must be 'train' or 'test', got {cells[-1]!r}")
        files = [path.parent / cell for cell in cells[1:1 + len(modalities)]]
        missing = [str(file) for file in files if not file.is_file()]
        if missing:
            raise DataError(f"{path}:{line}: file(s) not found: {missing}")
        unknown = [file.name for file in files if file.suffix.lower() not in (*IMAGE_SUFFIXES, ".wav", ".npy")]
        if unknown:
            raise DataError(f"{path}:{line}: {unknown}: expected an image ({', '.join(IMAGE_SUFFIXES)}), a .wav or a .npy")
        try:
            tensors = [_read_file(file, rates, column) for file, column in zip(files, modalities)]
        except DataError as error:
            skipped.append(f"{path.name}:{line}: {error}")
            continue
        sample = (tensors, cells[0])
        if has_split:
            samples[cells[-1]].append(sample)
        else:
            unsplit.append(sample)
    if unsplit:
        order = torch.randperm(len(unsplit), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, round(len(unsplit) * test_share))
        samples["test"] += [unsplit[i] for i in order[:cut]]
        samples["train"] += [unsplit[i] for i in order[cut:]]
    if not samples["train"] or not samples["test"]:
        raise DataError(f"pairs manifest {path}: need samples in both splits, got {len(samples['train'])} train and "
                        f"{len(samples['test'])} test ({len(skipped)} skipped)")
    classes = sorted({label for part in samples.values() for _, label in part})
    splits = {}
    for split, part in samples.items():
        stacked = []
        for index, modality in enumerate(modalities):
            shapes = {tuple(tensors[index].shape) for tensors, _ in part}
            if len(shapes) != 1:
                raise DataError(f"pairs manifest {path}: modality {modality!r} has files of different shapes {sorted(shapes)} "
                                "in the " + split + " split; resize them to one shape first")
            stacked.append(torch.stack([tensors[index] for tensors, _ in part]))
        splits[split] = PairedTensors(stacked, torch.tensor([classes.index(label) for _, label in part]))
    for index, modality in enumerate(modalities):
        if splits["train"].inputs[index].shape[1:] != splits["test"].inputs[index].shape[1:]:
            raise DataError(f"pairs manifest {path}: modality {modality!r} is {tuple(splits['train'].inputs[index].shape[1:])} "
                            f"in train but {tuple(splits['test'].inputs[index].shape[1:])} in test")
    return bundle_from_splits(f"pairs:{path.name}", modalities, splits["train"], splits["test"], classes,
                              skipped=skipped, notes=[f"{len(skipped)} sample(s) skipped"] if skipped else [])
