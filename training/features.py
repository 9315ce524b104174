"""MFCC front end as a torch module that exports to ONNX.

Frames are cut by reshaping; in an export the STFT is real arithmetic on them
(torchaudio's complex STFT does not export); mel filterbank and DCT matrices come from
torchaudio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import nn


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_fft: int = 400  # 25 ms window
    hop_length: int = 160  # 10 ms hop
    n_mels: int = 40
    n_mfcc: int = 30
    f_min: float = 20.0
    f_max: float = 8000.0
    # Above 0: each mel band's noise floor (its quietest stretch in the clip) times this
    # is taken off the band's power before the log (spectral subtraction); 0 = off.
    noise_subtraction: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def frame_count(num_samples: torch.Tensor | int, hop_length: int):
    """Frames produced for a signal of `num_samples` (centered, zero-padded STFT)."""
    return num_samples // hop_length + 1


class MFCC(nn.Module):
    """Waveform [batch, samples] -> MFCC [batch, frames, n_mfcc].

    Matches librosa.feature.mfcc with center=True, pad_mode="constant", slaney mel
    scale and norm, power_to_db(top_db=None) and an orthonormal DCT-II.
    """

    def __init__(self, config: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.config = config
        n_fft = config.n_fft
        if n_fft % 2 or n_fft < 4:
            raise ValueError(f"n_fft must be even and at least 4, not {n_fft}")
        half = n_fft // 2
        n_freq = half + 1
        # A periodic window is symmetric, w[t] = w[n - t], and so are cos and -sin up to
        # sign: the DFT of a frame needs only its sums f[t] + f[n - t] (cosine part) and
        # differences f[t] - f[n - t] (sine part) for t <= n/2, half the multiplies.
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        t = torch.arange(half + 1, dtype=torch.float64)
        f = torch.arange(n_freq, dtype=torch.float64)
        angle = 2 * torch.pi * t[:, None] * f[None, :] / n_fft
        cos = torch.cos(angle) * window[: half + 1, None]  # rows t = 0 .. n/2
        sin = -torch.sin(angle[1:half]) * window[1:half, None]  # rows t = 1 .. n/2 - 1
        self.register_buffer("window", window.float(), persistent=False)
        self.register_buffer("cos_basis", cos.float(), persistent=False)
        self.register_buffer("sin_basis", sin.float(), persistent=False)
        mel = torchaudio.functional.melscale_fbanks(
            n_freq, config.f_min, config.f_max, config.n_mels, config.sample_rate,
            norm="slaney", mel_scale="slaney",
        )
        self.register_buffer("mel_fbank", mel, persistent=False)
        dct = torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> centred, zero-padded frames [batch, frames, n_fft].

        Cut from hop-sized blocks by reshaping and slicing, which export with a dynamic
        length (`unfold` does not).
        """
        n, hop = self.config.n_fft, self.config.hop_length
        whole, rest = divmod(n, hop)  # a frame: `whole` blocks and `rest` samples
        count = audio.shape[1] // hop + 1
        x = nn.functional.pad(audio, (n // 2, n // 2 + hop * (whole + 1)))
        blocks = x[:, : (count + whole) * hop].reshape(audio.shape[0], count + whole, hop)
        parts = [blocks[:, i:i + count] for i in range(whole)]
        return torch.cat(parts + [blocks[:, whole:whole + count, :rest]], dim=-1)

    def power_spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> power spectrum [batch, frames, n_fft//2 + 1].

        In torch an FFT (4-5 times faster: a fifth of a CPU training step was the DFT);
        in an ONNX export the DFT as matrix products, which every exporter handles.
        """
        if torch.onnx.is_in_onnx_export():
            return self.dft_power(audio)
        spectrum = torch.fft.rfft(self.frames(audio) * self.window, dim=-1)
        return spectrum.real.square() + spectrum.imag.square()

    def dft_power(self, audio: torch.Tensor) -> torch.Tensor:
        """power_spectrogram by real matrix products, for the ONNX export."""
        half = self.config.n_fft // 2
        frames = self.frames(audio)
        head = frames[..., : half + 1]  # t = 0 .. n/2
        tail = frames[..., half + 1:].flip(-1)  # t = n - 1 .. n/2 + 1, paired with 1 .. n/2 - 1
        sums = torch.cat([head[..., :1], head[..., 1:half] + tail, head[..., half:]], dim=-1)
        real = sums @ self.cos_basis
        imag = (head[..., 1:half] - tail) @ self.sin_basis
        return real.square() + imag.square()

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> log-mel power in dB [batch, frames, n_mels]."""
        mel = self.power_spectrogram(audio) @ self.mel_fbank
        return 10.0 * torch.log10(torch.clamp(mel, min=1e-10))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.log_mel(audio) @ self.dct


NOISE_FLOOR_FRAMES = 5  # frames averaged before the quietest stretch is sought
NOISE_GAIN_FLOOR_DB = -13.0  # the most any band of a frame is lowered


def subtract_noise_floor(log_mel: torch.Tensor, lengths: torch.Tensor,
                         over: float) -> torch.Tensor:
    """Log-mel [batch, frames, bands] with `over` times each band's noise floor taken off
    its power: the floor is the band's lowest level averaged over NOISE_FLOOR_FRAMES
    frames within the row's `lengths`; no band of a frame falls more than
    NOISE_GAIN_FLOOR_DB."""
    half = NOISE_FLOOR_FRAMES // 2
    steps = torch.arange(log_mel.shape[1], device=log_mel.device)[None, :]
    n = lengths[:, None]
    # Only averages of valid frames count, away from the clip's (zero-padded) edges; a
    # clip too short for one such average takes its quietest single frame.
    whole = (steps >= half) & (steps < n - half)
    short = (n < NOISE_FLOOR_FRAMES) & (steps < n)
    smoothed = nn.functional.avg_pool1d(log_mel.transpose(1, 2), NOISE_FLOOR_FRAMES,
                                        stride=1, padding=half).transpose(1, 2)
    candidates = torch.where(short.unsqueeze(-1), log_mel, smoothed)
    floor = candidates.masked_fill(~(whole | short).unsqueeze(-1), 1e4).amin(
        dim=1, keepdim=True)
    gain = torch.clamp(1.0 - over * torch.pow(10.0, (floor - log_mel) / 10.0),
                       min=10.0 ** (NOISE_GAIN_FLOOR_DB / 10.0))
    return log_mel + 10.0 * torch.log10(gain)


def model_input(mfcc: MFCC, audio: torch.Tensor, audio_lengths: torch.Tensor,
                mel_augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
    """Padded waveforms [batch, samples] -> normalized MFCC [batch, frames, n_mfcc] and
    frame lengths: what the network reads.

    `mel_augment(log_mel, lengths)`, in training only, changes the log-mel bands before the
    DCT (SpecAugment's frequency masks).
    """
    steps = torch.arange(audio.shape[1], device=audio.device)
    audio = audio * (steps[None, :] < audio_lengths[:, None]).to(audio.dtype)
    lengths = frame_count(audio_lengths, mfcc.config.hop_length)
    log_mel = mfcc.log_mel(audio)
    if mfcc.config.noise_subtraction > 0:
        log_mel = subtract_noise_floor(log_mel, lengths, mfcc.config.noise_subtraction)
    if mel_augment is not None:
        log_mel = mel_augment(log_mel, lengths)
    return masked_normalize(log_mel @ mfcc.dct, lengths), lengths


def masked_normalize(feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5):
    """Per-utterance mean and variance normalization over valid frames; padding -> 0."""
    steps = torch.arange(feats.shape[1], device=feats.device)
    mask = (steps[None, :] < lengths[:, None]).unsqueeze(-1).to(feats.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(dim=1, keepdim=True) / count
    var = ((feats - mean).square() * mask).sum(dim=1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + eps) * mask
