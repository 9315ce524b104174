"""The training MFCC front end equals librosa's and torchaudio's MFCC with the same settings.

Those two are the reference definitions; the ONNX export tests then prove the graph equals this.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
librosa = pytest.importorskip("librosa")
torchaudio = pytest.importorskip("torchaudio")

from training.features import MFCC, FeatureConfig, frame_count, masked_normalize  # noqa: E402

CONFIG = FeatureConfig()
# MFCC values reach a few hundred (c0 of a log-mel in dB); float32 leaves ~1e-4 of that.
ATOL = 2e-3


def speech_like(n: int, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A gliding harmonic tone under a syllable-shaped envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 110 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 40))
    envelope = np.exp(-(((t - t.mean()) / max(t.max() / 4, 1e-3)) ** 2))
    y = voiced * envelope + 0.01 * rng.standard_normal(n)
    return (0.4 * y / np.abs(y).max()).astype(np.float32)


def signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "speech_like_1s": speech_like(16000),
        "speech_like_odd": speech_like(12_345, seed=2),
        "white_noise": (0.1 * rng.standard_normal(7_777)).astype(np.float32),
        "quiet_noise": (1e-4 * rng.standard_normal(3_000)).astype(np.float32),
        "silence": np.zeros(2_000, np.float32),
        "shorter_than_window": (0.1 * rng.standard_normal(250)).astype(np.float32),
    }


def ours(y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return MFCC(CONFIG)(torch.from_numpy(y)[None])[0].numpy()


def librosa_mfcc(y: np.ndarray) -> np.ndarray:
    mel = librosa.feature.melspectrogram(
        y=y, sr=CONFIG.sample_rate, n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length,
        center=True, pad_mode="constant", n_mels=CONFIG.n_mels, fmin=CONFIG.f_min,
        fmax=CONFIG.f_max, htk=False, norm="slaney", power=2.0)
    S = librosa.power_to_db(mel, top_db=None)
    return librosa.feature.mfcc(S=S, n_mfcc=CONFIG.n_mfcc, dct_type=2, norm="ortho").T


def torchaudio_mfcc(y: np.ndarray) -> np.ndarray:
    transform = torchaudio.transforms.MFCC(
        sample_rate=CONFIG.sample_rate, n_mfcc=CONFIG.n_mfcc, dct_type=2, norm="ortho",
        log_mels=False,
        melkwargs=dict(n_fft=CONFIG.n_fft, hop_length=CONFIG.hop_length, n_mels=CONFIG.n_mels,
                       f_min=CONFIG.f_min, f_max=CONFIG.f_max, center=True,
                       pad_mode="constant", norm="slaney", mel_scale="slaney", power=2.0))
    transform.amplitude_to_DB.top_db = None
    with torch.no_grad():
        return transform(torch.from_numpy(y)[None])[0].T.numpy()


@pytest.mark.filterwarnings("ignore:n_fft=.*too large")
@pytest.mark.parametrize("name", list(signals()))
def test_matches_librosa(name):
    y = signals()[name]
    expected = librosa_mfcc(y)
    got = ours(y)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(signals()))
def test_matches_torchaudio(name):
    y = signals()[name]
    expected = torchaudio_mfcc(y)
    got = ours(y)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")
@pytest.mark.parametrize("n_fft", [400, 512, 64])
@pytest.mark.parametrize("name", ["speech_like_odd", "white_noise", "quiet_noise"])
def test_export_dft_matches_fft(name, n_fft):
    """The ONNX export computes the spectrum by matrix products, training by FFT."""
    mfcc = MFCC(FeatureConfig(n_fft=n_fft))
    audio = torch.from_numpy(signals()[name])[None]
    with torch.no_grad():
        fft, dft = mfcc.power_spectrogram(audio), mfcc.dft_power(audio)
    assert fft.shape == dft.shape == (1, frame_count(audio.shape[1], 160), n_fft // 2 + 1)
    np.testing.assert_allclose(dft.numpy(), fft.numpy(), rtol=0,
                               atol=1e-5 * float(fft.max()))


@pytest.mark.parametrize("n", [1, 159, 160, 161, 400, 16000, 16001])
def test_frame_count(n):
    feats = MFCC(CONFIG)(torch.zeros(1, n))
    assert feats.shape[1] == frame_count(n, CONFIG.hop_length) == n // CONFIG.hop_length + 1


@pytest.mark.filterwarnings("ignore:At least one mel filterbank")
@pytest.mark.parametrize(("n_fft", "hop"), [(400, 160), (320, 160), (64, 160), (512, 128)])
def test_frames_are_librosas_centred_frames(n_fft, hop):
    y = speech_like(3_333)
    mfcc = MFCC(FeatureConfig(n_fft=n_fft, hop_length=hop))
    with torch.no_grad():
        got = mfcc.frames(torch.from_numpy(y)[None])[0].numpy()
    padded = np.pad(y, n_fft // 2)
    expected = librosa.util.frame(padded, frame_length=n_fft, hop_length=hop, axis=0)
    assert got.shape == expected.shape == (frame_count(len(y), hop), n_fft)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("n_fft", [2, 401])
def test_window_length_must_be_even(n_fft):
    with pytest.raises(ValueError, match="even"):
        MFCC(FeatureConfig(n_fft=n_fft))


def test_batch_rows_are_independent():
    a, b = speech_like(16000), speech_like(16000, seed=5)
    with torch.no_grad():
        batch = MFCC(CONFIG)(torch.from_numpy(np.stack([a, b])))
    np.testing.assert_allclose(batch[1].numpy(), ours(b), atol=1e-4, rtol=0)


def test_masked_normalize_ignores_padding():
    feats = torch.randn(1, 50, 4) * 3 + 7
    padded = torch.cat([feats, torch.randn(1, 20, 4) * 100], dim=1)
    alone = masked_normalize(feats, torch.tensor([50]))
    both = masked_normalize(padded, torch.tensor([50]))
    torch.testing.assert_close(both[:, :50], alone, atol=1e-5, rtol=0)
    assert both[:, 50:].abs().max() == 0
    assert alone.mean(dim=1).abs().max() < 1e-4
    assert (alone.std(dim=1, unbiased=False) - 1).abs().max() < 1e-3


def test_noise_subtraction_lowers_steady_noise_not_speech_and_ignores_padding():
    from training.features import NOISE_GAIN_FLOOR_DB, subtract_noise_floor
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tone = np.where((t > 0.4) & (t < 0.7), 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0)
    audio = torch.from_numpy((0.05 * rng.standard_normal(16000) + tone).astype(np.float32))
    frames = frame_count(16000, CONFIG.hop_length)
    log_mel = MFCC(CONFIG).log_mel(audio[None])
    out = subtract_noise_floor(log_mel, torch.tensor([frames]), 2.0)
    drop = out - log_mel
    assert drop.max() <= 0 and drop.min() >= NOISE_GAIN_FLOOR_DB - 1e-4
    assert drop[0, 5:35].mean() < -6  # noise alone: several dB down
    assert drop[0, 45:65].max(dim=-1).values.mean() > -0.1  # the tone's band stays
    # Padding (here loud) neither sets the floor nor changes the valid frames.
    padded = torch.cat([log_mel, torch.full((1, 30, CONFIG.n_mels), 80.0)], dim=1)
    again = subtract_noise_floor(padded, torch.tensor([frames]), 2.0)
    torch.testing.assert_close(again[:, :frames], out, atol=1e-4, rtol=0)
