"""MFCC front end as a torch module that exports to ONNX.

The STFT is a strided conv1d over a windowed DFT basis (torchaudio's complex STFT
does not export); mel filterbank and DCT matrices come from torchaudio.
"""

from __future__ import annotations

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
        n_freq = n_fft // 2 + 1
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        t = torch.arange(n_fft, dtype=torch.float64)
        f = torch.arange(n_freq, dtype=torch.float64)
        angle = 2 * torch.pi * f[:, None] * t[None, :] / n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.register_buffer("dft_basis", basis.float().unsqueeze(1), persistent=False)
        mel = torchaudio.functional.melscale_fbanks(
            n_freq, config.f_min, config.f_max, config.n_mels, config.sample_rate,
            norm="slaney", mel_scale="slaney",
        )
        self.register_buffer("mel_fbank", mel, persistent=False)
        dct = torchaudio.functional.create_dct(config.n_mfcc, config.n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)

    def power_spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> power spectrum [batch, frames, n_fft//2 + 1]."""
        pad = self.config.n_fft // 2
        x = nn.functional.pad(audio.unsqueeze(1), (pad, pad))
        spec = nn.functional.conv1d(x, self.dft_basis, stride=self.config.hop_length)
        real, imag = spec.chunk(2, dim=1)
        return (real.square() + imag.square()).transpose(1, 2)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.power_spectrogram(audio) @ self.mel_fbank
        log_mel = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        return log_mel @ self.dct


def masked_normalize(feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5):
    """Per-utterance mean and variance normalization over valid frames; padding -> 0."""
    steps = torch.arange(feats.shape[1], device=feats.device)
    mask = (steps[None, :] < lengths[:, None]).unsqueeze(-1).to(feats.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (feats * mask).sum(dim=1, keepdim=True) / count
    var = ((feats - mean).square() * mask).sum(dim=1, keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + eps) * mask
