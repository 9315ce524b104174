"""The benchmark suite's own logic: threshold sweeps, stored verdicts, manifests, the
README table, generated conditions, the peer's grammar."""

from __future__ import annotations

import json
import pathlib
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from benchmarks import conditions as cond
from benchmarks import summary, testsets
from benchmarks.bench_false_alarms import Hour, command_free_audio, matched_threshold
from benchmarks.common import cpu_name
from benchmarks.peer import grammar
from benchmarks.scoring import (
    REJECTED,
    Verdict,
    confusion,
    false_accepts_per_hour,
    false_reject_rate,
    long_form_segments,
    recommended_threshold,
    speechrnn_verdict,
    sweep,
)
from tests.signals import SR, silence, white, word

# -- threshold sweep on toy scores ------------------------------------------------------


def test_verdict_text_falls_back_to_regions_like_transcribe():
    v = Verdict("stop", 0.4, regions=[("go", 0.7), ("up", 0.2)])
    assert v.text(0.3) == "stop"  # the whole clip is accepted
    assert v.text(0.5) == "go"  # rejected whole: the regions one by one
    assert v.text(0.1) == "stop"
    assert v.text(0.8) == ""
    assert Verdict("stop", 0.4).text(0.5) == ""  # a single region has no fallback


def test_false_rejects_count_misses_and_wrong_commands():
    expected = ["stop", "go", "yes", "", "no"]
    verdicts = [Verdict("stop", 0.9), Verdict("no", 0.8), Verdict("yes", 0.3),
                Verdict("stop", 0.99), Verdict("no", 0.6)]
    # At 0.5: stop right, go heard as no (wrong), yes rejected, no right; the
    # command-free clip does not count.
    assert false_reject_rate(expected, verdicts, 0.5) == pytest.approx(2 / 4)
    assert false_reject_rate(expected, verdicts, 0.0) == pytest.approx(1 / 4)
    assert false_reject_rate(expected, verdicts, 0.95) == pytest.approx(1.0)
    assert np.isnan(false_reject_rate([""], [Verdict()], 0.5))


def test_false_accepts_per_hour_and_the_recommended_threshold():
    confidences = [0.95, 0.7, 0.6, 0.3, 0.1]
    assert false_accepts_per_hour(confidences, 0.5, 0.5) == pytest.approx(6.0)
    assert false_accepts_per_hour(confidences, 2.0, 0.0) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        false_accepts_per_hour(confidences, 0.0, 0.5)
    expected = ["a", "a", "a", "a"]
    verdicts = [Verdict("a", c) for c in (0.99, 0.9, 0.8, 0.4)]
    curve = sweep(expected, verdicts, confidences, 2.0, thresholds=[0.0, 0.5, 0.65, 0.75, 0.96])
    assert [p["fa_per_hour"] for p in curve] == [2.5, 1.5, 1.0, 0.5, 0.0]
    assert [p["fr"] for p in curve] == [0.0, 0.25, 0.25, 0.25, 0.75]
    # Under 1 false accept an hour first at 0.75, where a quarter are missed.
    assert recommended_threshold(curve, 1.0)["threshold"] == 0.75
    assert recommended_threshold(curve, 0.0) is None


def test_confusion_counts_outputs_per_command():
    table = confusion(["stop", "stop", "go", ""], ["stop", "", "no", "yes"])
    assert table == {"stop": {"stop": 1, REJECTED: 1}, "go": {"no": 1}}


def test_peer_threshold_matches_speechrnn_rejection():
    no_cmd = [("", Verdict("a", c), Verdict("a", p))
              for c, p in [(0.2, 0.5), (0.3, 0.9), (0.99, 0.95)]]
    # speechrnn rejects 2 of 3 at its default; the peer needs a threshold above 0.9 for that.
    assert matched_threshold({"s": no_cmd}) == pytest.approx(0.91)


# -- stored verdicts are what the recognizer outputs -----------------------------------


@pytest.fixture(scope="module")
def recognizer():
    from speechrnn import Recognizer

    return Recognizer(threshold=0.0)


def test_stored_verdict_gives_what_transcribe_gives_at_each_threshold(recognizer):
    from speechrnn import Recognizer

    clips = [np.concatenate([silence(0.3), word(0.5, f0=f, seed=i), silence(0.4),
                             word(0.4, f0=f * 1.3, seed=i + 9), silence(0.3)])
             for i, f in enumerate((110.0, 160.0, 220.0))]
    clips += [np.concatenate([silence(0.2), word(0.6, seed=4), silence(0.3)]), silence(1.0),
              white(1.0, -30)]
    for t in (0.0, 0.3, 0.5, 0.8):
        batch = Recognizer(recognizer.session, threshold=t)
        for audio in clips:
            assert speechrnn_verdict(recognizer, audio).text(t) == batch.transcribe(audio).text


def test_verdict_times_the_regions_only_where_the_runtime_decodes_them(recognizer,
                                                                       monkeypatch):
    # Two words: the regions are decoded one by one for every threshold's sake, but the
    # runtime decodes them only when the whole piece is rejected, so only then do they
    # count in `compute`. A clock that ticks once a reading counts the timed stretches.
    from benchmarks import scoring

    ticks = iter(range(1000))
    monkeypatch.setattr(scoring.time, "perf_counter", lambda: float(next(ticks)))
    audio = np.concatenate([silence(0.3), word(0.5, f0=110.0, seed=0), silence(0.4),
                            word(0.4, f0=143.0, seed=9), silence(0.3)])
    below = speechrnn_verdict(recognizer, audio, threshold=0.0)  # the piece is accepted
    above = speechrnn_verdict(recognizer, audio, threshold=1.0 + 1e-9)  # it is rejected
    assert len(below.regions) == len(above.regions) == 2
    assert (below.best, below.regions) == (above.best, above.regions)
    assert below.compute == 1.0 and above.compute == 2.0


def test_long_form_segments_give_the_audio_of_each_decided_segment(recognizer):
    audio = np.concatenate([silence(1.0), word(0.5, seed=1), silence(1.5), word(0.6, seed=2),
                            silence(1.5)])
    audio = audio + white(len(audio) / SR, -65)[:len(audio)]
    pieces = []
    segments = long_form_segments(recognizer, [audio[i:i + 1600]
                                               for i in range(0, len(audio), 1600)],
                                  on_piece=pieces.append)
    assert len(pieces) == len(segments)
    for s, p in zip(segments, pieces, strict=True):
        assert 0 <= s.start < s.end <= len(audio) / SR
        assert len(p) >= int((s.end - s.start) * SR)
    assert long_form_segments(recognizer, [silence(3.0)]) == []


# -- test sets --------------------------------------------------------------------------


def test_manifest_argument():
    assert testsets.parse_manifest_arg("mine=clips/m.jsonl") == ("mine",
                                                                 testsets.Path("clips/m.jsonl"))
    for bad in ("mine", "=m.jsonl", "mine=", "my set=m.jsonl"):
        with pytest.raises(testsets.ManifestError, match="--manifest"):
            testsets.parse_manifest_arg(bad)


def test_manifest_set_reads_relative_paths_and_its_own_commands(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("1.wav", "2.wav", "3.wav"):
        sf.write(tmp_path / "a" / name, np.zeros(1600, np.float32), SR)
    rows = [{"path": "a/1.wav", "text": "Lights ON"}, {"path": "a/2.wav", "text": "stop"},
            {"path": str(tmp_path / "a" / "3.wav"), "text": ""}]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    s = testsets.manifest_set("mine", manifest)
    assert s.commands == ["lights on", "stop"]
    assert [(c.kind, c.expected) for c in s.clips] == [("command", "lights on"),
                                                      ("command", "stop"), ("no word", "")]
    assert s.clips[0].audio().shape == (1600,)
    other = testsets.manifest_set("mine", manifest, ["stop", "go"])
    assert [c.kind for c in other.clips] == ["other word", "command", "no word"]


@pytest.mark.parametrize("content, message", [
    ('{"path": "missing.wav", "text": "x"}', "does not exist"),
    ('not json', "line 1 is not a JSON object"),
    ('{"text": "x"}', "line 1 is not a JSON object"),
    ("", "has no clips"),
])
def test_manifest_errors_are_sentences(tmp_path, content, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(content)
    with pytest.raises(testsets.ManifestError, match=message):
        testsets.manifest_set("x", manifest)
    with pytest.raises(testsets.ManifestError, match="does not exist"):
        testsets.manifest_set("x", tmp_path / "nope.jsonl")


def test_says_a_command_matches_whole_words():
    commands = ["down", "on", "turn off"]
    assert testsets.says_a_command("scroll down", commands)
    assert testsets.says_a_command("please turn off now", commands)
    assert not testsets.says_a_command("downtown", commands)
    assert not testsets.says_a_command("turn", commands)
    assert not testsets.says_a_command("", commands)


# -- README table -------------------------------------------------------------------------


def test_readme_table_is_rewritten_between_markers_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{summary.START}\nold table\n{summary.END}\nafter\n")
    body = summary.table([summary.Row("accuracy", "90 %", "95 %", "accuracy.md")],
                         "Measured today.")
    summary.update_readme(readme, body)
    summary.update_readme(readme, body)  # twice: the same file
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n" + summary.START + "\nMeasured today.")
    assert text.endswith(summary.END + "\nafter\n")
    assert "old table" not in text
    assert "| accuracy | 90 % | 95 % | [`accuracy.md`](benchmarks/results/accuracy.md) |" in text
    readme.write_text("no markers\n")
    with pytest.raises(summary.ReadmeError, match="benchmarks:start"):
        summary.update_readme(readme, body)


def test_the_repository_readme_has_the_markers():
    text = (testsets.ROOT / "README.md").read_text()
    assert text.count(summary.START) == 1 and text.count(summary.END) == 1
    assert text.index(summary.START) < text.index(summary.END)


def test_stream_latency_is_read_from_the_stream_results(tmp_path):
    md = tmp_path / "stream.md"
    md.write_text("| events | count | p50 | p95 | max |\n|---|---|---|---|---|\n"
                  "| `command`, right | 81 | 158 ms | 405 ms | 655 ms |\n")
    assert summary.stream_latency(md) == ("158 ms", "405 ms")
    assert summary.stream_latency(tmp_path / "none.md") is None


# -- conditions -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", cond.NOISE_KINDS)
def test_noises_are_deterministic_and_unit_power(kind):
    voices = [word(0.5, seed=i) for i in range(3)]
    a = cond.make_noise(kind, SR, seed=1, voices=voices)
    assert np.array_equal(a, cond.make_noise(kind, SR, seed=1, voices=voices))
    assert not np.array_equal(a, cond.make_noise(kind, SR, seed=2, voices=voices))
    assert a.dtype == np.float32 and len(a) == SR
    assert np.mean(a.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-3)


def test_snr_is_measured_over_the_speech():
    speech = np.concatenate([silence(1.0), word(0.5), silence(1.0)])
    noise = cond.make_noise("hum", len(speech), seed=0)
    mixed = cond.mix_at_snr(speech, noise, 10.0)
    added = mixed - speech
    speech_power = np.mean(word(0.5).astype(np.float64) ** 2)
    assert 10 * np.log10(speech_power / np.mean(added ** 2)) == pytest.approx(10.0, abs=0.3)


def test_rooms_and_telephone_band():
    audio = word(0.5)
    assert np.array_equal(cond.room_response(3), cond.room_response(3))
    wet = cond.reverberate(audio, 3)
    assert len(audio) < len(wet) <= len(audio) + SR // 2  # the tail is kept
    assert len(cond.band_limited_8k(audio)) == len(audio) // 2
    names = [c.name for c in cond.conditions()]
    assert names == ["clean", "20 dB", "10 dB", "5 dB", "0 dB", "8 kHz", "reverberant"]
    # Without voices there is no cafe: noise kinds go music, hum, keyboard in turn.
    assert [cond.noise_kind_of("5 dB", i, False) for i in range(4)] == ["music", "hum",
                                                                      "keyboard", "music"]
    assert cond.noise_kind_of("clean", 0, False) == ""


def test_command_free_audio_is_as_long_as_asked(tmp_path):
    path = tmp_path / "w.wav"
    sf.write(path, np.concatenate([silence(0.2), word(0.4), silence(0.2)]), SR)
    pools = {"words": [testsets.Clip("w", "hello", "", "other word", str(path))]}
    hour = Hour()
    blocks = list(command_free_audio(pools, 35.0, [], hour, seed=3, block=10.0))
    assert sum(len(b) for b in blocks) == 35 * SR
    assert all(len(b) == 10 * SR for b in blocks[:-1])
    assert sum(hour.seconds.values()) == pytest.approx(35.0)
    # Every second belongs to the part that was playing then, and the parts add up.
    starts = [start for start, _ in hour.spans]
    assert starts[0] == 0 and starts == sorted(starts) and starts[-1] < 35.0
    per_kind = Counter()
    for (start, kind), end in zip(hour.spans, starts[1:] + [35.0], strict=True):
        assert hour.kind_at((start + end) / 2) == kind
        per_kind[kind] += end - start
    assert per_kind == pytest.approx(dict(hour.seconds))
    again = list(command_free_audio(pools, 35.0, [], Hour(), seed=3, block=10.0))
    assert all(np.array_equal(a, b) for a, b in zip(blocks, again, strict=True))


# -- the peer ---------------------------------------------------------------------------


def test_grammar_allows_one_command_and_names_unknown_words():
    text, missing = grammar(["yes", "turn on the light", "zzzq"],
                            known={"yes", "turn", "on", "the", "light"})
    assert "public <command> = yes | turn on the light ;" in text
    assert text.startswith("#JSGF V1.0;")
    assert missing == ["zzzq"]
    with pytest.raises(ValueError):
        grammar(["zzzq"], known=set())


def test_pocketsphinx_decodes_within_the_grammar():
    pytest.importorskip("pocketsphinx")
    from benchmarks.peer import PocketSphinx

    peer = PocketSphinx(["yes", "no", "stop"])
    v = peer.verdict(np.concatenate([silence(0.3), word(0.5), silence(0.3)]))
    assert v.best in ("", "yes", "no", "stop")
    assert 0.0 <= v.confidence <= 1.0 and v.compute > 0 and v.seconds == pytest.approx(1.1)


# -- the suite without the shared data ------------------------------------------------


def test_accuracy_runs_on_a_users_manifest_alone(tmp_path, monkeypatch, recognizer, capsys):
    pytest.importorskip("torch")
    from benchmarks import bench_accuracy
    from benchmarks.common import RealHeldOut
    from training.train import load_config

    missing = load_config(None, {"data": {"synth_manifest": str(tmp_path / "none.jsonl")}})
    monkeypatch.setattr(testsets, "training_config", lambda: missing)
    monkeypatch.setattr(testsets, "real_held_out_specs", lambda: [
        RealHeldOut(tmp_path / "no.jsonl", frozenset(), frozenset())])
    for i in range(3):
        sf.write(tmp_path / f"{i}.wav", np.concatenate([silence(0.3), word(0.5, seed=i),
                                                        silence(0.3)]), SR)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": f"{i}.wav", "text": t}) + "\n"
                                for i, t in enumerate(["yes", "no", ""])))
    sets, voices = bench_accuracy.load_sets(bench_accuracy.QUICK, [f"mine={manifest}"], None,
                                            recognizer.commands)
    skipped = capsys.readouterr().err
    assert "skipping the synthetic set" in skipped and "skipping the real" in skipped
    assert [s.name for s in sets] == ["mine"] and voices == []
    run = bench_accuracy.run(sets, voices, recognizer, use_peer=False)
    assert len(run.scored) == 3 * 7  # every clip under every condition, cafe left out
    text = bench_accuracy.report(run, "python -m benchmarks --manifest mine=m.jsonl")
    assert "| mine | clean | 2 |" in text
    assert "music, hum, keyboard (" in text


def test_accuracy_gives_the_systems_turns_over_the_same_audio(tmp_path, monkeypatch,
                                                             recognizer):
    """The peer's verdicts line up with speechrnn's clip by clip and condition by
    condition, though each system decodes a whole chunk of clips before the other."""
    pytest.importorskip("torch")
    from benchmarks import bench_accuracy
    from benchmarks.scoring import Verdict

    calls = []

    def fingerprint(audio, rate):
        return f"{len(audio)}/{rate}/{float(np.sum(np.abs(audio))):.4f}"

    class FakePeer:
        missing: list = []

        def __init__(self, commands):
            pass

        def verdict(self, audio, rate):
            calls.append("peer")
            return Verdict(fingerprint(audio, rate), 1.0, [], len(audio) / rate, 1e-3)

    def ours(recognizer, audio, rate):
        calls.append("ours")
        return Verdict(fingerprint(audio, rate), 1.0, [], len(audio) / rate, 1e-3)

    monkeypatch.setattr(bench_accuracy, "PocketSphinx", FakePeer)
    monkeypatch.setattr(bench_accuracy, "speechrnn_verdict", ours)
    for i in range(2):
        sf.write(tmp_path / f"{i}.wav", np.concatenate([silence(0.2), word(0.4, seed=i),
                                                        silence(0.2)]), SR)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": f"{i}.wav", "text": t}) + "\n"
                                for i, t in enumerate(["yes", "no"])))
    sets = [testsets.manifest_set("mine", manifest)]
    run = bench_accuracy.run(sets, [], recognizer, use_peer=True)
    n = len(run.scored)
    assert n == 2 * 7 and calls == ["ours"] * n + ["peer"] * n  # both clips in one chunk
    monkeypatch.setattr(bench_accuracy, "CHUNK", 1)
    calls.clear()
    run = bench_accuracy.run(sets, [], recognizer, use_peer=True)
    assert calls == (["ours"] * 7 + ["peer"] * 7) * 2  # a clip's 7 conditions a turn
    assert len({s.ours.best for s in run.scored}) == n  # every trial's audio differs
    assert all(s.peer.best == s.ours.best for s in run.scored)


def test_figures_of_the_other_scripts_are_read_from_their_tables(tmp_path):
    (tmp_path / "transcribe.md").write_text(
        "| run | wall time | files/s | real-time factor | peak memory | exit |\n"
        "| 1000 one-second clips, --jobs 1 | 9.8 s | 102 | 0.0098 | 76 MB | 0 |\n"
        "| one 60-minute file | 25.0 s | – | 0.0069 | 84 MB | 0 |\n")
    (tmp_path / "export.md").write_text(
        "| torch | 2 | 0.1 | 10 | 1 | 1 |\n| torch | 1 | 0.006 | 167 | 9.6 | 15 |\n"
        "| onnxruntime fp32 | 1 | 0.0027 | 366 | 4.2 | 7.7 |\n")
    rows = {r.what: r.figure for r in summary.other_scripts_rows(tmp_path)}
    assert rows == {"`transcribe` 1,000 one-second clips, start-up included": "9.8 s",
                    "`transcribe` a one-hour file": "25.0 s, 84 MB",
                    "onnxruntime fp32, one thread, model alone": "366× real time (torch 167×)"}
    assert summary.other_scripts_rows(tmp_path / "nothing") == []



def test_cost_report_reads_speed_and_latency_from_the_other_results(tmp_path):
    from benchmarks.bench_cost import speed_rows

    assert speed_rows(tmp_path) == []
    (tmp_path / "accuracy.md").write_text(
        "| set | speechrnn RTF | PocketSphinx RTF | speechrnn faster by |\n|---|---:|---:|---:|\n"
        "| real-word | 0.0040 | 0.0123 | 3.1× |\n| all | 0.0050 | 0.0200 | 4.0× |\n")
    (tmp_path / "stream.md").write_text("| `command`, right | 81 | 158 ms | 405 ms | 655 ms |\n")
    rows = speed_rows(tmp_path)
    assert rows[0].startswith("| real-time factor, speechrnn | 0.0050 (200× real time) |")
    assert rows[1].startswith("| real-time factor, PocketSphinx | 0.0200 |")
    assert "158 ms / 405 ms" in rows[2]
    (tmp_path / "accuracy.md").write_text("| all | 0.0050 | – | – |\n")
    assert [r.split("|")[1].strip() for r in speed_rows(tmp_path)] == [
        "real-time factor, speechrnn", "latency, end of speech to right command, p50 / p95"]

# -- training time of a fine-tuned model --------------------------------------------------

def test_training_time_adds_the_stages_a_model_was_fine_tuned_from(tmp_path):
    torch = pytest.importorskip("torch")
    from benchmarks.bench_cost import on_cores, training_time

    base, tuned = tmp_path / "base.pt", tmp_path / "tuned.pt"
    torch.save({"train_state": {"elapsed": 600.0, "epoch": 4}}, base)
    torch.save({"train_state": {"elapsed": 120.0, "epoch": 2, "init_checkpoint": str(base),
                                "init_elapsed": 600.0}}, tuned)
    t = training_time(tuned)
    assert t["minutes"] == pytest.approx(12.0)
    assert t["stages"] == [("base.pt", 10.0, 4), ("tuned.pt", 2.0, 2)]
    assert t["cores"] == [] and "not recorded" in on_cores(t["cores"])
    torch.save({"train_state": {"elapsed": 600.0, "epoch": 4, "cpu_cores": [16]}}, base)
    torch.save({"train_state": {"elapsed": 120.0, "epoch": 2, "init_checkpoint": str(base),
                                "init_elapsed": 600.0, "cpu_cores": [2]}}, tuned)
    assert on_cores(training_time(tuned)["cores"]) == "on 2-core and 16-core CPUs"
    assert on_cores([2]) == "on a 2-core CPU"
    assert on_cores([16], ["NVIDIA H100"]) == "on a 16-core CPU with NVIDIA H100"

    base.unlink()  # the earlier stage's file is gone: its time is still on record
    t = training_time(tuned)
    assert t["minutes"] == pytest.approx(12.0)
    assert [s[0] for s in t["stages"]] == ["base.pt", "tuned.pt"]
    assert training_time(tmp_path / "missing.pt")["minutes"] is None

    # A restacked checkpoint (training.restack) between two stages is no stage of its own.
    torch.save({"train_state": {"elapsed": 600.0, "epoch": 4}}, base)
    restacked = tmp_path / "restacked.pt"
    torch.save({"train_state": {"elapsed": 0.0, "epoch": 0, "init_checkpoint": str(base),
                                "init_elapsed": 600.0}}, restacked)
    torch.save({"train_state": {"elapsed": 120.0, "epoch": 2, "init_checkpoint": str(restacked),
                                "init_elapsed": 600.0}}, tuned)
    t = training_time(tuned)
    assert t["stages"] == [("base.pt", 10.0, 4), ("tuned.pt", 2.0, 2)]


def test_model_benchmark_measures_every_model_on_the_same_transformed_clips(tiny_model_path):
    pytest.importorskip("torch")  # bench_model reads clips with training's helpers
    from benchmarks.bench_model import evaluate
    from speechrnn.session import ModelSession

    session = ModelSession(tiny_model_path)
    rng = np.random.default_rng(0)
    clips = [(word(0.4 + 0.1 * i), text) for i, text in enumerate(["yes", "no", "yes"])]
    transformed = []

    def transform(audio):  # random, like noise: each clip must be transformed once
        transformed.append(len(audio))
        return (audio + 0.01 * rng.standard_normal(len(audio))).astype(np.float32)

    first, second = evaluate([session, session], clips, ["yes", "no"], transform)
    assert len(transformed) == len(clips)
    assert first == second and first["clips"] == 3
    assert set(first["per_word"]) == {"yes", "no"}


def test_phrase_set_scores_device_commands_against_their_own_list(monkeypatch):
    pytest.importorskip("torch")
    from training.datasets import Utterance

    texts = ["turn on the light", "go back", "next", "yes", "turn on the radio", "banana",
             "go back home", "", "volume up", "apple pie"]
    held = [Utterance(f"/x/{i}.wav", t, f"voice{i % 3}", "synth") for i, t in enumerate(texts)]
    monkeypatch.setattr(testsets, "held_out_synthetic", lambda manifest=None: held)
    s = testsets.phrase_set(None)
    assert s.name == "phrases" and "turn on the light" in s.commands and "yes" not in s.commands
    kinds = {c.said: c.kind for c in s.clips}
    # Commands are whole entries of the list; other words hold none of them as whole
    # words, so "go back home" (which holds "go back") is neither.
    assert {t for t, k in kinds.items() if k == "command"} == {
        "turn on the light", "go back", "next", "volume up"}
    assert {t for t, k in kinds.items() if k == "other word"} == {
        "yes", "turn on the radio", "banana", "apple pie"}
    sample = testsets.phrase_set(4, other_share=0.25).clips
    assert [c.kind for c in sample] == ["command"] * 3 + ["other word"]


# -- results headers ----------------------------------------------------------------


def test_cpu_name_tells_apart_machines_that_share_a_brand_name():
    info = ("processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {f}\nmodel\t\t: {m}\n"
            "flags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_name(info.format(f=23, m=49, flags="avx avx2")) == (
        "AMD EPYC (family 23 model 49, AVX2)")
    assert cpu_name(info.format(f=25, m=17, flags="avx2 avx512f")) == (
        "AMD EPYC (family 25 model 17, AVX-512)")
    assert cpu_name("model name\t: Some CPU\n") == "Some CPU"


def test_verifier_study_scores_misses_at_false_accept_targets():
    from benchmarks.study_verifier import misses_at

    hits = np.array([True, True, True, False])
    clips = np.array([0.9, 0.7, 0.4, 0.95])
    hour = np.array([0.8, 0.5, 0.3, 0.2])  # one hour of it
    # 0/h: thresholds above 0.8, only the 0.9 hit passes; 1/h: down to 0.7 (the hour's
    # 0.8 passes), the 0.7 hit too; 2/h: down to 0.4, the 0.4 hit too. The 0.95 clip
    # is a wrong command and never counts.
    assert misses_at(hits, clips, hour, 1.0, (0, 1, 2, 4)) == [0.75, 0.5, 0.25, 0.25]
    assert misses_at(hits, clips, hour, 0.5, (2,)) == [0.5]  # half an hour: 1 accept = 2/h
    assert misses_at(hits, clips, hour * 0 + 1.0, 1.0, (0,)) == [None]


def test_thresholds_study_counts_a_words_recordings_at_each_threshold(tmp_path):
    from benchmarks.study_thresholds import recognized
    from speechrnn.recognizer import Recognizer

    samples = pathlib.Path(__file__).resolve().parent.parent / "samples"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"path": str(samples / name), "text": text}) + "\n"
                                for name, text in [("stop.wav", "stop"), ("yes.wav", "stop")]))
    word_set = testsets.manifest_set("word", manifest, ["stop", "yes", "no"])
    recognizer = Recognizer(commands=["stop", "yes", "no"])
    # "stop" said once, and a "yes" labelled "stop": recognized as it at most half the time.
    word, clips, shares = recognized(recognizer, word_set, (0.0, 0.5, 1.0 + 1e-9))
    assert (word, clips) == ("stop", 2)
    assert shares[0] == shares[1] == 0.5 and shares[2] == 0.0
    two = tmp_path / "two.jsonl"
    two.write_text(manifest.read_text().replace('"text": "stop"}\n', '"text": "yes"}\n', 1))
    with pytest.raises(ValueError, match="not one word"):
        recognized(recognizer, testsets.manifest_set("two", two, ["stop", "yes"]))
