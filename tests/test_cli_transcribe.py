"""`speechrnn transcribe` and the Recognizer behind it: output formats, exit statuses, every
kind of bad input, long files; plumbing on a tiny random model, recognition on the bundled one.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrnn import cli
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer, Transcript
from speechrnn.session import bundled_model_path

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def noise(seconds: float, rate: int = 16000, amp: float = 0.2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * rate)) * amp).astype(np.float32)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def plumbing(tiny_model_path):
    """Options that make the random tiny model accept something for any sound."""
    return ["--model", tiny_model_path, "--threshold", "0"]


@pytest.fixture()
def good_files(tmp_path):
    folder = tmp_path / "good"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "b.wav", noise(1.0), 16000)
    sf.write(folder / "a.flac", noise(0.8, 8000), 8000)
    sf.write(folder / "sub" / "c.ogg", noise(1.0, 44100), 44100, format="OGG")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_jsonl_has_one_object_per_file_in_order(capsys, plumbing, good_files):
    single = good_files / "b.wav"
    code, out, err = run(capsys, "transcribe", "--format", "jsonl", *plumbing, single,
                         good_files)
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objects] == [str(single), str(good_files / "a.flac"),
                                            str(good_files / "b.wav"),
                                            str(good_files / "sub" / "c.ogg")]
    for o in objects:
        assert list(o) == ["path", "text", "segments", "error"]
        assert o["error"] is None
        assert o["text"] == " ".join(s["text"] for s in o["segments"])
        for s in o["segments"]:
            assert list(s) == ["text", "start", "end", "confidence"]
            assert isinstance(s["start"], float) and isinstance(s["end"], float)
            assert 0.0 <= s["start"] <= s["end"] <= 1.01
            assert 0.0 <= s["confidence"] <= 1.0
    assert objects[0]["text"] in ("yes", "no", "stop", "turn on the light")


def test_a_folder_search_finds_every_format_libsndfile_reads(capsys, plumbing, tmp_path):
    from speechrnn.audio import AUDIO_EXTENSIONS

    folder = tmp_path / "formats"
    folder.mkdir()
    written = []
    for name, fmt, subtype in [("a.mp3", "MP3", None), ("b.opus", "OGG", "OPUS"),
                               ("c.aiff", "AIFF", None), ("d.au", "AU", None)]:
        if fmt in sf.available_formats() and (subtype is None
                                              or subtype in sf.available_subtypes(fmt)):
            sf.write(folder / name, noise(1.0), 16000, format=fmt, subtype=subtype)
            written.append(folder / name)
    (folder / "e.m4a").write_bytes(b"not searched for")
    assert ".mp3" in AUDIO_EXTENSIONS and ".opus" in AUDIO_EXTENSIONS  # pip's libsndfile
    code, out, err = run(capsys, "transcribe", "--format", "jsonl", *plumbing, folder)
    assert code == 0, err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objects] == [str(p) for p in written]
    assert all(o["error"] is None and o["segments"] for o in objects)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_commands_own_threshold_wins_over_the_option(capsys, plumbing, good_files,
                                                       tmp_path, jobs):
    """plumbing's --threshold 0 accepts something in every file; each command's own /1/
    rejects them all again, in the parallel workers too."""
    lenient, strict = tmp_path / "lenient.txt", tmp_path / "strict.txt"
    lenient.write_text("yes\nno\nstop\n")
    strict.write_text("yes /1/\nno /1/\nstop /1/\n")
    for commands, accepted in [(lenient, True), (strict, False)]:
        code, out, err = run(capsys, "transcribe", "--format", "jsonl", "--jobs", jobs,
                             *plumbing, "--commands", commands, good_files)
        assert code == 0, err
        objects = [json.loads(line) for line in out.splitlines()]
        assert len(objects) == 3
        assert all(bool(o["segments"]) == accepted for o in objects), commands


class _Stdin:
    """Standard input holding `data`, piped (tty False) or a terminal."""

    def __init__(self, data: bytes = b"", tty: bool = False):
        self.buffer = io.BytesIO(data)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_recording_piped_to_standard_input(capsys, plumbing, good_files, tmp_path,
                                             monkeypatch, jobs):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    mp3 = io.BytesIO()
    sf.write(mp3, noise(1.0), 16000, format="MP3")
    monkeypatch.setattr(sys, "stdin", _Stdin(mp3.getvalue()))
    code, out, err = run(capsys, "transcribe", "--format", "jsonl", "--jobs", jobs,
                         *plumbing, "-", good_files / "b.wav")
    assert code == 0, err
    piped, wav = (json.loads(line) for line in out.splitlines())
    assert piped["path"] == "-" and piped["error"] is None and piped["segments"]
    assert wav["path"] == str(good_files / "b.wav")
    assert not list(tmp_path.glob("speechrnn-stdin-*"))  # the copy is gone


def test_standard_input_that_is_no_recording(capsys, plumbing, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    for stdin, words in [(_Stdin(b"not audio at all"), "standard input is not a readable"),
                         (_Stdin(b""), "standard input is empty"),
                         (_Stdin(tty=True), "standard input, but that is a terminal")]:
        monkeypatch.setattr(sys, "stdin", stdin)
        code, out, err = run(capsys, "transcribe", "--format", "jsonl", *plumbing, "-")
        assert code == 1 and words in json.loads(out)["error"] and words in err
        assert str(tmp_path) not in err
    assert not list(tmp_path.glob("speechrnn-stdin-*"))


def test_text_and_csv_formats(capsys, plumbing, good_files):
    code, out, _ = run(capsys, "transcribe", *plumbing, good_files)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.count("\t") == 1 for line in lines)
    assert lines[0].startswith(str(good_files / "a.flac") + "\t")

    code, out, _ = run(capsys, "transcribe", "--format", "csv", *plumbing, good_files)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and list(rows[0]) == ["path", "start", "end", "text", "confidence",
                                           "error"]
    assert {r["path"] for r in rows} == {str(p) for p in good_files.rglob("*.*")
                                         if p.suffix != ".txt"}


def test_output_file(capsys, plumbing, good_files, tmp_path):
    target = tmp_path / "out.jsonl"
    code, out, _ = run(capsys, "transcribe", "--format", "jsonl", "-o", target, *plumbing,
                       good_files)
    assert code == 0 and out == ""
    assert len(target.read_text().splitlines()) == 3


def test_commands_file_and_free_mode(capsys, tiny_model_path, good_files, tmp_path):
    commands = tmp_path / "commands.txt"
    commands.write_text("open the door\n")
    code, out, _ = run(capsys, "transcribe", "--model", tiny_model_path, "--threshold", "0",
                       "--commands", commands, "--format", "jsonl", good_files / "b.wav")
    assert code == 0 and json.loads(out)["text"] == "open the door"
    code, out, _ = run(capsys, "transcribe", "--model", tiny_model_path, "--free",
                       "--format", "jsonl", good_files / "b.wav")
    assert code == 0 and json.loads(out)["error"] is None


# -- bad input: each gives its sentence, and the batch goes on --------------------------


def make_bad_inputs(folder: Path) -> dict[str, tuple[Path, str | None]]:
    folder.mkdir()
    good = folder / "good.wav"
    sf.write(good, noise(1.0), 16000)
    zero = folder / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    nan = folder / "nan.wav"
    samples = noise(1.0)
    samples[50] = np.nan
    sf.write(nan, samples, 16000, subtype="FLOAT")
    inf = folder / "inf.wav"
    samples[50] = -np.inf
    sf.write(inf, samples, 16000, subtype="FLOAT")
    silence = folder / "silence.wav"
    sf.write(silence, np.zeros(16000, np.float32), 16000)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "truncated.wav").write_bytes(good.read_bytes()[:30])
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(40))
    (folder / "text.wav").write_text("hello, I am a text file\n")
    no_audio = folder / "no_audio"
    no_audio.mkdir()
    (no_audio / "readme.txt").write_text("nothing to hear\n")
    return {
        "missing": (folder / "missing.wav", "does not exist"),
        "empty": (folder / "empty.wav", "is empty"),
        "zero-length": (zero, "holds no audio"),
        "truncated": (folder / "truncated.wav", "not a readable audio file"),
        "corrupt": (folder / "corrupt.wav", "not a readable audio file"),
        "text": (folder / "text.wav", "not a readable audio file"),
        "nan": (nan, "NaN or infinite"),
        "inf": (inf, "NaN or infinite"),
        "no audio folder": (no_audio, "holds no audio files"),
        "silence": (silence, None),
        "good": (good, None),
    }


def test_every_bad_input_gives_its_sentence_and_the_batch_goes_on(capsys, plumbing,
                                                                   tmp_path):
    cases = make_bad_inputs(tmp_path / "in")
    paths = [path for path, _ in cases.values()]
    code, out, err = run(capsys, "transcribe", "--format", "jsonl", *plumbing, *paths)
    assert code == 1
    assert "Traceback" not in err
    objects = [json.loads(line) for line in out.splitlines()]
    assert [o["path"] for o in objects] == [str(p) for p in paths]
    for (name, (path, words)), o in zip(cases.items(), objects, strict=True):
        if words is None:
            assert o["error"] is None, name
        else:
            assert words in o["error"] and str(path) in o["error"], name
            assert o["text"] == "" and o["segments"] == []
            assert o["error"] in err
    assert objects[-2]["segments"] == []  # silence: read fine, nothing recognized
    assert objects[-1]["segments"]  # the good file after all the bad ones
    assert "9 of 11 input(s) could not be transcribed" in err


def test_text_format_keeps_one_line_per_input_with_errors(capsys, plumbing, tmp_path):
    cases = make_bad_inputs(tmp_path / "in")
    code, out, _ = run(capsys, "transcribe", *plumbing, cases["missing"][0],
                       cases["good"][0])
    assert code == 1
    assert out.splitlines()[0] == f"{cases['missing'][0]}\t"


@pytest.mark.parametrize("argv", [[], ["--threshold", "1.5", "x.wav"],
                                  ["--threshold", "abc", "x.wav"],
                                  ["--format", "xml", "x.wav"], ["--jobs", "0", "x.wav"],
                                  ["--free", "--commands", "c.txt", "x.wav"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["transcribe", *argv])
    assert exit_.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "folder", "binary", "only comments", "bad line"])
def test_unusable_commands_file_exits_2_with_a_sentence(capsys, tiny_model_path, tmp_path,
                                                         case):
    commands = {"missing": tmp_path / "nope.txt", "folder": tmp_path}.get(
        case, tmp_path / "commands.txt")
    if case == "binary":
        commands.write_bytes(bytes(range(256)))
    elif case == "only comments":
        commands.write_text("# to do\n")
    elif case == "bad line":
        commands.write_text("yes\nnaïve\n")
    wav = tmp_path / "a.wav"
    sf.write(wav, noise(1.0), 16000)
    code, out, err = run(capsys, "transcribe", "--model", tiny_model_path, "--commands",
                         commands, wav)
    assert code == 2 and out == ""
    assert str(commands) in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("case", ["missing", "corrupt", "folder"])
def test_unusable_model_exits_2_with_a_sentence(capsys, tmp_path, case):
    model = {"missing": tmp_path / "nope.onnx", "folder": tmp_path}.get(
        case, tmp_path / "bad.onnx")
    if case == "corrupt":
        model.write_bytes(b"\x08\x07" + bytes(100))
    code, out, err = run(capsys, "transcribe", "--model", model, tmp_path / "a.wav")
    assert code == 2 and out == ""
    assert str(model) in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_traceback_from_the_installed_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "speechrnn", "transcribe", "--model", str(tmp_path / "x.onnx"),
         str(tmp_path / "a.wav")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("speechrnn: model ") and "Traceback" not in result.stderr


def test_help_states_the_default_threshold():
    assert cli.DEFAULT_THRESHOLD == DEFAULT_THRESHOLD
    text = cli.build_parser()._subparsers._group_actions[0].choices["transcribe"].format_help()
    assert f"default: {DEFAULT_THRESHOLD}" in text and "exit status" in text



def test_version_says_where_the_bundled_model_files_are(capsys):
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args(["--version"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("speechrnn ")
    assert lines[1].endswith(f"{bundled_model_path()} (int8, what speechrnn runs)")
    assert lines[2].endswith(str(bundled_model_path(quantized=False)))

# -- input formats, long files, parallel jobs -------------------------------------------


@pytest.mark.parametrize("rate,subtype,channels", [(8000, "PCM_16", 1), (44100, "PCM_24", 2),
                                                   (48000, "FLOAT", 2), (22050, "PCM_U8", 1)])
def test_any_rate_and_format(capsys, plumbing, tmp_path, rate, subtype, channels):
    path = tmp_path / "in.wav"
    data = noise(1.0, rate)
    sf.write(path, np.stack([data] * channels, axis=1), rate, subtype=subtype)
    code, out, err = run(capsys, "transcribe", "--format", "jsonl", *plumbing, path)
    assert code == 0, err
    (segment,) = json.loads(out)["segments"]
    assert 0.0 <= segment["start"] < segment["end"] <= 1.01


def long_recording(path: Path, rate: int = 8000) -> list[float]:
    """25 s of near silence with 0.8 s noise bursts; returns the burst start times."""
    starts = [3.0, 11.0, 19.5]
    audio = noise(25.0, rate, amp=1e-4)
    for i, start in enumerate(starts):
        at = int(start * rate)
        audio[at: at + int(0.8 * rate)] += noise(0.8, rate, amp=0.3, seed=i + 1)
    sf.write(path, audio, rate)
    return starts


def test_long_file_is_split_into_timed_segments(capsys, plumbing, tmp_path):
    path = tmp_path / "long.wav"
    starts = long_recording(path)
    code, out, _ = run(capsys, "transcribe", "--format", "jsonl", *plumbing, path)
    assert code == 0
    segments = json.loads(out)["segments"]
    assert [s["start"] for s in segments] == pytest.approx(starts, abs=0.1)
    assert [s["end"] for s in segments] == pytest.approx([s + 0.8 for s in starts], abs=0.2)


def test_jobs_give_the_same_output_in_the_same_order(capsys, plumbing, good_files, tmp_path):
    long_recording(good_files / "long.wav")
    _, one, _ = run(capsys, "transcribe", "--format", "jsonl", *plumbing, good_files)
    code, two, _ = run(capsys, "transcribe", "--format", "jsonl", "--jobs", "2", *plumbing,
                       good_files)
    assert code == 0 and two == one and len(one.splitlines()) == 4


# -- the Python API ---------------------------------------------------------------------


def test_recognizer_on_arrays_and_files(tiny_model_path, tmp_path):
    recognizer = Recognizer(tiny_model_path, commands=["Lights ON", "lights off"], threshold=0)
    assert recognizer.commands == ["lights on", "lights off"]
    result = recognizer.transcribe(noise(1.0, 8000), sample_rate=8000)
    assert isinstance(result, Transcript) and result.error is None
    assert result.text in ("lights on", "lights off")
    stereo_int16 = (np.stack([noise(1.0)] * 2, axis=1) * 32767).astype(np.int16)
    assert recognizer.transcribe(stereo_int16).text in ("lights on", "lights off")
    assert recognizer.transcribe(np.zeros(16000, np.float32)).segments == []
    assert recognizer.transcribe(tmp_path / "missing.wav").error.endswith("does not exist")
    path = tmp_path / "long.wav"
    starts = long_recording(path)
    assert len(recognizer.transcribe(path).segments) == len(starts)
    assert recognizer.transcribe(path).to_dict()["error"] is None


def test_recognizer_on_binary_file_objects(tiny_model_path, tmp_path):
    """An upload held in memory, or an open file: the same result as from its path."""
    recognizer = Recognizer(tiny_model_path, commands=["yes", "no"], threshold=0)
    path = tmp_path / "long.wav"
    long_recording(path)
    from_path = recognizer.transcribe(path)
    with open(path, "rb") as f:
        opened = recognizer.transcribe(f)
    in_memory = recognizer.transcribe(io.BytesIO(path.read_bytes()))
    assert opened.path == str(path) and in_memory.path == "<stream>"
    assert opened.segments == in_memory.segments == from_path.segments
    assert len(from_path.segments) > 1  # over 10 s: read in blocks, split by voice
    junk = recognizer.transcribe(io.BytesIO(b"not audio"))
    assert junk.segments == [] and "the audio stream is not a readable audio file" in junk.error


def test_recognizer_defaults(tiny_model_path):
    recognizer = Recognizer(tiny_model_path)
    assert recognizer.commands == ["yes", "no", "stop", "turn on the light"]
    assert recognizer.threshold == DEFAULT_THRESHOLD
    assert Recognizer(tiny_model_path, free=True).threshold == 0.0


# -- real recognition with the bundled model ------------------------------------------

needs_bundled = pytest.mark.skipif(
    not bundled_model_path().exists(),
    reason=f"the bundled model {bundled_model_path()} is not there yet (train and export it)")


@needs_bundled
def test_samples_are_recognized(capsys):
    code, out, err = run(capsys, "transcribe", "--commands", SAMPLES / "commands.txt",
                         "--format", "jsonl", SAMPLES)
    assert code == 0, err
    texts = {Path(o["path"]).stem: o["text"] for o in map(json.loads, out.splitlines())}
    assert texts["yes"] == "yes" and texts["stop"] == "stop"
    assert texts["banana"] == ""  # not a command: rejected, not forced onto one
    # Phrases are harder for the model; a miss must be a rejection, never a wrong command.
    assert texts["go_back"] in ("go back", "")
    assert texts["turn_on_the_light"] in ("turn on the light", "")


@needs_bundled
def test_noise_and_silence_are_rejected():
    recognizer = Recognizer()
    for seed in range(3):
        assert recognizer.transcribe(noise(1.5, seed=seed)).text == ""
    assert recognizer.transcribe(np.zeros(16000, np.float32)).text == ""


def bursts(times: list[tuple[float, float]], seconds: float = 6.0) -> np.ndarray:
    audio = noise(seconds, amp=1e-4)
    for i, (start, end) in enumerate(times):
        a, b = int(start * 16000), int(end * 16000)
        audio[a:b] += noise(end - start + 0.01, amp=0.3, seed=i + 1)[: b - a]
    return audio


def test_speech_regions_of_a_short_recording():
    from speechrnn.recognizer import speech_regions

    regions = speech_regions(bursts([(0.5, 1.2), (1.35, 1.8), (3.0, 3.6), (5.0, 5.03)]))
    # the 0.15 s pause is closed, the 30 ms blip dropped
    assert [t / 16000 for region in regions for t in region] == pytest.approx(
        [0.5, 1.8, 3.0, 3.6], abs=0.02)
    assert speech_regions(np.zeros(16000, np.float32)) == []
    assert speech_regions(np.zeros(10, np.float32)) == []


def test_speech_regions_noise_floor_is_numpys_10th_percentile_exactly():
    from speechrnn.recognizer import _percentile_10, speech_regions

    rng = np.random.default_rng(0)
    for n in range(1, 300):
        for values in (rng.normal(size=n) * 30, rng.integers(-5, 5, size=n) * 10.0,
                       np.full(n, -120.0)):
            assert _percentile_10(values) == np.percentile(values, 10)
    # NaN samples (an array passed in by a program) still give regions, not an error.
    audio = bursts([(0.5, 1.2)], seconds=2.0)
    audio[100] = np.nan
    assert isinstance(speech_regions(audio), list)


def test_short_file_with_two_commands_is_decoded_region_by_region(tiny_model_path,
                                                                  monkeypatch):
    from speechrnn.recognizer import Result

    recognizer = Recognizer(tiny_model_path)
    # Accept only stretches shorter than 2 s: the whole 6 s recording is "rejected".
    monkeypatch.setattr(recognizer, "decode", lambda lp: Result(
        "yes" if len(lp) < 2 * recognizer.info.frame_rate else "", 0.9, "yes"))
    transcript = recognizer.transcribe(bursts([(0.5, 1.2), (3.0, 3.6)]))
    assert transcript.text == "yes yes"
    assert [t for s in transcript.segments for t in (s.start, s.end)] == pytest.approx(
        [0.5, 1.2, 3.0, 3.6], abs=0.02)
