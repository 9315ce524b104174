"""On-the-fly augmentation that makes clean synthetic speech sound like real recordings.

Waveform: trim and re-pad silence, speed, pitch, reverberation, real background noise
at 0-30 dB SNR, telephone band-limiting (8 kHz), gain. Features: SpecAugment masks.
"""

from __future__ import annotations

import io
import logging
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from scipy import fft, signal

from speechrnn.audio import declip

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
# The telephone channel's 300-3400 Hz band at 8 kHz, designed once: designing it takes
# six times as long as filtering a clip with it.
PHONE_BAND = signal.butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")


@dataclass
class AugmentConfig:
    noise_dir: str | None = "../shared/data/noise"
    rir_dir: str | None = "../shared/data/rir"
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_reverb: float = 0.3
    p_speed: float = 0.6
    speed: tuple[float, float] = (0.85, 1.15)
    p_pitch: float = 0.15
    pitch_semitones: tuple[float, float] = (-3.0, 3.0)
    p_telephone: float = 0.25
    # Overdriven input (a loud talker, a cheap microphone): the loudest samples are cut
    # flat. Off in the shipped recipe: fine-tuning with it at 0.3
    # (configs/finetune_clipping.json) made clipped clips score 5-7 points better but the
    # unseen real speaker, whose clips are clipped too, 3 points worse.
    p_clip: float = 0.0
    clip_fraction: tuple[float, float] = (0.002, 0.08)  # share of samples clipped
    # Rebuild clipped peaks last, as the runtime does before the network
    # (speechrnn.audio.declip), so that clipped clips train as they will be heard. Off in
    # the shipped recipe: a 45-minute third stage from 0.6.0 with it (with or without
    # p_clip 0.3) moved the unseen real speaker +0.1 to +0.6 points and cost clean
    # synthetic voices 0.6-1.1 (README, "Tried on 0.6.0").
    declip: bool = False
    # A microphone's or room's colouring: a smooth random gain curve over frequency, up to
    # eq_db louder or quieter at each of EQ_POINTS. Off in the shipped recipe: a 35-minute
    # sixth stage with it at 0.5 (configs/finetune_eq.json) left synthetic voices within a
    # point and the unseen real speaker 1.2 points worse (82.1 -> 80.9 %).
    p_eq: float = 0.0
    eq_db: float = 10.0
    # Speech stored or sent through a low-bit-rate codec (voice messages, calls, web apps):
    # an Opus round trip at soundfile's compression level (0.9 about 23 kbit/s, 0.98 about
    # 10). Off in the shipped recipe. The two longest-trained models of a corpus sent as
    # 10 kbit/s Opus (the GPU runs in the README) scored 4.5-5 points better on the unseen
    # real speaker at 8 kHz, but a 35-minute sixth stage with it at 0.5
    # (configs/finetune_codec.json) did not: 75.0 against 75.1 % there, synthetic clean
    # -1.6. It costs 50-140 ms a clip, so that stage saw only 0.8 epochs; encode each clip
    # once and cache before trying more.
    p_codec: float = 0.0
    codec_level: tuple[float, float] = (0.9, 0.98)
    # Impulsive sounds over the speech (typing, knocks, dishes, drum hits): short bursts
    # at random times (`transients`), mixed at their own SNR after the other noise.
    p_transients: float = 0.0
    transients_snr_db: tuple[float, float] = (0.0, 25.0)
    # A microphone's steady hiss under everything, besides any other noise: the unseen
    # real speaker's recordings sit on a flat floor only 8-12 dB under the speech above
    # 3 kHz, where it hides the /s/ of "stop". Off in the shipped recipe: in stage 2 at 0.5
    # it gained 1.7 points there and lost 2.1 at 10 dB (docs/experiments.md, "Front end").
    p_floor: float = 0.0
    floor_snr_db: tuple[float, float] = (10.0, 30.0)
    gain_db: tuple[float, float] = (-18.0, 6.0)
    pad_seconds: tuple[float, float] = (0.0, 0.4)  # silence re-added at each end
    p_tight: float = 0.25  # share of synthetic clips cut tight to the speech, like real ones


def _read_folder(folder: str | None) -> list[np.ndarray]:
    """All audio files under a folder, 16 kHz mono; a missing folder gives []."""
    if not folder or not Path(folder).is_dir():
        if folder:
            log.warning("augmentation folder %s not found; using generated signals only",
                        folder)
        return []
    clips = []
    for f in sorted(Path(folder).rglob("*")):
        if f.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        audio, rate = sf.read(f, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
        if len(audio) > 0:
            clips.append(audio)
    return clips


def trim_silence(audio: np.ndarray, threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading/trailing frames quieter than `threshold_db` below the peak frame."""
    frame = 160
    n = len(audio) // frame
    if n < 3:
        return audio
    energy = (audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    db = 10 * np.log10(energy / energy.max())
    loud = np.flatnonzero(db > threshold_db)
    return audio[loud[0] * frame: (loud[-1] + 1) * frame]


def coloured_noise(n: int, rng: np.random.Generator,
                   alphas: tuple[float, float] = (0.0, 2.0)) -> np.ndarray:
    """White, pink or brown noise: 1/f^alpha spectrum with random alpha in `alphas`."""
    alpha = rng.uniform(*alphas)
    # Shaped at a length the FFT handles fast, then cut: a clip's own length can take
    # the FFT ten times longer.
    size = fft.next_fast_len(n, real=True)
    spec = fft.rfft(rng.standard_normal(size))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    noise = fft.irfft(spec / f ** (alpha / 2), size)[:n]
    return (noise / (np.abs(noise).max() + 1e-9)).astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float, hop: int = 512) -> np.ndarray:
    """`audio` moved `semitones` in pitch, same length: librosa.effects.pitch_shift's
    method (a phase vocoder on its 2048-point STFT stretches the time, soxr resamples it
    back), with the vocoder as array operations: librosa loops over frames in Python,
    and its call takes half as long again (5.0 ms against 3.4 for 1.5 s)."""
    import librosa  # slow to import; only workers that need it pay

    rate = 2.0 ** (-semitones / 12)
    with warnings.catch_warnings():
        # Clips shorter than the 2048-sample STFT still shift fine; the warning about it
        # would fill the training log.
        warnings.simplefilter("ignore", UserWarning)
        spec = np.pad(librosa.stft(audio, hop_length=hop), ((0, 0), (0, 2)))
    steps = np.arange(0, spec.shape[1] - 2, rate)
    left, weight = steps.astype(int), (steps % 1.0).astype(np.float32)
    magnitude, phase = np.abs(spec), np.angle(spec)
    magnitude = (1 - weight) * magnitude[:, left] + weight * magnitude[:, left + 1]
    # Each output frame keeps the phase advance its input frames had, wrapped to +-pi.
    expected = np.linspace(0, np.pi * hop, spec.shape[0], dtype=np.float32)[:, None]
    deviation = phase[:, left + 1] - phase[:, left] - expected
    deviation -= np.float32(2 * np.pi) * np.round(deviation / np.float32(2 * np.pi))
    advance = np.cumsum(expected + deviation, axis=1)
    accumulated = phase[:, :1] + np.pad(advance[:, :-1], ((0, 0), (1, 0)))
    out = np.empty(magnitude.shape, spec.dtype)  # float32 throughout, as librosa's
    out.real, out.imag = magnitude * np.cos(accumulated), magnitude * np.sin(accumulated)
    stretched = librosa.istft(out, hop_length=hop, dtype=audio.dtype,
                              length=int(round(len(audio) / rate)))
    shifted = soxr.resample(stretched, SAMPLE_RATE / rate, SAMPLE_RATE, quality="soxr_lq")
    return np.pad(shifted[: len(audio)], (0, max(0, len(audio) - len(shifted))))


def synthetic_rir(rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise with RT60 0.15-0.8 s: a cheap room."""
    rt60 = rng.uniform(0.15, 0.8)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    rir[0] = 1.0 + abs(rir[0])  # direct path
    return rir.astype(np.float32)


def overdrive(audio: np.ndarray, fraction: float) -> np.ndarray:
    """Hard-clips the loudest `fraction` of samples, as an overdriven input does; the
    result peaks at 1."""
    level = np.quantile(np.abs(audio), 1.0 - fraction)
    if level <= 0.0:
        return audio
    return np.clip(audio, -level, level) / level


def transients(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of impulsive sound, peak 1: 1-12 events a second at random times, each
    a click (a band-passed noise burst dying in 1-10 ms), a knock (a low tone with a noisy
    attack, 10-60 ms) or a clink (two to four high partials ringing 20-150 ms), each at its
    own level within 12 dB."""
    out = np.zeros(n)
    count = rng.poisson(rng.uniform(1.0, 12.0) * n / SAMPLE_RATE)
    for at in rng.integers(0, max(1, n), size=count):
        kind = rng.random()
        if kind < 0.5:
            tau = rng.uniform(0.001, 0.010)
            length = int(5 * tau * SAMPLE_RATE)
            # A resonator at 0.5-6 kHz (the audio cookbook's band-pass, Q 0.7-4): its
            # coefficients in closed form, where designing a filter cost a millisecond.
            w0 = 2 * np.pi * np.exp(rng.uniform(np.log(500.0), np.log(6000.0))) / SAMPLE_RATE
            alpha = np.sin(w0) / (2 * rng.uniform(0.7, 4.0))
            event = signal.lfilter([alpha, 0.0, -alpha],
                                   [1 + alpha, -2 * np.cos(w0), 1 - alpha],
                                   rng.standard_normal(length))
        else:
            low = kind < 0.75
            tau = rng.uniform(0.010, 0.060) if low else rng.uniform(0.020, 0.150)
            length = int(5 * tau * SAMPLE_RATE)
            t = np.arange(length) / SAMPLE_RATE
            freqs = ([rng.uniform(60.0, 400.0)] if low
                     else rng.uniform(2000.0, 7500.0, size=rng.integers(2, 5)))
            event = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs)
            if low:  # the knock's noisy attack
                event = event + rng.standard_normal(length) * np.exp(-t / 0.003)
        event = event * np.exp(-np.arange(length) / (tau * SAMPLE_RATE))
        event *= 10 ** (rng.uniform(-12.0, 0.0) / 20) / (np.abs(event).max() + 1e-9)
        end = min(n, at + length)
        out[at:end] += event[:end - at]
    return (out / (np.abs(out).max() + 1e-9)).astype(np.float32)


EQ_POINTS = (100.0, 250.0, 600.0, 1500.0, 3500.0, 8000.0)  # Hz, for random_eq


def random_eq(audio: np.ndarray, gains_db: np.ndarray) -> np.ndarray:
    """`audio` through a smooth filter with gain `gains_db[i]` at EQ_POINTS[i], straight
    lines in dB over log frequency between them (flat beyond the ends)."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    curve = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(EQ_POINTS), gains_db)
    return np.fft.irfft(spectrum * 10 ** (curve / 20), n=len(audio)).astype(audio.dtype)


def codec_round_trip(audio: np.ndarray, level: float) -> np.ndarray:
    """`audio` encoded as Opus at soundfile's compression `level` (0-1, higher = fewer
    bits) and decoded back, the same length."""
    peak = np.abs(audio).max() + 1e-9
    buffer = io.BytesIO()
    sf.write(buffer, audio / peak * 0.5, SAMPLE_RATE, format="OGG", subtype="OPUS",
             compression_level=level)
    buffer.seek(0)
    decoded, _ = sf.read(buffer, dtype="float32")
    decoded = np.pad(decoded[: len(audio)], (0, max(0, len(audio) - len(decoded))))
    return decoded * (peak / 0.5)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` at `snr_db` measured over the whole clip, silence padding included, so
    the word itself ends up up to ~7 dB cleaner than the number (the benchmarks measure
    over the speech). Measuring over the speech here was tried for the whole 0.4.0 recipe
    and lost on clean voices (96.4 -> 93.6 %) with no gain in noise; see the README."""
    p_speech = np.mean(speech ** 2) + 1e-10
    p_noise = np.mean(noise ** 2) + 1e-10
    return speech + noise * np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10)))


class Augmenter:
    """Callable(waveform, utterance) -> augmented waveform; picklable for workers."""

    def __init__(self, config: AugmentConfig | None = None, seed: int = 0):
        config = config or AugmentConfig()
        if config.p_codec and "OPUS" not in sf.available_subtypes("OGG"):
            raise ValueError("p_codec needs Opus in libsndfile (1.0.29 or later); "
                             "this one has none")
        self.config = config
        self.seed = seed
        self.noises = _read_folder(config.noise_dir)
        self.rirs = [r / (np.abs(r).max() + 1e-9) for r in _read_folder(config.rir_dir)]
        self.rng = np.random.default_rng(seed)
        self.babble: list[np.ndarray] = []  # recent clips, mixed into babble noise

    def reseed(self, worker_seed: int) -> None:
        self.rng = np.random.default_rng(worker_seed)

    def _noise(self, n: int) -> np.ndarray:
        rng = self.rng
        kind = rng.random()
        if self.noises and kind < 0.65:
            src = self.noises[rng.integers(len(self.noises))]
            # A random stretch of the recording, wrapping round to its start.
            reps = -(-n // len(src)) + 1
            start = rng.integers(0, len(src) * reps - n + 1)
            return np.take(src, np.arange(start, start + n), mode="wrap")
        if len(self.babble) >= 4 and kind < 0.85:
            out = np.zeros(n, np.float32)
            for k in rng.choice(len(self.babble), size=rng.integers(3, 7)):
                clip = np.resize(self.babble[k], n)
                out += np.roll(clip, rng.integers(n)) * rng.uniform(0.3, 1.0)
            return out
        return coloured_noise(n, rng)

    def _pads(self, batch_seed: int | None) -> np.ndarray:
        """Silence (samples) before and after a trimmed synthetic clip.

        Given a batch seed, every clip of the batch gets the same total silence, placed at
        a random point: a batch of similar lengths costs little padding in the LSTM, while
        over many batches the silence still spans the whole configured range.
        """
        c = self.config
        framing = np.random.default_rng(batch_seed) if batch_seed is not None else self.rng
        lo, hi = (0.0, 0.05) if framing.random() < c.p_tight else c.pad_seconds
        if batch_seed is None:
            return (self.rng.uniform(lo, hi, size=2) * SAMPLE_RATE).astype(int)
        total = framing.uniform(lo, hi) * 2
        before = self.rng.uniform(0, total)
        return (np.array([before, total - before]) * SAMPLE_RATE).astype(int)

    def __call__(self, audio: np.ndarray, utt=None, batch_seed: int | None = None) -> np.ndarray:
        return self._augment(audio, utt, batch_seed, keep_clean=False)[0]

    def pair(self, audio: np.ndarray, utt=None, batch_seed: int | None = None):
        """(augmented, clean): the clean one is the same speech (same framing, speed and
        pitch) before reverberation, noise and channel effects, at the same length, for a
        teacher model to label (`distill_weight` in training)."""
        return self._augment(audio, utt, batch_seed, keep_clean=True)

    def _augment(self, audio, utt, batch_seed, keep_clean: bool):
        c, rng = self.config, self.rng
        synthetic = utt is None or utt.source.startswith("synth")
        if synthetic:
            if len(self.babble) < 32:
                self.babble.append(audio.copy())
            else:
                self.babble[rng.integers(32)] = audio.copy()
            # Real recordings often start and end right at the word; teach both framings.
            audio = np.pad(trim_silence(audio), self._pads(batch_seed))
        else:
            pads = (rng.uniform(0, 0.15, size=2) * SAMPLE_RATE).astype(int)
            audio = np.pad(audio, pads)
        # The recording itself came through a codec; drawn only when on, like p_eq below.
        if c.p_codec and rng.random() < c.p_codec:
            audio = codec_round_trip(audio, rng.uniform(*c.codec_level))
        if rng.random() < c.p_speed:
            factor = rng.uniform(*c.speed)
            audio = soxr.resample(audio, SAMPLE_RATE, SAMPLE_RATE / factor, quality="LQ")
        if rng.random() < c.p_pitch:
            audio = pitch_shift(audio, rng.uniform(*c.pitch_semitones))
        clean = audio
        if rng.random() < c.p_reverb:
            rir = self.rirs[rng.integers(len(self.rirs))] if self.rirs and rng.random() < 0.5 \
                else synthetic_rir(rng)
            wet = signal.fftconvolve(audio, rir)[: len(audio)]
            audio = wet * (np.abs(audio).max() / (np.abs(wet).max() + 1e-9))
        if rng.random() < c.p_noise:
            audio = mix_at_snr(audio, self._noise(len(audio)), rng.uniform(*c.snr_db))
        # Drawn only when on, so configs without them keep their random streams.
        if c.p_transients and rng.random() < c.p_transients:
            audio = mix_at_snr(audio, transients(len(audio), rng),
                               rng.uniform(*c.transients_snr_db))
        if c.p_floor and rng.random() < c.p_floor:
            audio = mix_at_snr(audio, coloured_noise(len(audio), rng, (0.0, 1.0)),
                               rng.uniform(*c.floor_snr_db))
        if c.p_eq and rng.random() < c.p_eq:
            audio = random_eq(audio, rng.uniform(-c.eq_db, c.eq_db, size=len(EQ_POINTS)))
        if c.p_clip and rng.random() < c.p_clip:
            audio = overdrive(audio, rng.uniform(*c.clip_fraction))
        if rng.random() < c.p_telephone:
            audio = self.telephone(audio)
        level = 10 ** (rng.uniform(*c.gain_db) / 20) * 0.5
        outputs = [audio]
        if keep_clean:
            # Resampling to 8 kHz and back can add a sample; the teacher's frames must match.
            outputs.append(np.pad(clean[: len(audio)], (0, max(0, len(audio) - len(clean)))))
        out = []
        for x in outputs:
            x = np.clip(x * (level / (np.abs(x).max() + 1e-9)), -1.0, 1.0).astype(np.float32)
            out.append(declip(x) if c.declip else x)
        return tuple(out)

    def telephone(self, audio: np.ndarray) -> np.ndarray:
        """Down to 8 kHz and back (as the runtime upsamples 8 kHz files), sometimes with a
        300-3400 Hz channel filter."""
        narrow = soxr.resample(audio, SAMPLE_RATE, 8000)
        if self.rng.random() < 0.5:
            narrow = signal.sosfilt(PHONE_BAND, narrow)
        return soxr.resample(narrow, 8000, SAMPLE_RATE)


def spec_augment(feats: torch.Tensor, lengths: torch.Tensor, time_masks: int = 2,
                 max_time: int = 8, freq_masks: int = 2, max_freq: int = 4) -> torch.Tensor:
    """SpecAugment on [batch, frames, coefficients]: zero random time and feature bands."""
    feats = feats.clone()
    batch, frames, dims = feats.shape
    for b in range(batch):
        n = int(lengths[b])
        for _ in range(time_masks):
            width = random.randint(0, min(max_time, max(n // 8, 0)))
            if width:
                start = random.randint(0, n - width)
                feats[b, start:start + width] = 0
        for _ in range(freq_masks):
            width = random.randint(0, max_freq)
            if width:
                start = random.randint(0, dims - width)
                feats[b, :, start:start + width] = 0
    return feats


def mask_mel_bands(log_mel: torch.Tensor, lengths: torch.Tensor, masks: int = 2,
                   max_width: int = 8) -> torch.Tensor:
    """SpecAugment's frequency masks on log-mel [batch, frames, bands]: up to `masks`
    runs of at most `max_width` adjacent bands per clip, each set to its own mean over
    the clip's frames (a band constant over the clip adds only a constant to each
    cepstral coefficient, which per-utterance normalization removes).

    Masking mel bands hides a frequency region, as narrow-band noise or a poor
    microphone does; masking cepstral coefficients (spec_augment's `freq_masks`) only
    blurs the spectrum's shape.
    """
    out = log_mel.clone()
    batch, frames, bands = out.shape
    for b in range(batch):
        n = max(1, min(int(lengths[b]), frames))
        for _ in range(masks):
            width = random.randint(0, min(max_width, bands))
            if width:
                start = random.randint(0, bands - width)
                band = out[b, :n, start:start + width]
                band[:] = band.mean(dim=0, keepdim=True)
    return out
