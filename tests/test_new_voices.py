"""New voices from recorded ones: the pitch and formants really move, apart; a corpus copy
keeps voice names (so held-out voices stay held out), skips formant-synthesis voices,
counts bad clips and resumes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("parselmouth")

from training import new_voices  # noqa: E402
from training.new_voices import Change  # noqa: E402

RATE = 16000


def vowel(f0: float = 120.0, formants=(600.0, 2200.0), seconds: float = 0.6) -> np.ndarray:
    """A steady vowel: a pulse train at f0 through two resonances."""
    n = int(seconds * RATE)
    pulses = np.zeros(n)
    pulses[:: int(RATE / f0)] = 1.0
    spectrum = np.fft.rfft(pulses)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    for f in formants:  # a resonance's magnitude response, 80 Hz wide
        spectrum *= 1 / np.sqrt(1 + ((freqs - f) / 40.0) ** 2)
    out = np.fft.irfft(spectrum, n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def pitch_hz(x: np.ndarray) -> float:
    """Fundamental frequency by autocorrelation over 60-400 Hz."""
    x = x[len(x) // 4: 3 * len(x) // 4]
    ac = np.correlate(x, x, "full")[len(x) - 1:]
    lo, hi = RATE // 400, RATE // 60
    return RATE / (lo + int(np.argmax(ac[lo:hi])))


def first_formant_hz(x: np.ndarray) -> float:
    """The spectral envelope's peak under 1 kHz (harmonics smoothed over 400 Hz)."""
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    width = int(400 / freqs[1])
    env = np.convolve(mag, np.ones(width) / width, "same")
    band = (freqs > 300) & (freqs < 1000)
    return float(freqs[band][np.argmax(env[band])])


def test_changes_are_deterministic_by_seed_and_clip_and_within_their_ranges():
    a = [new_voices.draw_change(0, f"wavs/flite/{i}.wav") for i in range(200)]
    assert a == [new_voices.draw_change(0, f"wavs/flite/{i}.wav") for i in range(200)]
    assert a != [new_voices.draw_change(1, f"wavs/flite/{i}.wav") for i in range(200)]
    ratios = [c.formant_ratio for c in a]
    pitches = [c.pitch_median_hz for c in a]
    assert min(ratios) >= 0.86 and max(ratios) <= 1.2 and min(ratios) < 0.9 < 1.15 < max(ratios)
    assert min(pitches) >= 85 and max(pitches) <= 270 and min(pitches) < 100 < 230 < max(pitches)
    assert all(0.6 <= c.pitch_range <= 1.6 for c in a)


def test_pitch_and_formants_move_independently():
    x = vowel()
    f1 = first_formant_hz(x)
    assert abs(pitch_hz(x) - 120) < 5 and abs(f1 - 600) < 80
    higher = new_voices.change_voice(x, RATE, Change(1.0, 210.0, 1.0))
    assert len(higher) == len(x) and higher.dtype == np.float32
    assert abs(pitch_hz(higher) - 210) < 15  # new pitch ...
    assert 0.9 < first_formant_hz(higher) / f1 < 1.1  # ... same vocal tract
    for ratio in (0.87, 1.15):
        other_tract = new_voices.change_voice(x, RATE, Change(ratio, 120.0, 1.0))
        assert abs(pitch_hz(other_tract) - 120) < 8  # same pitch ...
        assert abs(first_formant_hz(other_tract) / f1 - ratio) < 0.06  # ... formants moved
    assert np.abs(new_voices.change_voice(x * 3.2, RATE, Change(1.1, 150.0, 1.0))).max() <= 0.99


def write_corpus(root, rows):
    (root / "wavs").mkdir(parents=True)
    for row in rows:
        if row["path"].endswith(".wav") and "broken" not in row["path"]:
            sf.write(root / row["path"], vowel(), RATE)
    (root / "broken.wav").write_bytes(b"not audio")
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows)
                                         + '{"path": \n[1, 2]\n')  # malformed rows


def test_corpus_copy_keeps_voice_names_skips_espeak_counts_bad_clips_and_resumes(tmp_path,
                                                                                capsys):
    src = tmp_path / "synth"
    rows = [{"path": "wavs/a.wav", "text": "yes", "voice": "flite:rms"},
            {"path": "wavs/b.wav", "text": "no", "voice": "festival:kal_diphone"},
            {"path": "wavs/c.wav", "text": "up", "voice": "espeak-ng:en-us"},
            {"path": "broken.wav", "text": "go", "voice": "flite:slt"}]
    write_corpus(src, rows)
    out = tmp_path / "voices"
    assert new_voices.convert_corpus(src / "manifest.jsonl", out, seed=3, jobs=1) == 2
    made = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [(m["text"], m["voice"]) for m in made] == [("yes", "flite:rms"),
                                                        ("no", "festival:kal_diphone")]
    for m in made:
        audio, rate = sf.read(out / m["path"])
        assert rate == RATE and len(audio) == len(vowel())
        assert Change(m["formant_ratio"], m["pitch_median_hz"], m["pitch_range"]) == \
            new_voices.draw_change(3, m["path"])
    err = capsys.readouterr().err
    assert "1 failed" in err and "skipped 2 malformed rows" in err
    before = (out / made[0]["path"]).stat().st_mtime_ns
    assert new_voices.convert_corpus(src / "manifest.jsonl", out, seed=3, jobs=1) == 2
    assert (out / made[0]["path"]).stat().st_mtime_ns == before  # made once, kept
    assert "2 of 3 clips already made" in capsys.readouterr().err


def test_a_bad_manifest_or_no_praat_ends_with_one_sentence(tmp_path, monkeypatch):
    src = tmp_path / "synth"
    write_corpus(src, [{"path": "wavs/c.wav", "text": "up", "voice": "espeak-ng:en-us"}])
    with pytest.raises(SystemExit, match="no clips of flite, festival"):
        new_voices.convert_corpus(src / "manifest.jsonl", tmp_path / "out")
    with pytest.raises(SystemExit, match="does not exist"):
        new_voices.convert_corpus(tmp_path / "missing.jsonl", tmp_path / "out")
    monkeypatch.setitem(sys.modules, "parselmouth", None)  # not installed
    with pytest.raises(SystemExit, match="needs the praat-parselmouth package"):
        new_voices.convert_corpus(src / "manifest.jsonl", tmp_path / "out")
