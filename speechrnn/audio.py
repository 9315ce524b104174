"""Audio in: any WAV/FLAC/OGG (any rate, channel count, sample format) to 16 kHz mono float32.

Whole short files or bounded-memory blocks of long ones, resampled with soxr; a file
that cannot be used raises AudioError with one sentence naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


class AudioError(Exception):
    """Audio that cannot be used; the message is one sentence naming the file."""


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _check_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{path} does not exist")
    if path.is_dir():
        raise AudioError(f"{path} is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path} is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path} cannot be read: permission denied")


def open_audio(path: str | Path) -> sf.SoundFile:
    """Open an audio file for reading, turning every failure into one AudioError."""
    path = Path(path)
    _check_path(path)
    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path} is not a readable audio file (WAV, FLAC or OGG), or its "
                         "header is damaged") from e
    if f.frames == 0 or f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(f"{path} holds no audio samples (zero length)")
    return f


def audio_info(path: str | Path) -> AudioInfo:
    """Rate, channels and length of a file, checked to be readable."""
    with open_audio(path) as f:
        return AudioInfo(str(path), f.samplerate, f.channels, f.frames)


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """[frames] or [frames, channels] of any numeric dtype -> mono float32 in about -1..1."""
    samples = np.asarray(samples)
    if samples.dtype.kind in "iu":
        info = np.iinfo(samples.dtype)
        # Unsigned PCM is offset binary: its midpoint is silence.
        mid = (int(info.max) + int(info.min) + 1) / 2
        samples = (samples.astype(np.float32) - mid) / (info.max - mid + 1)
    elif samples.dtype.kind != "f":
        raise ValueError(f"audio samples must be numbers, not {samples.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    elif samples.ndim != 1:
        raise ValueError(f"audio must be [samples] or [samples, channels], not {samples.shape}")
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sample_rate` -> mono float32 at `target_rate` (soxr, high quality)."""
    if sample_rate == target_rate:
        return samples
    return soxr.resample(samples, sample_rate, target_rate, quality="HQ").astype(
        np.float32, copy=False)


def to_16k_mono(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Any array of audio at any rate -> 16 kHz mono float32."""
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, not {sample_rate}")
    return resample(to_mono_float(samples), int(sample_rate))


def _check_finite(block: np.ndarray, path: Path) -> None:
    # Rejected, not repaired: NaN or inf means the recording is damaged, and zeroing it
    # would silently hide that from whoever reads the transcript.
    if not np.isfinite(block).all():
        raise AudioError(f"{path} contains NaN or infinite samples; the recording is damaged")


def read_audio(path: str | Path) -> np.ndarray:
    """A whole file as 16 kHz mono float32."""
    path = Path(path)
    with open_audio(path) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{path} is damaged: its audio data cannot be decoded") from e
        rate = f.samplerate
    if len(data) == 0:
        raise AudioError(f"{path} holds no audio samples (zero length)")
    _check_finite(data, path)
    return resample(to_mono_float(data), rate)


def iter_blocks(path: str | Path, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks of a file, reading `block_seconds` of input at a time.

    Memory stays bounded by one block whatever the file's length; resampling carries
    its state across blocks, so the joined blocks equal the whole file resampled.
    """
    path = Path(path)
    with open_audio(path) as f:
        rate = f.samplerate
        block_frames = max(1, int(block_seconds * rate))
        stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(
            rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        total = 0
        while True:
            try:
                data = f.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"{path} is damaged: decoding stopped at "
                                 f"{total / rate:.1f} s") from e
            total += len(data)
            last = len(data) < block_frames
            _check_finite(data, path)
            mono = to_mono_float(data)
            if stream is not None:
                mono = stream.resample_chunk(mono, last=last)
            if len(mono):
                yield mono
            if last:
                break
        if total == 0:
            raise AudioError(f"{path} holds no audio samples (zero length)")
