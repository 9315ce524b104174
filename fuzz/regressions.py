"""Inputs that failed before the fixes they led to, with what happened then.

tests/test_fuzz_audio.py checks each now ends in its sentence; the robustness report
(benchmarks/bench_robustness.py) lists them. "before" was measured on the code of
commit bc79951 (the reader as it was when fuzzing began).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fuzz.inputs import FlacFields, WavFields, au_bytes, flac_bytes, seeds, wav_bytes


@dataclass(frozen=True)
class Regression:
    name: str
    build: Callable[[], bytes]
    before: str  # what the old code did
    expect: str  # words of the AudioError sentence now


def _pcm(frames: int = 50000) -> bytes:
    return (np.sin(np.arange(frames) / 5) * 3000).astype("<i2").tobytes()


REGRESSIONS = [
    Regression("WAV header declaring 1 Hz (100 kB file)",
               lambda: wav_bytes(WavFields(sample_rate=1), _pcm()),
               "read_audio returned 800 M samples (3.2 GB) after 10 s; iter_blocks raised "
               "MemoryError; transcribe ran 43 s (1.6 MB of such a file: over 10 min)",
               "sample rate of 1 Hz"),
    Regression("AU header declaring 1 Hz and 2^32-1 data bytes",
               lambda: au_bytes(3, 1, 1, 2**32 - 1, _pcm()),
               "read_audio: 3.2 GB and 6 s; iter_blocks: MemoryError", "sample rate of 1 Hz"),
    Regression("WAV header declaring 2^31-1 Hz",
               lambda: wav_bytes(WavFields(sample_rate=2**31 - 1), _pcm()),
               "no samples and no error: an empty transcript, silently",
               "sample rate of 2147483647 Hz"),
    Regression("FLAC STREAMINFO declaring 2^36-1 samples, 8 channels",
               lambda: flac_bytes(FlacFields(total_samples=2**36 - 1, channels=8),
                                  seeds()["flac"]),
               "read_audio raised MemoryError (tried to allocate 2 TiB for the declared "
               "length)", "is damaged"),
]


@dataclass(frozen=True)
class ArrayRegression:
    name: str
    build: Callable[[], np.ndarray]
    before: str
    expect: str | None  # words of the ValueError now, or None: a transcript
    error: str | None = None  # words of that transcript's error, or None: no error


ARRAY_REGRESSIONS = [
    ArrayRegression("an array of shape [10, 0] (no channels)", lambda: np.zeros((10, 0)),
                    "IndexError from deep inside the reader", "no channels"),
    ArrayRegression("an empty array", lambda: np.zeros(0, np.float32),
                    "'RuntimeWarning: Mean of empty slice' printed", None),
    ArrayRegression("an array of three samples of 1e30", lambda: np.full(3, 1e30),
                    "'RuntimeWarning: overflow encountered in square' printed", None),
    ArrayRegression("an array of float64 samples of 1e39 (beyond float32)",
                    lambda: np.full(10, 1e39),
                    "'RuntimeWarning: overflow encountered in cast' printed", None,
                    error="NaN or infinite"),
]


# Findings of the long atheris runs (benchmarks/bench_fuzz.py) that were not the reader's.
RUN_FINDINGS = [
    "first 10-minute run: stopped after 158 s (9,063 inputs) by an out-of-memory in the "
    "harness itself (a WAV recipe declaring a 2 GB fmt chunk built all of it in memory); "
    "recipes now write at most 64 bytes of a chunk, whatever size they declare",
]
