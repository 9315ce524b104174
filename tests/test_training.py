"""Training side: manifests, splits, augmentation, config errors, checkpoints, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from training import enroll  # noqa: E402
from training import train as train_mod  # noqa: E402
from training.augment import (  # noqa: E402
    AugmentConfig,
    Augmenter,
    coloured_noise,
    mask_mel_bands,
    overdrive,
    pitch_shift,
    spec_augment,
    trim_silence,
)
from training.checkpoint import CheckpointError, load_model, save_checkpoint  # noqa: E402
from training.datasets import (  # noqa: E402
    BucketBatchSampler,
    read_manifest,
    read_speech_commands,
    split_by_speaker,
)
from training.datasets import main as datasets_main  # noqa: E402
from training.ema import WeightAverage  # noqa: E402
from training.model import CTCModel, ModelConfig, reverse_padded  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tone(seconds: float, freq: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_corpus(folder: Path, n: int = 24) -> Path:
    """A manifest of tone clips standing for two words, by four 'voices'."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        word, freq = (("yes", 440.0), ("no", 880.0))[i % 2]
        audio = np.concatenate([np.zeros(1600, np.float32), tone(0.4, freq),
                                np.zeros(1600, np.float32)])
        path = folder / f"{i}.wav"
        sf.write(path, audio, 16000)
        rows.append({"path": path.name, "text": word, "voice": f"v{i % 4}"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def tiny_config(tmp_path: Path, manifest: Path, **over) -> dict:
    cfg = {
        "run_dir": str(tmp_path / "run"), "output": str(tmp_path / "model.pt"),
        "model": {"proj_dim": 16, "hidden": 16, "layers": 1},
        "augment": {"noise_dir": None, "rir_dir": None, "p_pitch": 0.0},
        "data": {"synth_manifest": str(manifest), "synth_held_out_voices": ["v3"],
                 "synth_held_out_fraction": 0.0, "real": [], "validation_clips": 50},
        "batch_size": 4, "max_epochs": 2, "warmup_steps": 2, "workers": 0, "threads": 1,
    }
    cfg.update(over)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return cfg


def test_manifest_skips_missing_and_malformed_rows(tmp_path):
    manifest = make_corpus(tmp_path / "c", n=4)
    with open(manifest, "a") as f:
        f.write(json.dumps({"path": "gone.wav", "text": "x"}) + "\n")
        f.write("{not json\n")
    utts = read_manifest(manifest)
    assert len(utts) == 4
    assert {u.text for u in utts} == {"yes", "no"}
    assert all(Path(u.path).is_absolute() for u in utts)


def test_split_by_speaker_never_splits_a_voice(tmp_path):
    utts = read_manifest(make_corpus(tmp_path / "c", n=40))
    train, held = split_by_speaker(utts, 0.3, always_held_out=["v0"])
    assert {u.speaker for u in train}.isdisjoint({u.speaker for u in held})
    assert "v0" in {u.speaker for u in held}
    assert len(train) + len(held) == 40


def test_extra_synthetic_corpora_train_only_on_voices_the_split_keeps(tmp_path):
    first, second = make_corpus(tmp_path / "a", n=8), make_corpus(tmp_path / "b", n=12)
    cfg = train_mod.DataConfig(synth_manifest=str(first), extra_synth_manifests=[str(second)],
                               synth_held_out_voices=["v3"], synth_held_out_fraction=0.0,
                               real=[])
    corpus = train_mod.build_corpus(cfg, seed=0)
    assert len(corpus.train) == 6 + 9  # v3 says every fourth clip of each corpus
    assert {Path(u.path).parent.name for u in corpus.train} == {"a", "b"}
    assert "v3" not in {u.speaker for u in corpus.train}
    held, _ = corpus.validation["synth_heldout_voices"]
    assert {Path(u.path).parent.name for u in held} == {"a"}  # validation: first corpus


def test_a_missing_synthetic_corpus_says_how_to_make_it(tmp_path):
    cfg = train_mod.DataConfig(synth_manifest=str(make_corpus(tmp_path / "a", n=4)),
                               extra_synth_manifests=[str(tmp_path / "none.jsonl")], real=[])
    with pytest.raises(train_mod.ConfigError, match="none.jsonl does not exist.*training.synth"):
        train_mod.build_corpus(cfg, seed=0)
    cfg = train_mod.DataConfig(synth_manifest=str(tmp_path / "main.jsonl"), real=[])
    with pytest.raises(train_mod.ConfigError, match="main.jsonl does not exist.*training.synth"):
        train_mod.build_corpus(cfg, seed=0)


def make_speech_commands(root: Path) -> Path:
    """A tiny Google Speech Commands folder: speaker bb22 validates, cc33 tests."""
    for word, speaker in (("yes", "aa11"), ("yes", "bb22"), ("no", "aa11"), ("no", "cc33")):
        (root / word).mkdir(parents=True, exist_ok=True)
        sf.write(root / word / f"{speaker}_nohash_0.wav", tone(0.2, 300), 16000)
    (root / "_background_noise_").mkdir()
    sf.write(root / "_background_noise_" / "white.wav", tone(0.2, 300), 16000)
    (root / "validation_list.txt").write_text("yes/bb22_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("no/cc33_nohash_0.wav\n")
    return root


def test_speech_commands_layout(tmp_path):
    splits = read_speech_commands(make_speech_commands(tmp_path))
    assert [u.speaker for u in splits["validation"]] == ["bb22"]
    assert [u.text for u in splits["test"]] == ["no"]
    assert sorted(u.text for u in splits["train"]) == ["no", "yes"]


def test_speech_commands_split_written_as_a_manifest_reads_back(tmp_path, capsys):
    gsc = make_speech_commands(tmp_path / "gsc")
    out = tmp_path / "test.jsonl"
    assert datasets_main([str(gsc), "-o", str(out)]) == 0
    assert "1 clips of 1 speakers" in capsys.readouterr().out
    back = read_manifest(out)
    assert [(Path(u.path), u.text, u.speaker) for u in back] == [
        (gsc / "no" / "cc33_nohash_0.wav", "no", "cc33")]
    assert datasets_main([str(gsc), "-o", str(out), "--split", "train"]) == 0
    assert sorted(u.text for u in read_manifest(out)) == ["no", "yes"]
    assert datasets_main([str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def test_speech_commands_folder_joins_training_with_its_own_validation(tmp_path):
    gsc = make_speech_commands(tmp_path / "gsc")
    cfg = train_mod.DataConfig(synth_manifest=str(make_corpus(tmp_path / "a", n=4)),
                               synth_held_out_fraction=0.0, real=[],
                               speech_commands_dir=str(gsc))
    corpus = train_mod.build_corpus(cfg, seed=0)
    assert sorted(u.text for u in corpus.train if u.source == "speech_commands") == [
        "no", "yes"]
    held, words = corpus.validation["speech_commands"]
    assert [u.speaker for u in held] == ["bb22"] and "yes" in words
    missing = replace(cfg, speech_commands_dir=str(tmp_path / "nowhere"))
    with pytest.raises(train_mod.ConfigError, match="nowhere does not exist: put the Google"):
        train_mod.build_corpus(missing, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(train_mod.ConfigError, match="empty holds no training clips"):
        train_mod.build_corpus(replace(cfg, speech_commands_dir=str(tmp_path / "empty")),
                               seed=0)


def test_speech_commands_config_is_the_third_stage_with_that_folder():
    cfg = train_mod.load_config(ROOT / "training/configs/speech_commands.json")
    again = train_mod.load_config(ROOT / "training/configs/finetune_again.json")
    assert cfg.data.speech_commands_dir == "data/speech_commands"
    assert cfg.init_checkpoint == "training/checkpoints/default.pt"
    assert replace(cfg, data=again.data, run_dir=again.run_dir, output=again.output) == again


def test_augmenter_output_is_finite_bounded_and_varied(tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hum.wav", tone(1.0, 50, rate=8000), 8000)  # other rates are resampled
    aug = Augmenter(AugmentConfig(noise_dir=str(noise), rir_dir=None, p_noise=1.0,
                                  p_telephone=0.5, p_reverb=0.5, p_pitch=0.0), seed=3)
    clean = np.concatenate([np.zeros(4000, np.float32), tone(0.5, 440)])
    outs = [aug(clean) for _ in range(8)]
    for out in outs:
        assert out.dtype == np.float32 and np.isfinite(out).all()
        assert np.abs(out).max() <= 1.0
        assert 0.5 * len(clean) < len(out) < 2.0 * len(clean)
    assert len({len(o) for o in outs}) > 1  # speed and padding change the length


def test_clean_copies_match_the_noisy_clips_frame_for_frame(tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    sf.write(noise / "hiss.wav", np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
    speech = np.concatenate([np.zeros(4001, np.float32), tone(0.5, 440)])  # odd length
    config = dict(noise_dir=str(noise), rir_dir=None, p_noise=1.0, p_telephone=1.0,
                  p_reverb=0.5, p_pitch=0.0, pad_seconds=(0.2, 0.4), p_tight=0.0)
    paired, single = Augmenter(AugmentConfig(**config), seed=5), \
        Augmenter(AugmentConfig(**config), seed=5)
    for _ in range(6):
        noisy, clean = paired.pair(speech)
        # The noisy clip is the one a plain call draws: the random stream is unchanged.
        assert np.array_equal(noisy, single(speech))
        # 8 kHz and back adds a sample to odd lengths; the copy keeps the clip's length.
        assert len(clean) == len(noisy) and clean.dtype == np.float32
        # The copy is the speech alone: silent where the noisy clip carries only noise.
        silent = np.abs(clean) < 1e-5
        assert silent.sum() > 1000 and np.abs(noisy[silent]).mean() > 1e-3
    # Without noise, reverberation or channel effects the copy is the clip itself.
    quiet = Augmenter(AugmentConfig(noise_dir=None, rir_dir=None, p_noise=0.0,
                                    p_telephone=0.0, p_reverb=0.0, p_pitch=0.0), seed=1)
    noisy, clean = quiet.pair(speech)
    assert np.array_equal(noisy, clean)


def test_distillation_loss_is_zero_for_the_teacher_itself_and_grows_with_noise():
    torch.manual_seed(0)
    teacher = CTCModel(ModelConfig(proj_dim=16, hidden=16, layers=1)).eval()
    clean = torch.from_numpy(np.stack([tone(0.6, 440), tone(0.6, 660)]))
    lengths = torch.tensor([9600, 7000])
    batch = {"clean_audio": clean, "audio_lengths": lengths,
             "target_lengths": torch.tensor([3, 2])}

    def loss(audio):
        lp, fl = teacher(audio, lengths)
        return train_mod.distillation_loss(teacher, batch, lp, fl, bf16=False).item()

    assert loss(clean) == pytest.approx(0.0, abs=1e-5)
    noisy = [clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(1)) * s
             for s in (0.01, 0.3)]
    assert 0 < loss(noisy[0]) < loss(noisy[1])


def test_a_distilling_run_trains_from_its_teacher_and_needs_one(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    teacher = train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest,
                                                                      max_epochs=1)))
    seen = []
    real_loss = train_mod.distillation_loss
    monkeypatch.setattr(train_mod, "distillation_loss",
                        lambda t, b, *a: (seen.append(b["clean_audio"].shape
                                                      == b["audio"].shape), real_loss(t, b, *a))[1])
    cfg = tiny_config(tmp_path, manifest, max_epochs=1, distill_weight=0.5,
                      teacher_checkpoint=str(teacher), run_dir=str(tmp_path / "student"),
                      output=str(tmp_path / "student.pt"))
    assert train_mod.train(train_mod.load_config(None, cfg)).exists()
    assert seen and all(seen)
    with pytest.raises(train_mod.ConfigError, match="teacher_checkpoint or init_checkpoint"):
        train_mod.load_config(None, {"distill_weight": 1.0})
    with pytest.raises(train_mod.ConfigError, match="at least 0"):
        train_mod.load_config(None, {"distill_weight": -1.0})


def test_batch_framing_gives_one_total_silence_per_batch():
    aug = Augmenter(AugmentConfig(noise_dir=None, rir_dir=None, p_speed=0.0, p_pitch=0.0,
                                  p_tight=0.0, pad_seconds=(0.0, 1.2)), seed=4)
    clean = tone(0.5, 440)
    same = {len(aug(clean, batch_seed=7)) for _ in range(6)}
    assert len(same) <= 2  # one total, give or take a sample of rounding
    starts = {int(np.argmax(np.abs(aug(clean, batch_seed=7)) > 0.01)) for _ in range(6)}
    assert len(starts) > 1  # the speech moves within the shared silence
    totals = {len(aug(clean, batch_seed=s)) for s in range(6)}
    assert len(totals) > 3  # other batches, other silence


def test_tagged_sampler_gives_each_batch_one_seed():
    sampler = BucketBatchSampler([float(i % 7) for i in range(40)], batch_size=8, seed=1,
                                 tag_batches=True)
    batches = list(sampler)
    assert all(len({seed for _, seed in b}) == 1 for b in batches)
    assert len({b[0][1] for b in batches}) == len(batches)
    assert sorted(i for b in batches for i, _ in b) == list(range(40))


def test_data_pipeline_benchmark_times_the_workers_own_code(tmp_path):
    from benchmarks.bench_data_pipeline import WARM_UP, worker_ms_per_clip

    manifest = make_corpus(tmp_path / "corpus", n=4 * (WARM_UP + 4))  # 3 of 4 voices train
    tiny_config(tmp_path, manifest, augment={"noise_dir": None, "rir_dir": None,
                                             "p_pitch": 1.0, "p_telephone": 1.0})
    ms, clips = worker_ms_per_clip(str(tmp_path / "config.json"), batches=2)
    assert clips == 2 * 4 and ms > 0
    tiny_config(tmp_path, make_corpus(tmp_path / "small", n=8))
    with pytest.raises(SystemExit, match="too few training clips"):
        worker_ms_per_clip(str(tmp_path / "config.json"), batches=2)


def test_telephone_band_limit_removes_content_above_4khz():
    aug = Augmenter(AugmentConfig(noise_dir=None, rir_dir=None), seed=0)
    def rms(x):  # the middle, away from resampler edge transients
        return float(np.sqrt(np.mean(x[2000:-2000] ** 2)))

    high, low = tone(0.5, 6000), tone(0.5, 1000)
    assert rms(aug.telephone(high)) < 0.01 * rms(high)
    assert rms(aug.telephone(low)) > 0.5 * rms(low)


def test_pitch_shift_moves_a_tone_keeps_the_length_and_matches_librosa():
    librosa = pytest.importorskip("librosa")

    def peak_hz(x):
        spectrum = np.abs(np.fft.rfft(x[4000:-4000] * np.hanning(len(x) - 8000)))
        return np.argmax(spectrum) * 16000 / (len(x) - 8000)

    clip = tone(1.5, 440)
    for semitones in (-3.0, 2.0):
        shifted = pitch_shift(clip, semitones)
        assert shifted.dtype == np.float32 and len(shifted) == len(clip)
        assert abs(peak_hz(shifted) - 440 * 2 ** (semitones / 12)) < 3
        reference = librosa.effects.pitch_shift(clip, sr=16000, n_steps=semitones,
                                                res_type="soxr_lq")
        assert np.abs(shifted - reference).max() < 0.01 * np.abs(reference).max()
    assert len(pitch_shift(clip[:300], 1.0)) == 300  # shorter than one STFT frame


def test_coloured_noise_has_the_asked_length_and_slope():
    rng = np.random.default_rng(0)
    def low_share(x):  # energy below 500 Hz over all of it
        power = np.abs(np.fft.rfft(x)) ** 2
        return power[: len(power) * 500 // 8000].sum() / power.sum()

    white = coloured_noise(24007, rng, (0.0, 0.0))  # a prime length
    brown = coloured_noise(24007, rng, (2.0, 2.0))
    assert len(white) == len(brown) == 24007 and white.dtype == np.float32
    assert 0.04 < low_share(white) < 0.09 and low_share(brown) > 0.9


def test_noise_is_a_stretch_of_the_recording_wrapping_round(tmp_path):
    noise = tmp_path / "noise"
    noise.mkdir()
    ramp = (np.arange(1000) / 1000).astype(np.float32)
    sf.write(noise / "ramp.wav", ramp, 16000, subtype="FLOAT")
    aug = Augmenter(AugmentConfig(noise_dir=str(noise), rir_dir=None), seed=0)
    stretches = 0
    for _ in range(20):
        out = aug._noise(2500)
        assert len(out) == 2500
        if np.isin(out, ramp).all():  # the recording, not made-up noise
            stretches += 1
            steps = np.diff(out)
            # One sample on at a time, jumping back to the start at each wrap.
            assert np.allclose(steps[steps > 0], 0.001, atol=1e-6)
            assert np.sum(steps < 0) in (2, 3)
    assert stretches >= 5


def test_overdrive_clips_the_loudest_share_of_samples():
    rng = np.random.default_rng(0)
    speech = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    out = overdrive(speech, 0.05)
    assert np.abs(out).max() == pytest.approx(1.0)
    at_rails = np.mean(np.abs(out) >= 1.0 - 1e-6)
    assert 0.04 <= at_rails <= 0.06
    # Below the clipping level the waveform keeps its shape.
    quiet = np.abs(out) < 0.99
    scale = np.abs(out[quiet]).max() / np.abs(speech[quiet]).max()
    assert np.allclose(out[quiet], speech[quiet] * scale, atol=1e-5)
    assert np.array_equal(overdrive(np.zeros(100, np.float32), 0.05), np.zeros(100))


# Every other waveform augmentation off and the framing fixed, for the Augmenter tests of
# one augmentation each.
PLAIN = dict(noise_dir=None, rir_dir=None, p_noise=0.0, p_speed=0.0, p_pitch=0.0,
             p_reverb=0.0, p_telephone=0.0, p_tight=1.0, pad_seconds=(0.0, 0.0))


def plain_and_changed(clean: np.ndarray, **setting) -> tuple[np.ndarray, np.ndarray]:
    """The clip through an augmenter that changes nothing, and through one with `setting`
    on; unit gain and the same random draws otherwise."""
    config = dict(PLAIN, gain_db=(0.0, 0.0))
    return (Augmenter(AugmentConfig(**config), seed=1)(clean),
            Augmenter(AugmentConfig(**config, **setting), seed=1)(clean))


def test_augmenter_overdrives_clips_when_asked():
    clean = tone(0.5, 440)

    def flat_share(out):  # samples at the clip's own peak
        return np.mean(np.abs(out) >= np.abs(out).max() * (1 - 1e-4))

    plain = Augmenter(AugmentConfig(**PLAIN), seed=1)(clean)
    driven = Augmenter(AugmentConfig(**PLAIN, p_clip=1.0, clip_fraction=(0.1, 0.2)),
                       seed=1)(clean)
    assert flat_share(plain) < 0.01
    assert 0.08 <= flat_share(driven) <= 0.22
    rebuilt = Augmenter(AugmentConfig(**PLAIN, p_clip=1.0, clip_fraction=(0.1, 0.2),
                                      declip=True), seed=1)(clean)
    assert flat_share(rebuilt) < 0.01  # heard as the runtime hears it: peaks rebuilt
    np.testing.assert_allclose(rebuilt[np.abs(driven) < 0.9 * np.abs(driven).max()],
                               driven[np.abs(driven) < 0.9 * np.abs(driven).max()])


def test_random_eq_follows_its_gain_curve_and_the_augmenter_applies_it():
    from training.augment import EQ_POINTS, random_eq

    t = np.arange(16000) / 16000
    tones = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in (250.0, 1500.0)]
    gains = np.array([0.0, -12.0, 0.0, 6.0, 0.0, 0.0])  # at 100, 250, 600, 1500, ... Hz
    assert EQ_POINTS[1] == 250.0 and EQ_POINTS[3] == 1500.0
    for x, expected_db in zip(tones, (-12.0, 6.0), strict=True):
        y = random_eq(x, gains)
        assert y.dtype == x.dtype and y.shape == x.shape
        rms_db = 10 * np.log10(np.mean(y ** 2) / np.mean(x ** 2))
        assert rms_db == pytest.approx(expected_db, abs=0.1)
    assert np.allclose(random_eq(tones[0], np.zeros(6)), tones[0], atol=1e-5)

    plain, coloured = plain_and_changed(tone(0.5, 440), p_eq=1.0)
    assert plain.shape == coloured.shape
    assert not np.allclose(coloured, plain, atol=1e-2)
    assert np.isfinite(coloured).all() and np.abs(coloured).max() <= 1.0


def test_transients_are_short_bursts_and_the_augmenter_mixes_them_in():
    from training.augment import transients

    x = transients(48000, np.random.default_rng(3))
    assert x.shape == (48000,) and x.dtype == np.float32
    assert np.abs(x).max() == pytest.approx(1.0, abs=1e-3)
    frames = np.sqrt(np.mean(x[:48000 // 160 * 160].reshape(-1, 160) ** 2, axis=1))
    # Impulsive: loud moments and long near-silences between them, unlike steady noise.
    assert np.mean(frames < 0.01 * frames.max()) > 0.3
    assert np.mean(x ** 4) / np.mean(x ** 2) ** 2 > 20  # Gaussian noise: 3
    assert np.array_equal(x, transients(48000, np.random.default_rng(3)))
    assert not np.array_equal(x, transients(48000, np.random.default_rng(4)))
    assert np.isfinite(transients(10, np.random.default_rng(0))).all()

    plain, hit = plain_and_changed(tone(0.5, 440), p_transients=1.0,
                                   transients_snr_db=(0.0, 0.0))
    assert plain.shape == hit.shape and np.isfinite(hit).all()
    residue = hit / np.abs(hit).max() - plain / np.abs(plain).max()
    assert np.sqrt(np.mean(residue ** 2)) > 0.05  # 0 dB: as loud as the tone


def test_augmenter_lays_a_steady_hiss_floor_at_the_asked_snr():
    plain, hissy = plain_and_changed(tone(1.0, 440), p_floor=1.0, floor_snr_db=(20.0, 20.0))
    assert hissy.shape == plain.shape and np.isfinite(hissy).all()
    speech = plain * (hissy @ plain) / (plain @ plain)  # the tone's share of the output
    floor = hissy - speech
    assert 10 * np.log10(np.sum(speech ** 2) / np.sum(floor ** 2)) == pytest.approx(20, abs=1)
    # Steady, and spread up to where /s/ lives, unlike the tone.
    frames = np.sqrt(np.mean(floor[:len(floor) // 400 * 400].reshape(-1, 400) ** 2, axis=1))
    assert np.percentile(frames, 90) < 2 * np.percentile(frames, 10)
    spectrum = np.abs(np.fft.rfft(floor)) ** 2
    high = np.fft.rfftfreq(len(floor), 1 / 16000) > 3000
    assert spectrum[high].sum() / spectrum.sum() > 0.01


def test_codec_round_trip_loses_more_at_lower_bit_rates_and_the_augmenter_applies_it():
    from training.augment import codec_round_trip

    speech, _ = sf.read(ROOT / "samples" / "stop.wav", dtype="float32")

    def snr_db(y):  # how much of the waveform survives
        return 10 * np.log10(np.sum(speech ** 2) / np.sum((speech - y) ** 2))

    near, far = codec_round_trip(speech, 0.5), codec_round_trip(speech, 0.98)
    for y in (near, far):
        assert y.shape == speech.shape and y.dtype == np.float32
        assert 10 * np.log10(np.sum(y ** 2) / np.sum(speech ** 2)) == pytest.approx(0, abs=1)
    assert snr_db(near) > 20 and snr_db(far) < snr_db(near) - 5

    config = dict(PLAIN, gain_db=(0.0, 0.0))  # the same draws otherwise
    plain = Augmenter(AugmentConfig(**config), seed=1)(speech)
    coded = Augmenter(AugmentConfig(**config, p_codec=1.0, codec_level=(0.98, 0.98)),
                      seed=1)(speech)
    assert plain.shape == coded.shape
    assert not np.allclose(coded, plain, atol=1e-2)


def test_trim_silence_and_spec_augment():
    clip = np.concatenate([np.zeros(8000, np.float32), tone(0.3, 500), np.zeros(8000)])
    trimmed = trim_silence(clip)
    assert 4000 <= len(trimmed) <= 5200
    feats = torch.randn(2, 50, 30)
    masked = spec_augment(feats, torch.tensor([50, 20]), max_time=8, max_freq=4)
    assert masked.shape == feats.shape
    changed = masked != feats
    assert changed.any()
    assert (masked[changed] == 0).all()  # masks only zero, never alter other values


def test_mel_band_masks_hide_whole_bands_with_their_own_mean():
    log_mel = torch.randn(3, 40, 20)
    lengths = torch.tensor([40, 25, 10])
    masked = mask_mel_bands(log_mel, lengths, masks=2, max_width=6)
    assert masked.shape == log_mel.shape
    changed_any = False
    for b, n in enumerate(lengths.tolist()):
        assert torch.equal(masked[b, n:], log_mel[b, n:])  # padding untouched
        bands = (masked[b, :n] != log_mel[b, :n]).any(dim=0).nonzero().flatten().tolist()
        assert len(bands) <= 12
        for k in bands:
            changed_any = True
            # a masked band holds one value over the clip's frames: its own mean there
            assert torch.allclose(masked[b, :n, k], log_mel[b, :n, k].mean().expand(n),
                                  atol=1e-5)
    assert changed_any
    assert torch.equal(mask_mel_bands(log_mel, lengths, masks=0), log_mel)


def test_mel_augment_acts_on_the_bands_before_the_dct():
    torch.manual_seed(0)
    model = CTCModel(ModelConfig(proj_dim=8, hidden=8, layers=1)).eval()
    audio = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 5000])
    plain, n = model.features(audio, lengths)
    same, m = model.features(audio, lengths, lambda log_mel, frames: log_mel)
    assert torch.equal(n, m)
    assert torch.allclose(plain, same, atol=1e-5)
    seen = []

    def flatten_low_bands(log_mel, frames):
        seen.append(frames.clone())
        out = log_mel.clone()
        out[..., :10] = 0.0
        return out

    changed, _ = model.features(audio, lengths, flatten_low_bands)
    assert torch.equal(seen[0], n)
    assert not torch.allclose(changed, plain, atol=1e-3)


def test_a_run_with_mel_band_masks_trains_and_bad_settings_are_refused(tmp_path,
                                                                         monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    calls = []
    real_mask = train_mod.mask_mel_bands
    monkeypatch.setattr(train_mod, "mask_mel_bands", lambda *a: (calls.append(a[2:]),
                                                                 real_mask(*a))[1])
    cfg = tiny_config(tmp_path, manifest, max_epochs=1, mel_masks=3, mel_mask_width=5)
    output = train_mod.train(train_mod.load_config(None, cfg))
    assert output.exists()
    assert calls and set(calls) == {(3, 5)}
    with pytest.raises(train_mod.ConfigError, match="mel_masks"):
        train_mod.load_config(None, {"mel_masks": -1})
    with pytest.raises(train_mod.ConfigError, match="mel_mask_width"):
        train_mod.load_config(None, {"mel_mask_width": 0})


def test_validation_counts_a_command_as_the_runtime_scores_it(tmp_path):
    # Every clip's frames spell "on" clearly, then hear "e" weakly (0.35 against a blank's
    # 0.6), as a model in noise hears "one". Plain CTC ranks "on" first; the runtime, with
    # its blank penalty, "one"; validation must count what the runtime would answer.
    from speechrnn.decoding import CommandScorer
    from speechrnn.text import BLANK_INDEX, TOKENS

    index = {t: i for i, t in enumerate(TOKENS)}
    path = [BLANK_INDEX, index["o"], BLANK_INDEX, index["n"], BLANK_INDEX, BLANK_INDEX]
    probs = np.full((len(path), len(TOKENS)), 0.03 / (len(TOKENS) - 1))
    probs[np.arange(len(path)), path] = 0.97
    probs[4] = 0.05 / (len(TOKENS) - 2)
    probs[4, BLANK_INDEX], probs[4, index["e"]] = 0.6, 0.35
    frames = torch.log(torch.tensor(probs, dtype=torch.float32))

    class Fixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, audio, lengths):
            n = audio.shape[0]
            return frames.expand(n, -1, -1), torch.full((n,), len(path))

    sf.write(tmp_path / "one.wav", tone(0.3, 440.0), 16000)
    clips = [train_mod.Utterance(str(tmp_path / "one.wav"), "one", "v", "synth", 0.3)] * 3
    cfg = train_mod.TrainConfig(batch_size=2)
    commands = ["on", "one"]
    raw = CommandScorer(commands, TOKENS, BLANK_INDEX, blank_penalty=0)
    assert commands[int(np.argmax(raw.command_log_likelihoods(frames.numpy())))] == "on"
    result = train_mod.evaluate(Fixed(), {"set": (clips, commands)}, cfg)["set"]
    assert result["command_acc"] == 1.0 and result["clips"] == 3


def test_validation_hears_clipped_recordings_as_the_runtime_does(tmp_path):
    # The runtime rebuilds clipped peaks before the model (ModelSession), so validation
    # must too, or it scores audio users never send; training keeps the recordings.
    from speechrnn.audio import declip
    from tests.signals import voiced

    clipped = np.clip(voiced(0.4, amp=1.0), -0.6, 0.6)
    sf.write(tmp_path / "clipped.wav", clipped, 16000, subtype="FLOAT")
    clips = [train_mod.Utterance(str(tmp_path / "clipped.wav"), "on", "v", "real", 0.4)]
    heard = []

    class Recording(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, audio, lengths):
            heard.append(audio[0, : int(lengths[0])].numpy().copy())
            frames = torch.zeros(audio.shape[0], 4, len(train_mod.TOKENS))
            return torch.log_softmax(frames, -1), torch.full((audio.shape[0],), 4)

    cfg = train_mod.TrainConfig(batch_size=1)
    train_mod.evaluate(Recording(), {"set": (clips, ["on"])}, cfg)
    rebuilt = declip(clipped)
    assert np.abs(rebuilt).max() > 0.65  # the peaks rise above the clip level again
    np.testing.assert_array_equal(heard[0], rebuilt)
    training_batch = next(iter(train_mod.make_loader(clips, cfg, None, 0, train=True)))
    np.testing.assert_array_equal(training_batch["audio"][0].numpy(), clipped)


def test_the_data_worker_makes_the_features_the_model_would(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    cfg = train_mod.load_config(None, tiny_config(tmp_path, manifest))
    model = CTCModel(train_mod.build_model_config(cfg))
    clips = train_mod.build_corpus(cfg.data, cfg.seed).train[:6]
    plain = next(iter(train_mod.make_loader(clips, cfg, None, 0, train=True)))
    batch = next(iter(train_mod.make_loader(clips, cfg, None, 0, train=True,
                                            collate_fn=train_mod.CollateWithFeatures(
                                                model.config.features))))
    feats, lengths = model.features(plain["audio"], plain["audio_lengths"])
    torch.testing.assert_close(batch["feats"], feats, rtol=0, atol=0)
    assert torch.equal(batch["feat_lengths"], lengths)
    assert "audio" not in batch  # the features replace it; nothing reads it after
    assert torch.equal(batch["targets"], plain["targets"])

    # With a data worker, training steps read the worker's features; without, the model's.
    real_features = CTCModel.features
    in_training = []

    def spy(self, *args, **kwargs):
        in_training.append(self.training)
        return real_features(self, *args, **kwargs)

    monkeypatch.setattr(CTCModel, "features", spy)
    for workers in (1, 0):
        in_training.clear()
        run = tmp_path / f"run{workers}"
        train_mod.train(train_mod.load_config(None, tiny_config(
            tmp_path, manifest, max_epochs=1, workers=workers, run_dir=str(run),
            output=str(run / "model.pt"))))
        assert (run / "model.pt").is_file()
        assert any(in_training) == (workers == 0)
        assert not all(in_training)  # validation computes its own


def test_reverse_padded_reverses_each_row_within_its_length_and_back():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3).requires_grad_()
    lengths = torch.tensor([4, 2])
    out = reverse_padded(x, lengths)
    assert torch.equal(out[0], x[0].flip(0))
    assert torch.equal(out[1, :2], x[1, :2].flip(0)) and torch.equal(out[1, 2:], x[1, 2:])
    assert torch.equal(reverse_padded(out, lengths), x)
    weights = torch.rand_like(x)
    (out * weights).sum().backward()  # each input frame gets its own output's gradient
    assert torch.equal(x.grad, reverse_padded(weights, lengths))


def test_byte_dropout_drops_its_share_keeps_the_mean_and_is_off_in_eval():
    from training.model import ByteDropout

    drop = ByteDropout(0.15)
    x = torch.ones(64, 100, 160, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(1 - 38 / 256, abs=0.005)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # dropped elements pass no gradient
    assert not torch.equal(kept, drop(x) != 0)  # a new mask each call
    rows = kept.float().mean(dim=(1, 2))
    assert rows.min() > 0.8 and rows.max() < 0.9  # no stretch of the mask is biased
    drop.eval()
    assert drop(x) is x
    assert ByteDropout(0.0).train()(x) is x


def test_bucket_sampler_covers_everything_once():
    sampler = BucketBatchSampler([float(i % 7) for i in range(103)], batch_size=8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(103))


@pytest.mark.parametrize("content, message", [
    ("", "not valid JSON"), ("{}", "empty"), ("{bad", "not valid JSON"),
    ('{"nonsense": 1}', "unknown settings"),
])
def test_bad_config_ends_in_one_sentence(tmp_path, capsys, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    assert train_mod.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_config(tmp_path, capsys):
    assert train_mod.main(["--config", str(tmp_path / "none.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_checkpoint_roundtrip_and_truncation(tmp_path):
    model = CTCModel(ModelConfig(proj_dim=8, hidden=8, layers=1))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model)
    again = load_model(path)
    audio = torch.randn(1, 8000) * 0.1
    lengths = torch.tensor([8000])
    assert torch.allclose(model.eval()(audio, lengths)[0], again(audio, lengths)[0])
    assert not (tmp_path / "m.pt.tmp").exists()
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="m.pt"):
        load_model(path)


def test_training_runs_resumes_and_skips_nan(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    cfg = train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=1))
    out = train_mod.train(cfg)
    assert out.is_file()
    load_model(out)
    history = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
               if x]
    assert len(history) == 1
    val = history[0]["val"]["synth_heldout_voices"]
    assert set(val) >= {"loss", "cer", "command_acc"}

    # A non-finite loss is skipped and counted, and training resumes at epoch 2.
    real_encode = CTCModel.encode
    calls = {"n": 0}

    def poisoned(self, feats, lengths):
        lp, fl = real_encode(self, feats, lengths)
        calls["n"] += 1
        return (lp * float("nan"), fl) if calls["n"] == 1 else (lp, fl)

    monkeypatch.setattr(CTCModel, "encode", poisoned)
    cfg2 = train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=2))
    train_mod.train(cfg2)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["train_state"]
    assert state["epoch"] == 2
    assert state["skipped_nan"] == 1


def test_sigkill_mid_training_then_resume(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", n=48)
    tiny_config(tmp_path, manifest, max_epochs=40)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "training.train", "--config", str(tmp_path / "config.json")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "run" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint written before the kill"
    time.sleep(0.5)  # now well inside a later epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=False)["train_state"]
    done = state["epoch"]
    assert done >= 1
    # Resume with a smaller epoch limit so the test ends quickly.
    subprocess.run(cmd + ["--set", f"max_epochs={done + 1}"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=180)
    state = torch.load(last, weights_only=False)["train_state"]
    assert state["epoch"] == done + 1
    assert [h["epoch"] for h in state["history"]] == list(range(1, done + 2))
    load_model(tmp_path / "model.pt")


def test_fine_tuning_starts_from_init_checkpoint(tmp_path):
    manifest = make_corpus(tmp_path / "corpus")
    first = train_mod.train(train_mod.load_config(None, tiny_config(tmp_path, manifest,
                                                                    max_epochs=1)))
    # With a zero learning rate the weights stay exactly those of the checkpoint.
    cfg = tiny_config(tmp_path, manifest, max_epochs=1, lr=0.0, init_checkpoint=str(first),
                      run_dir=str(tmp_path / "ft"), output=str(tmp_path / "ft.pt"))
    tuned = train_mod.train(train_mod.load_config(None, cfg))
    a = torch.load(first, weights_only=False)
    b = torch.load(tuned, weights_only=False)
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])
    # The tuned checkpoint remembers where it started, for its whole training time.
    assert b["train_state"]["init_checkpoint"] == str(first)
    assert b["train_state"]["init_elapsed"] == a["train_state"]["elapsed"] > 0
    # ... and the CPU count that time was spent on.
    assert a["train_state"]["cpu_cores"] == b["train_state"]["cpu_cores"] == [os.cpu_count()]


def test_keep_last_writes_the_last_epoch_not_the_best(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    scores = iter([1.0, 0.0])  # epoch 1 is the best by validation
    monkeypatch.setattr(train_mod, "validation_score", lambda results: next(scores))
    cfg = tiny_config(tmp_path, manifest, max_epochs=2, keep="last", patience=5)
    output = train_mod.train(train_mod.load_config(None, cfg))
    kept = torch.load(output, weights_only=False)
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert best["train_state"]["epoch"] == 1 and kept["train_state"]["epoch"] == 2
    assert all(torch.equal(kept["model_state"][k], last["model_state"][k])
               for k in last["model_state"])
    assert "optimizer" not in kept  # a model checkpoint, not a resumable run
    with pytest.raises(train_mod.ConfigError, match="keep"):
        train_mod.load_config(None, {"keep": "newest"})


def test_weight_average_follows_its_formula_and_lends_its_weights():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = WeightAverage(model, decay=0.5)
    for value in (3.0, 5.0):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update(model)
    # 1 -> 0.5 * 1 + 0.5 * 3 = 2 -> 0.5 * 2 + 0.5 * 5 = 3.5
    assert torch.allclose(ema.state["weight"], torch.full((1, 2), 3.5))
    with ema.applied(model):
        assert torch.allclose(model.weight, torch.full((1, 2), 3.5))
    assert torch.allclose(model.weight, torch.full((1, 2), 5.0))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)


def test_a_run_with_a_weight_average_ships_and_validates_the_average(tmp_path, monkeypatch):
    manifest = make_corpus(tmp_path / "corpus")
    seen = []
    real_evaluate = train_mod.evaluate
    monkeypatch.setattr(train_mod, "evaluate", lambda model, sets, cfg: (
        seen.append({k: v.clone() for k, v in model.state_dict().items()}),
        real_evaluate(model, sets, cfg))[1])
    cfg = tiny_config(tmp_path, manifest, max_epochs=2, keep="last", ema_decay=0.9)
    output = train_mod.train(train_mod.load_config(None, cfg))
    kept = torch.load(output, weights_only=False)["model_state"]
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    average, own = last["ema_state"], last["model_state"]
    assert any(not torch.equal(average[k], own[k]) for k in own)  # it is an average
    assert all(torch.equal(kept[k], average[k]) for k in own)
    assert all(torch.equal(seen[-1][k], average[k]) for k in own)
    with pytest.raises(train_mod.ConfigError, match="ema_decay"):
        train_mod.load_config(None, {"ema_decay": 1.0})


def test_precision_setting():
    cpu = torch.device("cpu")
    assert not train_mod.use_bf16("fp32", cpu)
    assert train_mod.use_bf16("bf16", cpu)
    assert train_mod.use_bf16("auto", cpu) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert not train_mod.use_bf16("bf16", torch.device("meta"))  # autocast is CPU-only here
    with pytest.raises(train_mod.ConfigError, match="precision must be"):
        train_mod.load_config(None, {"precision": "fp16"})


def test_device_names_are_checked_in_one_sentence():
    assert train_mod.resolve_device("cpu").type == "cpu"
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert train_mod.resolve_device("auto").type == want
    with pytest.raises(train_mod.ConfigError, match="not a torch device"):
        train_mod.resolve_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(train_mod.ConfigError, match="torch sees no GPU"):
            train_mod.resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU that torch sees")
def test_training_on_the_gpu_gives_a_checkpoint_for_the_cpu(tmp_path):
    manifest = make_corpus(tmp_path / "corpus", n=48)
    cfg = train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=3,
                                                  device="cuda"))
    out = train_mod.train(cfg)
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    assert ckpt["train_state"]["gpus"] == [torch.cuda.get_device_name()]
    history = [json.loads(x) for x in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if x]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    model = load_model(out)  # on the CPU
    audio = torch.from_numpy(tone(0.4, 440.0))[None]
    lp, _ = model(audio, torch.tensor([audio.shape[1]]))
    assert torch.isfinite(lp).all()
    # Resuming on the GPU goes on from the last epoch.
    cfg = train_mod.load_config(None, tiny_config(tmp_path, manifest, max_epochs=4,
                                                  device="cuda"))
    train_mod.train(cfg)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=False)["train_state"][
        "epoch"] == 4


def test_restacking_resamples_the_stacking_taps():
    from training.restack import resample_taps
    weight = torch.randn(6, 4, 3)
    assert torch.allclose(resample_taps(weight, 3), weight)  # same width: unchanged
    for width in (1, 2, 5):
        assert resample_taps(weight, width).shape == (6, 4, width)
    # One tap: the mean of the old ones times their count, so a steady frame projects the same.
    assert torch.allclose(resample_taps(weight, 1)[:, :, 0], weight.sum(dim=2), atol=1e-6)
    # The end taps stay where they were (scaled), the middle ones lie between them.
    new = resample_taps(weight, 5)
    assert torch.allclose(new[:, :, 0], weight[:, :, 0] * 3 / 5)
    assert torch.allclose(new[:, :, 4], weight[:, :, 2] * 3 / 5)
    assert torch.allclose(new[:, :, 1], (weight[:, :, 0] + weight[:, :, 1]) / 2 * 3 / 5)


def test_restacked_checkpoint_runs_with_fewer_frames_and_keeps_its_history(tmp_path):
    from training import restack
    model = CTCModel(ModelConfig(stack=3, proj_dim=8, hidden=8, layers=1)).eval()
    source = tmp_path / "source.pt"
    save_checkpoint(source, model, train_state={"elapsed": 600.0, "init_elapsed": 60.0,
                                                "cpu_cores": [2]})
    out = tmp_path / "stack5.pt"
    assert restack.main([str(source), "--stack", "5", "-o", str(out)]) == 0
    new = load_model(out)
    assert new.config.stack == 5
    state = torch.load(out, weights_only=False)
    for name, value in model.state_dict().items():
        if name != "stack.weight":
            assert torch.equal(state["model_state"][name], value)
    audio = torch.from_numpy(tone(1.0, 440.0))[None]
    lengths = torch.tensor([audio.shape[1]])
    with torch.no_grad():
        _, old_frames = model(audio, lengths)
        log_probs, new_frames = new(audio, lengths)
    # 101 feature frames: 34 model frames at stack 3, 21 at stack 5.
    assert int(new_frames) == 21 and int(old_frames) == 34 and torch.isfinite(log_probs).all()
    # Fine-tuning from it counts the source's training time, not a stage of its own.
    assert state["train_state"]["elapsed"] == 0.0
    assert state["train_state"]["init_elapsed"] == 660.0
    assert state["train_state"]["init_checkpoint"] == str(source)
    assert restack.main([str(tmp_path / "missing.pt"), "--stack", "4", "-o", str(out)]) == 1


def test_widened_checkpoint_computes_what_it_did_until_its_new_units_train(tmp_path):
    from training import widen
    torch.manual_seed(0)
    model = CTCModel(ModelConfig(stack=3, proj_dim=8, hidden=6, layers=2)).eval()
    source = tmp_path / "source.pt"
    save_checkpoint(source, model, train_state={"elapsed": 600.0, "cpu_cores": [2]})
    out = tmp_path / "wide.pt"
    assert widen.main([str(source), "--hidden", "10", "-o", str(out)]) == 0
    new = load_model(out)
    assert new.config.hidden == 10 and new.num_parameters() > model.num_parameters()
    audio = torch.from_numpy(tone(1.0, 440.0))[None] + 0.05 * torch.randn(1, 16000)
    lengths = torch.tensor([audio.shape[1]])
    with torch.no_grad():
        old_lp, _ = model(audio, lengths)
        new_lp, _ = new(audio, lengths)
    assert torch.allclose(old_lp, new_lp, atol=1e-6)
    # The new units are live: the loss reaches the weights that carry them to the output.
    new.train()
    new.dropout.p = 0.0
    log_probs, frames = new(audio, lengths)
    loss = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.tensor([[2, 3]]),
                                        frames, torch.tensor([2]))
    loss.backward()
    assert new.output.weight.grad[:, 6:10].abs().sum() > 0  # forward direction's new units
    assert new.output.weight.grad[:, 16:20].abs().sum() > 0  # backward direction's
    assert torch.load(out, weights_only=False)["train_state"]["init_elapsed"] == 600.0
    assert widen.main([str(source), "--hidden", "4", "-o", str(out)]) == 1  # narrower
    assert widen.main([str(tmp_path / "missing.pt"), "--hidden", "12", "-o", str(out)]) == 1


def enrollment_folder(root: Path) -> Path:
    """Recordings laid out as `training.enroll` reads them: a folder a command."""
    for folder, freq in (("lights_on", 440.0), ("stop", 880.0), ("_no_command", 0.0)):
        (root / folder).mkdir(parents=True)
        for i in range(2):
            sf.write(root / folder / f"{i}.wav", tone(0.4, freq), 16000)
    (root / "stop" / "notes.txt").write_text("not audio")
    return root


def test_enrollment_recordings_from_a_folder_or_a_manifest(tmp_path):
    utts = enroll.read_recordings(enrollment_folder(tmp_path / "mine"))
    assert sorted(u.text for u in utts) == ["", "", "lights on", "lights on", "stop", "stop"]
    assert {(u.speaker, u.source) for u in utts} == {("you", "enrollment")}
    assert all(Path(u.path).is_absolute() and Path(u.path).is_file() for u in utts)
    assert enroll.commands_of(utts) == ["lights on", "stop"]
    from_manifest = enroll.read_recordings(make_corpus(tmp_path / "c", n=4))
    assert [u.text for u in from_manifest] == ["yes", "no", "yes", "no"]
    assert {u.speaker for u in from_manifest} == {"you"}
    with pytest.raises(train_mod.ConfigError, match="nowhere do not exist"):
        enroll.read_recordings(tmp_path / "nowhere")
    (tmp_path / "quiet" / "_no_command").mkdir(parents=True)
    with pytest.raises(train_mod.ConfigError, match="no recording of a command"):
        enroll.read_recordings(tmp_path / "quiet")


def test_enrollment_config_continues_the_model_with_the_recordings_repeated(tmp_path):
    base = train_mod.load_config(ROOT / "training/configs/finetune_again.json")
    cfg = enroll.enrollment_config(base, tmp_path / "r.jsonl", 150, tmp_path, 7.5, "a.pt")
    assert cfg.data.real == [*base.data.real, {"manifest": str(tmp_path / "r.jsonl"),
                                               "repeat": 14}]  # 150 x 14 >= 2,000
    assert (cfg.init_checkpoint, cfg.max_minutes) == ("a.pt", 7.5)
    assert Path(cfg.output).parent == tmp_path and Path(cfg.run_dir).parent == tmp_path
    assert replace(cfg, data=base.data, run_dir=base.run_dir, output=base.output,
                   init_checkpoint=base.init_checkpoint, max_minutes=base.max_minutes) == base


def test_enroll_trains_on_the_recordings_and_exports_models_with_their_commands(
        tmp_path, monkeypatch, capsys):
    from export.onnx_export import read_metadata

    corpus = make_corpus(tmp_path / "corpus")
    tiny_config(tmp_path, corpus, max_epochs=1)  # tmp_path/config.json
    config = tmp_path / "config.json"
    base = train_mod.train(train_mod.load_config(config))
    monkeypatch.setattr(enroll, "CLIPS_PER_EPOCH", 12)  # 6 recordings twice an epoch
    out = tmp_path / "enrolled"
    assert enroll.main([str(enrollment_folder(tmp_path / "mine")), "--out", str(out),
                        "--checkpoint", str(base), "--config", str(config),
                        "--no-verifier"]) == 0
    assert "only 2 recording(s) of 'stop'" in capsys.readouterr().err
    log = (out / "run" / "train.log").read_text()
    assert "recordings.jsonl: 6 train clips (x2)" in log
    assert f"starting from the weights of {base}" in log
    for model in ("speechrnn.onnx", "speechrnn.int8.onnx"):
        assert json.loads(read_metadata(out / model)["default_commands"]) == [
            "lights on", "stop"]
    assert enroll.main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "error: recordings" in capsys.readouterr().err


def test_enrollment_benchmark_tests_on_clips_it_never_enrolls():
    from benchmarks.bench_enroll import split_clips, transform_for
    from training.datasets import Utterance

    clips = [Utterance(f"{w}{i}.wav", w, "s", "ros") for w in ("one", "two", "stop")
             for i in range(30)]
    enrol, test, words = split_clips(clips, per_command=4)
    assert words == ["one", "stop", "two"]
    assert len(test) == 45 and not {u.path for u in enrol} & {u.path for u in test}
    assert sorted(u.text for u in enrol) == ["one"] * 4 + ["stop"] * 4 + ["two"] * 4
    assert split_clips(clips, per_command=4) == (enrol, test, words)  # seeded
    noise = [np.ones(8000, np.float32)]
    first, again = transform_for("10 dB", noise), transform_for("10 dB", noise)
    clip = tone(0.3, 300)
    assert np.array_equal(first(clip), again(clip))  # every model hears the same noise
    assert transform_for("clean", noise) is None


def test_enrollment_benchmark_runtime_shares_across_thresholds(tiny_model_path):
    from benchmarks.bench_enroll import THRESHOLDS, through_runtime

    clips = [(tone(0.4 + 0.1 * i, 200 + 50 * i), w) for i, w in enumerate(["one", "two"] * 3)]
    shares = through_runtime(str(tiny_model_path), clips, ["one", "two"])
    assert list(shares) == list(THRESHOLDS)
    for right, wrong, rejected in shares.values():
        assert right + wrong + rejected == pytest.approx(100)
    rows = [shares[t] for t in THRESHOLDS]
    assert all(a[2] <= b[2] for a, b in zip(rows, rows[1:]))  # more rejected higher up


def test_enrollment_benchmark_false_accepts_an_hour(tiny_model_path, monkeypatch):
    from benchmarks import bench_enroll
    from benchmarks.scoring import StreamSegment

    heard = [StreamSegment(0, 1, "one", c) for c in (0.3, 0.6, 0.8, 0.95, 0.1)]

    def segments(recognizer, blocks):  # the decoder's verdicts on a minute of audio
        assert sum(len(b) for b in blocks) == 60 * 16000
        return heard

    monkeypatch.setattr(bench_enroll, "long_form_segments", segments)
    alarms = bench_enroll.false_accepts(str(tiny_model_path), ["one", "two"], {}, 1.0)
    assert alarms == {0.25: 240, 0.5: 180, 0.75: 120, 0.9: 60}
