"""Test conditions the model never trained on, generated deterministically in code.

Training (training/augment.py) mixes every recording of ../shared/data/noise, white and
coloured noise and babble of training clips, convolves with the four real room responses
of ../shared/data/rir and with exponentially decaying noise. The noises here are other
kinds, made from a seed:

- ``music``: synthesized music, chords of harmonic notes with a bass line, kick, snare
  and hi-hat (not the music recording training uses);
- ``hum``: mains hum, 50 or 60 Hz with 30 harmonics, a slow wobble and rectifier buzz;
- ``keyboard``: typing, resonant clicks at 5-12 a second with space-bar thuds;
- ``cafe``: a cafe, 6-10 voices training never heard (held-out synthetic voices saying
  other words) with dish clinks. Babble is the one kind training also has, but from its
  own voices and without clinks.

Rooms are a different model from training's: a direct path, 8-20 sparse early
reflections and a late tail whose high frequencies die faster than its low ones
(frequency-dependent RT60 0.3-0.9 s), from seed ROOM_SEED.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from speechrnn.audio import SAMPLE_RATE, resample
from speechrnn.recognizer import speech_regions

NOISE_KINDS = ("music", "hum", "keyboard", "cafe")
SNRS = (20, 10, 5, 0)
NOISE_SEED = 7001  # training's augmentation seeds are 0-based worker seeds; these are not
ROOM_SEED = 9001


def _decay(n: int, seconds: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (seconds * SAMPLE_RATE))


def _place(out: np.ndarray, sound: np.ndarray, at: int) -> None:
    if at >= len(out):
        return
    end = min(len(out), at + len(sound))
    out[at:end] += sound[:end - at]


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Chords, bass and drums at a random tempo and key."""
    out = np.zeros(n)
    beat = int(SAMPLE_RATE * 60 / rng.uniform(85, 140))
    root = 220 * 2 ** (rng.integers(0, 12) / 12)
    progression = [[0, 4, 7], [9, 12, 16], [5, 9, 12], [7, 11, 14]]  # I vi IV V
    t = np.arange(4 * beat) / SAMPLE_RATE
    for bar, start in enumerate(range(0, n, 4 * beat)):
        chord = progression[bar % 4]
        tone = np.zeros(len(t))
        for semis in chord:
            f = root * 2 ** (semis / 12)
            tone += sum(np.sin(2 * np.pi * f * k * t) / k ** 1.5 for k in range(1, 6))
        tone += 1.5 * np.sin(2 * np.pi * root / 4 * 2 ** (chord[0] / 12) * t)  # bass
        envelope = np.tile(_decay(beat, 0.35), 4)[:len(t)] * 0.7 + 0.3
        _place(out, 0.15 * tone * envelope, start)
    kick_t = np.arange(int(0.2 * SAMPLE_RATE)) / SAMPLE_RATE
    kick = np.sin(2 * np.pi * (50 + 70 * np.exp(-kick_t * 30)) * kick_t) * _decay(
        len(kick_t), 0.06)
    snare = signal.lfilter(*signal.butter(2, [1000, 5000], "bandpass", fs=SAMPLE_RATE),
                           rng.standard_normal(int(0.15 * SAMPLE_RATE))) * _decay(
        int(0.15 * SAMPLE_RATE), 0.04)
    hat_len = int(0.03 * SAMPLE_RATE)
    hp = signal.butter(2, 7000, "highpass", fs=SAMPLE_RATE)
    for i, start in enumerate(range(0, n, beat // 2)):
        hat = signal.lfilter(*hp, rng.standard_normal(hat_len)) * _decay(hat_len, 0.008)
        _place(out, 0.3 * hat, start)
        if i % 2 == 0:
            _place(out, (kick if (i // 2) % 2 == 0 else 0.8 * snare), start)
    return out


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum with harmonics, a slow wobble and buzz."""
    f0 = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(n) / SAMPLE_RATE
    phases = rng.uniform(0, 2 * np.pi, 31)
    x = sum((1.0 if k % 2 else 0.5) / k * np.sin(2 * np.pi * f0 * k * t + phases[k])
            for k in range(1, 31))
    buzz = np.sign(np.sin(2 * np.pi * 2 * f0 * t)) * 0.05
    wobble = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t)
    return (x + buzz) * wobble


def keyboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Typing: resonant clicks at random times, some louder space-bar thuds."""
    out = np.zeros(n)
    at = 0
    rate = rng.uniform(5, 12)
    while True:
        at += int(rng.exponential(1 / rate) * SAMPLE_RATE) + SAMPLE_RATE // 50
        if at >= n:
            break
        m = int(rng.uniform(0.01, 0.03) * SAMPLE_RATE)
        thud = rng.random() < 0.12
        centre = rng.uniform(300, 800) if thud else rng.uniform(2000, 5000)
        b, a = signal.butter(2, [centre * 0.7, centre * 1.3], "bandpass", fs=SAMPLE_RATE)
        click = signal.lfilter(b, a, rng.standard_normal(m)) * _decay(m, 0.004)
        _place(out, click * rng.uniform(0.3, 1.0) * (2.0 if thud else 1.0), at)
    return out


def cafe(n: int, rng: np.random.Generator, voices: Sequence[np.ndarray]) -> np.ndarray:
    """Several voices talking over each other, and dishes."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(6, 11))):
        at = int(rng.integers(-SAMPLE_RATE, n))
        while at < n:  # each talker keeps talking with short pauses
            clip = voices[int(rng.integers(len(voices)))]
            level = rng.uniform(0.3, 1.0) / (np.sqrt(np.mean(clip ** 2)) + 1e-9)
            if at < 0:
                clip, at = clip[-at:], 0
            _place(out, clip * level, at)
            at += len(clip) + int(rng.uniform(0.1, 0.6) * SAMPLE_RATE)
    for _ in range(int(n / SAMPLE_RATE * rng.uniform(0.3, 1.0))):
        m = int(0.25 * SAMPLE_RATE)
        tt = np.arange(m) / SAMPLE_RATE
        clink = sum(np.sin(2 * np.pi * rng.uniform(2000, 6000) * tt) for _ in range(3))
        _place(out, clink * _decay(m, 0.05) * rng.uniform(1, 4), int(rng.integers(0, n)))
    return out


def make_noise(kind: str, n: int, seed: int, voices: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`n` samples of a noise kind, normalized to unit RMS; the same for the same seed."""
    rng = np.random.default_rng([NOISE_SEED, NOISE_KINDS.index(kind), seed])
    if kind == "cafe":
        if not voices:
            raise ValueError("cafe noise needs voices")
        x = cafe(n, rng, voices)
    else:
        x = {"music": music, "hum": hum, "keyboard": keyboard}[kind](n, rng)
    x = np.asarray(x, dtype=np.float64)
    return (x / (np.sqrt(np.mean(x ** 2)) + 1e-12)).astype(np.float32)


def speech_power(audio: np.ndarray) -> float:
    """Mean power over the speech regions (not the silences around them)."""
    regions = speech_regions(audio)
    if not regions:
        return float(np.mean(np.square(audio, dtype=np.float64))) + 1e-12
    return float(np.mean(np.concatenate(
        [np.square(audio[a:b], dtype=np.float64) for a, b in regions]))) + 1e-12


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech plus noise scaled to `snr_db` below the speech's own power."""
    noise = np.resize(noise, len(speech)).astype(np.float64)
    gain = np.sqrt(speech_power(speech) / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr_db / 10))
    mixed = speech + gain * noise
    peak = np.abs(mixed).max()
    return (mixed / peak * 0.99 if peak > 0.99 else mixed).astype(np.float32)


def room_response(seed: int) -> np.ndarray:
    """A room impulse response: direct path, early reflections, frequency-dependent tail."""
    rng = np.random.default_rng([ROOM_SEED, seed])
    rt60 = rng.uniform(0.3, 0.9)
    n = int(rt60 * 1.2 * SAMPLE_RATE)
    rir = np.zeros(n)
    rir[0] = 1.0
    for _ in range(int(rng.integers(8, 21))):
        at = int(rng.uniform(0.002, 0.05) * SAMPLE_RATE)
        rir[at] += rng.choice([-1, 1]) * rng.uniform(0.2, 0.7) * np.exp(-at / (0.05 * SAMPLE_RATE))
    tail = np.zeros(n)
    start = int(0.02 * SAMPLE_RATE)
    bands = [(None, 500), (500, 2000), (2000, 4000), (4000, None)]
    for (lo, hi), factor in zip(bands, (1.0, 0.85, 0.6, 0.4), strict=True):
        noise = rng.standard_normal(n - start)
        if lo is None:
            sos = signal.butter(4, hi, "lowpass", fs=SAMPLE_RATE, output="sos")
        elif hi is None:
            sos = signal.butter(4, lo, "highpass", fs=SAMPLE_RATE, output="sos")
        else:
            sos = signal.butter(4, [lo, hi], "bandpass", fs=SAMPLE_RATE, output="sos")
        t = np.arange(n - start) / SAMPLE_RATE
        tail[start:] += signal.sosfilt(sos, noise) * np.exp(-6.9 * t / (rt60 * factor))
    tail *= rng.uniform(0.15, 0.4) / (np.sqrt(np.sum(tail ** 2)) + 1e-12) * np.sqrt(
        np.sum(rir ** 2))
    rir += tail * 3
    return (rir / np.sqrt(np.sum(rir ** 2))).astype(np.float32)


def reverberate(audio: np.ndarray, seed: int) -> np.ndarray:
    """The clip in a room, with its tail (up to 0.5 s) kept, at the same speech level."""
    wet = signal.fftconvolve(audio, room_response(seed))[: len(audio) + SAMPLE_RATE // 2]
    wet *= np.sqrt(speech_power(audio) / speech_power(wet))
    peak = np.abs(wet).max()
    return (wet / peak * 0.99 if peak > 0.99 else wet).astype(np.float32)


def band_limited_8k(audio: np.ndarray) -> np.ndarray:
    """The clip as an 8 kHz recording (the runtime resamples it back to 16 kHz itself)."""
    return resample(audio, SAMPLE_RATE, 8000)


@dataclass(frozen=True)
class Condition:
    """A way to degrade a clip: `apply(audio, index)` gives (audio, sample rate)."""

    name: str
    apply: Callable[[np.ndarray, int], tuple[np.ndarray, int]]
    noise_kind: str = ""


def conditions(voices: Sequence[np.ndarray] = ()) -> list[Condition]:
    """clean; each SNR (noise kinds in turn, clip by clip); 8 kHz; reverberant.

    Without `voices` the cafe kind is left out."""
    kinds = [k for k in NOISE_KINDS if k != "cafe" or voices]
    out = [Condition("clean", lambda a, i: (a, SAMPLE_RATE))]
    for snr in SNRS:
        def noisy(a, i, snr=snr):
            kind = kinds[i % len(kinds)]
            noise = make_noise(kind, len(a), seed=i * 100 + snr, voices=voices)
            return mix_at_snr(a, noise, snr), SAMPLE_RATE
        out.append(Condition(f"{snr} dB", noisy))
    out.append(Condition("8 kHz", lambda a, i: (band_limited_8k(a), 8000)))
    out.append(Condition("reverberant", lambda a, i: (reverberate(a, i), SAMPLE_RATE)))
    return out


def noise_kind_of(condition: str, index: int, voices_available: bool) -> str:
    """Which noise kind clip `index` got under a noisy condition ("" for the others)."""
    if not condition.endswith(" dB"):
        return ""
    kinds = [k for k in NOISE_KINDS if k != "cafe" or voices_available]
    return kinds[index % len(kinds)]
