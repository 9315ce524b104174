"""Audio in: any file libsndfile reads (WAV, FLAC, OGG Vorbis and Opus, MP3, AIFF, ...;
any rate, channel count, sample format) to 16 kHz mono float32.

Whole short files or bounded-memory blocks of long ones, resampled with soxr; a file
that cannot be used raises AudioError with one sentence naming it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
STDIN = "-"  # the path that stands for a recording piped to standard input
# Endings of the files a folder search picks up, by the libsndfile format that reads
# them; MP3 needs libsndfile 1.1 or later (soundfile's wheels bring 1.2), Opus 1.0.29.
EXTENSIONS_BY_FORMAT = {"WAV": (".wav",), "FLAC": (".flac",), "OGG": (".ogg", ".oga", ".opus"),
                        "MP3": (".mp3",), "AIFF": (".aiff", ".aif"), "AU": (".au",),
                        "CAF": (".caf",), "W64": (".w64",)}
AUDIO_EXTENSIONS = tuple(e for name, endings in EXTENSIONS_BY_FORMAT.items()
                         if name in sf.available_formats() for e in endings)
# Rates a recording can have. A header is only a claim: a damaged one saying 1 Hz would
# have the resampler make 16,000 samples of every one read (gigabytes from a small file).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768000
# Samples (frames x channels) read from a file at once, whatever its header declares:
# keeps memory bounded when it claims billions of frames or a thousand channels.
READ_SAMPLES = 1 << 21
PIECE_SECONDS = 60.0  # read_audio's reads, in seconds of input


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


def source_name(source: str | Path | BinaryIO, unnamed: str = "the audio stream") -> str:
    """What messages call a file, or a binary file object (its name, where it has one;
    `unnamed` where it has none)."""
    if hasattr(source, "read"):
        name = getattr(source, "name", None)
        return str(name) if isinstance(name, str | Path) else unnamed
    return str(source)


def open_audio(source: str | Path | BinaryIO) -> sf.SoundFile:
    """Open an audio file, or a seekable binary file object (io.BytesIO of a WAV, say),
    for reading, turning every failure into one AudioError."""
    path = source_name(source)
    if not hasattr(source, "read"):
        _check_path(Path(source))
        source = str(source)
    try:
        f = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{path} is not a readable audio file (WAV, FLAC, OGG, MP3 or "
                         "another format libsndfile reads), or its header is damaged") from e
    return _checked(f, path)


def _checked(f: sf.SoundFile, name: str) -> sf.SoundFile:
    """`f`, once its header promises samples at a rate speechrnn reads; closed if not."""
    if f.frames == 0 or f.samplerate <= 0 or f.channels <= 0:
        f.close()
        raise AudioError(f"{name} holds no audio samples (zero length)")
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        rate = f.samplerate
        f.close()
        raise AudioError(f"{name} declares a sample rate of {rate} Hz, outside the "
                         f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz speechrnn reads; its header "
                         "is probably damaged")
    return f


def _block_frames(f: sf.SoundFile, seconds: float) -> int:
    """Frames of `seconds` of `f`, at most READ_SAMPLES samples over all channels."""
    return max(1, min(int(seconds * f.samplerate), READ_SAMPLES // f.channels))


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
    if samples.ndim == 2 and samples.shape[1] == 0:
        raise ValueError("audio has no channels (shape [samples, 0])")
    if samples.ndim == 2:
        samples = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    elif samples.ndim != 1:
        raise ValueError(f"audio must be [samples] or [samples, channels], not {samples.shape}")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused by the caller
        return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sample_rate` -> mono float32 at `target_rate` (soxr, high quality)."""
    if sample_rate == target_rate:
        return samples
    return soxr.resample(samples, sample_rate, target_rate, quality="HQ").astype(
        np.float32, copy=False)


def recorded_to_16k(mono: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 at the rate it was recorded at -> 16 kHz. Resampling would smooth the
    flat tops of clipped peaks past recognition, so they are rebuilt first (`declip`);
    audio recorded at 16 kHz keeps them for the model session to rebuild."""
    if sample_rate == SAMPLE_RATE:
        return mono
    return resample(declip(mono), sample_rate)


def to_16k_mono(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """An array of audio at MIN_SAMPLE_RATE to MAX_SAMPLE_RATE -> 16 kHz mono float32."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate must be {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, "
                         f"not {sample_rate}")
    return recorded_to_16k(to_mono_float(samples), int(sample_rate))


# A recording clipped by its input holds runs of samples at one level, the loudest it
# has. Natural audio rarely puts two neighbouring samples within PLATEAU of its peak (at
# 16 kHz a 100 Hz tone's crest does not; where a slower crest does, its rebuilt curve is
# much the same), so a few such samples mark a clipped polarity; then
# every run of samples within CLIPPED of that peak is rebuilt. On the held-out real
# speaker (bench_model.py), most of whose clips clip: 87.3 -> 89.3 % right; 0.1 % for
# CLIPPED gave 88.3 %.
PLATEAU = 1e-4
CLIPPED = 1e-2
MIN_PLATEAU_SAMPLES = 3


def declip(samples: np.ndarray) -> np.ndarray:
    """Mono float32 audio with clipped peaks rebuilt: each run of clipped samples becomes
    the cubic through the two samples on either side of it, never below the clip level,
    so the rebuilt peaks rise above it as they did before clipping; every other sample is
    kept as it is (no rescaling, so blocks of a stream stay at one gain). Audio that does
    not clip, or peaks above 1, comes back unchanged (the same array)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size < 8:
        return x
    top, bottom = float(x.max()), float(x.min())  # NaN or inf in x makes them NaN or inf
    # Input clips at its full scale, 1: louder float audio is not a clipped recording.
    if not (-1.0 <= bottom and top <= 1.0):
        return x
    up, down = _clipped_runs(x, top, 1.0), _clipped_runs(x, -bottom, -1.0)
    if not len(up[0]) and not len(down[0]):
        return x
    starts, ends = np.concatenate([up[0], down[0]]), np.concatenate([up[1], down[1]])
    signs = np.concatenate([np.ones(len(up[0])), -np.ones(len(down[0]))])
    lengths = ends - starts
    # Every clipped sample, with its run and its place in it (0 .. n - 1).
    run = np.repeat(np.arange(len(starts)), lengths)
    t = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    n = lengths[run].astype(np.float64)
    nodes = np.stack([np.full_like(n, -2.0), np.full_like(n, -1.0), n, n + 1.0])
    values = np.stack([x[starts - 2], x[starts - 1], x[ends], x[ends + 1]]).astype(
        np.float64)[:, run]
    curve = np.zeros(len(run))
    for i in range(4):  # Lagrange form of the cubic through the four neighbours
        basis = np.ones(len(run))
        for j in range(4):
            if j != i:
                basis *= (t - nodes[j]) / (nodes[i] - nodes[j])
        curve += values[i] * basis
    at = starts[run] + t
    sign = signs[run]
    out = x.copy()
    out[at] = sign * np.maximum(sign * curve, sign * x[at].astype(np.float64))
    return out


def _clipped_runs(x: np.ndarray, top: float, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the runs clipped at the peak `top` of `sign * x` (one polarity),
    each with two unclipped samples on either side."""
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if top <= 0.0:
        return none
    # Compared as x, not as sign * x, which would copy the audio: this runs on every
    # piece the model hears, and most have no plateau at all.
    at_top = x >= top * (1 - PLATEAU) if sign > 0 else x <= -(top * (1 - PLATEAU))
    if np.count_nonzero(at_top) < MIN_PLATEAU_SAMPLES:
        return none
    # Samples at the top beside another one there (slices, not padded copies: this is
    # most of declip's time on audio that clips).
    pairs = at_top[1:] & at_top[:-1]
    in_plateau = np.zeros_like(at_top)
    in_plateau[1:] = pairs
    in_plateau[:-1] |= pairs
    if np.count_nonzero(in_plateau) < MIN_PLATEAU_SAMPLES:
        return none
    flat = x >= top * (1 - CLIPPED) if sign > 0 else x <= -(top * (1 - CLIPPED))
    # Runs [start, end) of flat samples; a run at either edge of x has no two samples
    # beyond it, so it is not rebuilt, nor counted here.
    starts = np.flatnonzero(flat[1:] & ~flat[:-1]) + 1
    ends = np.flatnonzero(flat[:-1] & ~flat[1:]) + 1
    if flat[0]:
        ends = ends[1:]
    if flat[-1]:
        starts = starts[:-1]
    ok = (starts >= 2) & (ends + 2 <= len(x))
    starts, ends = starts[ok], ends[ok]
    ok = ~flat[starts - 2] & ~flat[ends + 1]
    return starts[ok], ends[ok]


# Float files may go past full scale (1), but not by this much: no recording is 120 dB
# louder than full scale, and far larger values overflow to inf when channels are mixed
# or the audio is resampled.
MAX_MAGNITUDE = 1e6


def _check_samples(block: np.ndarray, path: Path | str) -> None:
    # Rejected, not repaired: NaN, inf or absurd values mean the recording is damaged,
    # and zeroing them would silently hide that from whoever reads the transcript.
    if not np.isfinite(block).all():
        raise AudioError(f"{path} contains NaN or infinite samples; the recording is damaged")
    if block.size and (peak := float(np.abs(block).max())) > MAX_MAGNITUDE:
        raise AudioError(f"{path} holds samples {peak:.3g} times full scale; the recording "
                         "is damaged")


def read_audio(path: str | Path | BinaryIO) -> np.ndarray:
    """A whole file (or binary file object) as 16 kHz mono float32.

    Read in bounded pieces and mixed to mono as it goes, so memory follows the samples
    really there, not what the header declares.
    """
    pieces = []
    with open_audio(path) as f:
        path = source_name(path)
        rate = f.samplerate
        step = _block_frames(f, PIECE_SECONDS)
        while True:
            try:
                data = f.read(step, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"{path} is damaged: its audio data cannot be decoded") from e
            _check_samples(data, path)
            if len(data):
                pieces.append(to_mono_float(data))
            if len(data) < step:
                break
    if not pieces:
        raise AudioError(f"{path} holds no audio samples (zero length)")
    return recorded_to_16k(np.concatenate(pieces), rate)


def iter_blocks(path: str | Path, block_seconds: float = 10.0) -> Iterator[np.ndarray]:
    """16 kHz mono float32 blocks of a file, reading `block_seconds` of input at a time.

    Memory stays bounded by one block whatever the file's length; resampling carries
    its state across blocks, so the joined blocks equal the whole file resampled.
    """
    path = Path(path)
    with open_audio(path) as f:
        yield from _blocks(f, str(path), block_seconds)


def iter_stdin_blocks(block_seconds: float = 0.05) -> Iterator[np.ndarray]:
    """iter_blocks of a recording piped to standard input, each block as soon as it has
    arrived: a WAV stream of unknown length from `arecord -t wav`, `parec
    --file-format=wav` or `sox ... -t wav -` is read as it is written."""
    name = "standard input"
    if sys.stdin is None or sys.stdin.isatty():
        raise AudioError(f"{name} is a terminal; pipe a recording in (arecord -f S16_LE -r "
                         "16000 -t wav | speechrnn listen --input -)")
    try:
        f = sf.SoundFile(sys.stdin.fileno(), closefd=False)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{name} is not a readable audio stream (WAV, FLAC, OGG, MP3 or "
                         "another format libsndfile reads from a pipe), or it is empty") from e
    with _checked(f, name):
        yield from _blocks(f, name, block_seconds)


def _blocks(f: sf.SoundFile, name: str, block_seconds: float) -> Iterator[np.ndarray]:
    rate = f.samplerate
    block_frames = _block_frames(f, block_seconds)
    stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(
        rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    total = 0
    while True:
        try:
            data = f.read(block_frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(f"{name} is damaged: decoding stopped at "
                             f"{total / rate:.1f} s") from e
        total += len(data)
        # A read comes back short only at the end, of a file or of a pipe: libsndfile
        # waits for a pipe's writer until it has the frames asked for.
        last = len(data) < block_frames
        _check_samples(data, name)
        mono = to_mono_float(data)
        if stream is not None:
            mono = stream.resample_chunk(declip(mono), last=last)
        if len(mono):
            yield mono
        if last:
            break
    if total == 0:
        raise AudioError(f"{name} holds no audio samples (zero length)")
