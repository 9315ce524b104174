"""Synthetic corpus: deterministic plan, real rendering, resume, missing engines."""

from __future__ import annotations

import json
import shutil

import pytest

sf = pytest.importorskip("soundfile")
pytest.importorskip("tqdm")

from training import synth  # noqa: E402

VOICES = {"espeak-ng": ["en-us", "en-gb+f3"], "flite": ["slt"], "festival": ["kal_diphone"]}


def test_plan_is_deterministic_by_seed_and_covers_the_vocabulary():
    sources = synth.text_sources(synth.VOCAB_DIR)
    a = synth.plan_jobs(400, VOICES, sources, seed=7)
    b = synth.plan_jobs(400, VOICES, sources, seed=7)
    c = synth.plan_jobs(400, VOICES, sources, seed=8)
    assert a == b and a != c
    assert len(a) == 400 and len({j.path for j in a}) == 400
    assert {j.engine for j in a} == set(VOICES)
    labels = {j.label for j in a}
    assert labels & set(sources["speech_commands"])  # command words
    assert any(" " in lab for lab in labels)  # phrases teach word boundaries
    for job in a:
        assert 0.75 <= job.rate <= 1.35 and -4 <= job.pitch <= 4
        assert job.label == synth.normalize_text(job.label)


def test_vocabulary_has_the_35_speech_commands_words_and_thousands_of_words():
    sources = synth.text_sources(synth.VOCAB_DIR)
    assert len(sources["speech_commands"]) == 35
    assert {"zero", "nine", "marvin", "sheila", "visual"} <= set(sources["speech_commands"])
    assert "turn on the light" in sources["device_commands"]
    assert len(sources["words"]) >= 2500


def test_missing_engine_is_skipped_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    assert synth.available_voices(["flite"]) == {}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "flite is not installed" in err


@pytest.mark.skipif(not shutil.which("espeak-ng") or not shutil.which("sox"),
                    reason="espeak-ng and sox are needed to render speech")
def test_render_writes_16k_wavs_and_manifest_then_resumes(tmp_path, capsys):
    out = tmp_path / "corpus"
    n = synth.synthesize(out, clips=6, seed=3, engines=["espeak-ng"], jobs_n=2)
    assert n == 6
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert set(row) >= {"path", "text", "voice"}
        info = sf.info(out / row["path"])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.1
        assert row["voice"].startswith("espeak-ng:")
    first = (out / rows[0]["path"]).stat().st_mtime_ns
    # A second run renders nothing again and keeps the same manifest.
    (out / rows[1]["path"]).unlink()
    capsys.readouterr()
    assert synth.synthesize(out, clips=6, seed=3, engines=["espeak-ng"], jobs_n=1) == 6
    assert "5 of 6 clips already rendered" in capsys.readouterr().err
    assert (out / rows[0]["path"]).stat().st_mtime_ns == first
    assert [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()] == rows


@pytest.mark.parametrize("engine", ["flite", "festival"])
def test_every_engine_renders(tmp_path, engine):
    if not shutil.which(engine) or not shutil.which("sox"):
        pytest.skip(f"{engine} and sox are needed")
    out = tmp_path / engine
    assert synth.synthesize(out, clips=2, seed=1, engines=[engine], jobs_n=1) == 2
    for row in map(json.loads, (out / "manifest.jsonl").read_text().splitlines()):
        info = sf.info(out / row["path"])
        assert info.samplerate == 16000 and info.duration > 0.1


def test_word_list_corpus_speaks_its_words_alone_and_in_pairs(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# sound-alikes\nbad\nbread\ngoes\n")
    jobs = synth.plan_jobs(600, VOICES, synth.word_sources(words), seed=1, mix=synth.WORDS_MIX)
    assert synth.plan_jobs(600, VOICES, synth.word_sources(words), 1, synth.WORDS_MIX) == jobs
    pairs = [j for j in jobs if " " in j.label]
    assert {j.label for j in jobs if " " not in j.label} == {"bad", "bread", "goes"}
    assert all(set(j.label.split()) <= {"bad", "bread", "goes"} for j in pairs)
    assert 0.08 < len(pairs) / len(jobs) < 0.22  # WORDS_MIX: 15 % pairs
    words.write_text("# nothing\n")
    with pytest.raises(SystemExit, match="lists no words"):
        synth.word_sources(words)
