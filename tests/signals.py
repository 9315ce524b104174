"""Synthetic test signals and small checks shared by the VAD, stream, listen, audio and
microphone tests."""

from __future__ import annotations

import numpy as np

SR = 16000


def word(seconds: float, f0: float = 140.0, level_db: float = -20.0, seed: int = 0):
    """A speech-like burst: harmonics of f0 up to 4 kHz under a syllabic envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    harmonics = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k
                    for k in range(1, int(4000 / f0)))
    syllables = max(1, round(seconds / 0.25))
    x = harmonics * np.abs(np.sin(np.pi * t * syllables / seconds)) ** 0.5
    x *= 10 ** (level_db / 20) / np.sqrt(np.mean(x**2))
    return x.astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), np.float32)


def white(seconds: float, level_db: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SR)) * 10 ** (level_db / 20)).astype(np.float32)


def voiced(seconds: float = 0.5, amp: float = 0.9, rate: int = SR) -> np.ndarray:
    """A vowel-like sound: harmonics of 150 Hz under a smooth envelope, peaking at `amp`."""
    t = np.arange(int(rate * seconds)) / rate
    x = sum(np.sin(2 * np.pi * 150 * k * t + k) / k for k in range(1, 6))
    x = x * np.hanning(len(t))
    return (amp * x / np.abs(x).max()).astype(np.float32)


def at_best_scale(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`x` scaled to fit `target` best (least squares), to compare shapes, not levels."""
    return x * (np.dot(x, target) / np.dot(x, x))


def is_subsequence(short: list[str], long: list[str]) -> bool:
    """Every item of `short` appears in `long`, in the same order."""
    rest = iter(long)
    return all(any(item == x for x in rest) for item in short)
