"""Audio reading: every rate, channel count and sample format to 16 kHz mono float32,
block reading equal to whole-file reading, and one clear sentence for each bad file.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechrnn.audio import (
    AudioError,
    audio_info,
    declip,
    iter_blocks,
    read_audio,
    resample,
    to_16k_mono,
    to_mono_float,
)
from tests.signals import at_best_scale, voiced


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def band_energy(x: np.ndarray, lo: float, hi: float, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(f >= lo) & (f <= hi)].sum() / spectrum.sum())


@pytest.mark.parametrize("rate,subtype", [(8000, "PCM_16"), (16000, "PCM_24"),
                                          (22050, "PCM_32"), (44100, "FLOAT"),
                                          (48000, "PCM_U8")])
def test_any_rate_and_format_becomes_16k_mono_float(tmp_path, rate, subtype):
    path = tmp_path / "a.wav"
    sf.write(path, tone(1000, rate), rate, subtype=subtype)
    audio = read_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(16000, abs=2)
    assert peak_hz(audio) == pytest.approx(1000, abs=2)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.05)


def test_stereo_is_averaged(tmp_path):
    path = tmp_path / "stereo.wav"
    left, right = tone(440, 16000), tone(440, 16000, amp=0.1)
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="PCM_24")
    np.testing.assert_allclose(read_audio(path), (left + right) / 2, atol=1e-4)


def test_upsampling_8k_leaves_no_image(tmp_path):
    # Naive upsampling (zero insertion or sample repetition) mirrors a 1 kHz tone at 7 kHz.
    path = tmp_path / "phone.wav"
    sf.write(path, tone(1000, 8000), 8000)
    assert band_energy(read_audio(path), 6000, 8000) < 1e-6


def test_downsampling_removes_what_16k_cannot_hold(tmp_path):
    # A 10 kHz tone at 44.1 kHz is above 16 kHz's Nyquist: decimation would fold it to 6 kHz.
    path = tmp_path / "hifi.wav"
    sf.write(path, tone(10000, 44100) + tone(1000, 44100), 44100, subtype="FLOAT")
    audio = read_audio(path)
    assert band_energy(audio, 5500, 6500) < 1e-6
    assert peak_hz(audio) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("fmt,ext", [("FLAC", "flac"), ("OGG", "ogg")])
def test_flac_and_ogg(tmp_path, fmt, ext):
    path = tmp_path / f"a.{ext}"
    sf.write(path, tone(500, 32000), 32000, format=fmt)
    audio = read_audio(path)
    assert len(audio) == pytest.approx(16000, abs=2)
    assert peak_hz(audio) == pytest.approx(500, abs=2)


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_blocks_join_to_the_whole_file(tmp_path, rate):
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    sf.write(path, (rng.standard_normal(rate * 3) * 0.1).astype(np.float32), rate,
             subtype="FLOAT")
    blocks = list(iter_blocks(path, block_seconds=0.7))
    assert len(blocks) >= 4
    assert max(len(b) for b in blocks) <= 0.7 * 16000 + 2000
    np.testing.assert_allclose(np.concatenate(blocks), read_audio(path), atol=1e-5)


def test_block_reading_of_an_exact_multiple(tmp_path):
    path = tmp_path / "two.wav"
    sf.write(path, tone(300, 16000, seconds=2.0), 16000)
    assert [len(b) for b in iter_blocks(path, block_seconds=1.0)] == [16000, 16000]


def test_info(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros((8000, 2), np.float32), 8000)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.duration) == (8000, 2, 8000, 1.0)


def test_arrays_of_any_dtype():
    assert to_mono_float(np.array([0, 16384, -32768], np.int16)).tolist() == [0, 0.5, -1]
    assert to_mono_float(np.array([128, 255, 0], np.uint8)).tolist() == pytest.approx(
        [0, 127 / 128, -1])
    stereo = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert to_mono_float(stereo).tolist() == [0.5, 0.5]
    assert len(to_16k_mono(np.zeros(4000, np.int16), 8000)) == 8000
    with pytest.raises(ValueError):
        to_16k_mono(np.zeros(10), 0)


# -- bad files: one sentence each, naming the file --------------------------------------


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


def bad_files(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(440, 16000), 16000)
    header = good.read_bytes()
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    nan = tmp_path / "nan.wav"
    samples = tone(440, 16000)
    samples[100] = np.nan
    sf.write(nan, samples, 16000, subtype="FLOAT")
    inf = tmp_path / "inf.wav"
    samples[100] = np.inf
    sf.write(inf, samples, 16000, subtype="FLOAT")
    # Finite, but so large that mixing channels or resampling would overflow to inf
    # (found by the fuzz run: a float WAV at 8 kHz holding 3.4e38).
    huge = tmp_path / "huge.wav"
    loud = np.stack([tone(440, 8000), tone(440, 8000)], axis=1)
    loud[100] = 3.4e38
    sf.write(huge, loud, 8000, subtype="FLOAT")
    return {
        "missing": (tmp_path / "missing.wav", "does not exist"),
        "empty": (write_bytes(tmp_path / "empty.wav", b""), "is empty"),
        "zero-length": (zero, "holds no audio"),
        "truncated header": (write_bytes(tmp_path / "cut.wav", header[:20]), "not a readable"),
        "corrupt header": (write_bytes(tmp_path / "bad.wav", b"RIFX" + header[4:12]
                                       + b"junk" * 10 + header[52:]), "not a readable"),
        "text": (write_bytes(tmp_path / "notes.wav", b"just some text\n" * 10),
                 "not a readable"),
        "nan": (nan, "NaN or infinite"),
        "inf": (inf, "NaN or infinite"),
        "huge": (huge, "times full scale"),
        "folder": (tmp_path, "is a folder"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "zero-length", "truncated header",
                                  "corrupt header", "text", "nan", "inf", "huge",
                                  "folder"])
def test_bad_file_gives_one_sentence_naming_it(tmp_path, case):
    path, words = bad_files(tmp_path)[case]
    for read in (read_audio, lambda p: list(iter_blocks(p))):
        with pytest.raises(AudioError) as err:
            read(path)
        message = str(err.value)
        assert str(path) in message and words in message
        assert "\n" not in message and "Traceback" not in message


def test_nan_late_in_a_long_file_is_found_by_the_block_reader(tmp_path):
    path = tmp_path / "late.wav"
    samples = tone(440, 16000, seconds=5.0)
    samples[-10] = np.nan
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        list(iter_blocks(path, block_seconds=1.0))


# -- clipped recordings ---------------------------------------------------------------


@pytest.mark.parametrize("audio", [voiced(), tone(50, 16000, amp=0.9), tone(1000, 16000),
                                   np.zeros(16000, np.float32), np.zeros(3, np.float32)])
def test_declip_leaves_audio_that_does_not_clip_alone(audio):
    assert declip(audio) is audio


def test_declip_rebuilds_clipped_peaks_close_to_the_original():
    clean = voiced()
    clipped = np.clip(clean, -0.7, 0.7)  # about 4 % of the samples, as a hot microphone
    rebuilt = declip(clipped)
    assert rebuilt.dtype == np.float32 and rebuilt.shape == clean.shape
    near_top = np.abs(clipped) >= 0.7 * (1 - 0.01)
    assert np.array_equal(rebuilt[~near_top], clipped[~near_top])  # the rest is kept as is
    assert (np.abs(rebuilt[near_top]) >= np.abs(clipped[near_top])).all()
    assert np.abs(rebuilt).max() > 0.75  # the peaks rise again, as before clipping

    error = at_best_scale(rebuilt, clean) - clean
    before = at_best_scale(clipped, clean) - clean
    assert np.abs(error).max() < 0.3 * np.abs(before).max()
    assert np.mean(error ** 2) < 0.05 * np.mean(before ** 2)
    assert declip(rebuilt) is rebuilt  # nothing left to rebuild


def test_declip_rebuilds_only_the_polarity_that_clips():
    clipped = np.minimum(voiced(), 0.4)  # only the positive peaks clip
    rebuilt = declip(clipped)
    negative = clipped < 0
    assert np.array_equal(rebuilt[negative], clipped[negative])  # the negative half as is
    plateau = clipped == 0.4
    assert (rebuilt[plateau] > 0.4 + 1e-3).any()  # the positive peaks rise


def test_declip_leaves_runs_at_the_edges_and_non_finite_audio_alone():
    clipped = np.clip(voiced(), -0.3, 0.3)
    edge = np.r_[np.full(5, 0.3, np.float32), clipped[100:]]  # starts inside a clipped run
    rebuilt = declip(edge)
    assert np.array_equal(rebuilt[:5] / rebuilt[:5].max(), np.ones(5, np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        damaged = clipped.copy()
        damaged[10] = bad
        assert declip(damaged) is damaged  # not finite: left for the caller to refuse


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_declip_leaves_float_audio_beyond_full_scale_alone(sign):
    # Flat tops on one side, but the other side goes past 1: not a recording that clipped
    # at its full scale, so nothing is rebuilt.
    audio = np.clip(voiced(), -0.5, 0.5)
    audio[audio.argmin() if sign > 0 else audio.argmax()] = -sign * 1.5
    assert declip(audio) is audio


def test_audio_clipped_at_another_rate_is_rebuilt_before_resampling(tmp_path):
    clean = voiced(rate=48000)
    clipped = np.clip(clean, -0.7, 0.7)
    path = tmp_path / "hot.wav"
    sf.write(path, clipped, 48000, subtype="PCM_16")
    as_read = sf.read(path, dtype="float32")[0]
    np.testing.assert_allclose(read_audio(path), resample(declip(as_read), 48000), atol=1e-6)
    np.testing.assert_allclose(np.concatenate(list(iter_blocks(path))), read_audio(path),
                               atol=1e-4)
    got = to_16k_mono(clipped, 48000)
    np.testing.assert_allclose(got, resample(declip(clipped), 48000), atol=1e-6)
    # Resampled first, the flat tops would be smoothed and no longer found.
    plain = resample(clipped, 48000)
    assert declip(plain) is plain
    target = resample(clean, 48000)
    assert (np.mean((at_best_scale(got, target) - target) ** 2)
            < 0.1 * np.mean((at_best_scale(plain, target) - target) ** 2))

