"""`speechrnn record`: takes cut by voice activity into the folders training.enroll reads,
bad takes refused with a reason, resuming where it stopped, a microphone and Ctrl-C."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechrnn import cli, mic
from speechrnn.cli_record import plan_takes, take_problem
from tests.signals import SR, silence, word
from tests.test_mic import FakeSD


def takes_file(path, *bursts):
    """A recording of bursts (seconds, level dB) with 1 s pauses, as a speaker would."""
    parts = [silence(1.0)]
    for seconds, level in bursts:
        parts += [word(seconds, level_db=level, seed=len(parts)), silence(1.0)]
    sf.write(path, np.concatenate(parts), SR, subtype="FLOAT")
    return path


def record(*argv):
    return cli.main(["record", *argv])


def wavs(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_takes_go_to_command_folders_in_order(tmp_path, capsys):
    out = tmp_path / "my_voice"
    audio = takes_file(tmp_path / "all.wav", (0.6, -20), (0.7, -20), (0.4, -24), (0.5, -18))
    assert record("Turn on the light", "stop", "--takes", "2", "--out", str(out),
                  "--input", str(audio)) == 0
    assert wavs(out / "turn_on_the_light") == ["01.wav", "02.wav"]
    assert wavs(out / "stop") == ["01.wav", "02.wav"]
    for name, seconds in (("turn_on_the_light/01.wav", 0.6), ("stop/02.wav", 0.5)):
        x, rate = sf.read(out / name)
        assert rate == SR
        # the take is its burst with a little silence either side, not the pauses too
        assert seconds < len(x) / SR < seconds + 0.8
    captured = capsys.readouterr()
    assert 'say "turn on the light"  (1 of 2)' in captured.err
    assert 'say "stop"  (2 of 2)' in captured.err
    assert "python -m training.enroll" in captured.err
    assert captured.out.count("\n") == 4  # one line a saved take


def test_bad_takes_are_refused_and_asked_again(tmp_path, capsys):
    out = tmp_path / "my_voice"
    # too long, then clipped, then too quiet, then a good one
    long, good = word(5.0, seed=1), word(0.6, seed=2)
    clipped = np.clip(word(0.6, level_db=-3, seed=3) * 4, -1, 1)
    quiet = word(0.6, level_db=-50, seed=4)
    parts = [silence(1.0)]
    for burst in (long, clipped, quiet, good):
        parts += [burst, silence(1.0)]
    path = tmp_path / "all.wav"
    sf.write(path, np.concatenate(parts), SR, subtype="FLOAT")
    assert record("stop", "--takes", "1", "--out", str(out), "--input", str(path)) == 0
    err = capsys.readouterr().err
    assert "too long" in err and "clipped" in err and "very quiet" in err
    assert err.count('say "stop"  (1 of 1)') == 4
    x, _ = sf.read(out / "stop" / "01.wav")
    assert len(x) / SR < 1.5  # the good take, not the long one


def test_take_problem_accepts_a_plain_word():
    assert take_problem(word(0.6), 0.6) is None
    assert take_problem(np.zeros(100, np.float32), 0.1) is not None


def test_a_second_run_goes_on_where_the_first_stopped(tmp_path, capsys):
    out = tmp_path / "my_voice"
    first = takes_file(tmp_path / "a.wav", (0.5, -20))  # one take, then the input ends
    assert record("yes", "no", "--takes", "2", "--out", str(out), "--input", str(first)) == 0
    assert "still to record" in capsys.readouterr().err
    assert wavs(out / "yes") == ["01.wav"] and wavs(out / "no") == []
    assert [p.numbers for p in plan_takes(["yes", "no"], out, 2)] == [[2], [1, 2]]
    rest = takes_file(tmp_path / "b.wav", (0.5, -20), (0.4, -20), (0.6, -20))
    assert record("yes", "no", "--takes", "2", "--out", str(out), "--input", str(rest)) == 0
    assert wavs(out / "yes") == ["01.wav", "02.wav"]
    assert wavs(out / "no") == ["01.wav", "02.wav"]
    capsys.readouterr()
    assert record("yes", "no", "--takes", "2", "--out", str(out), "--input", str(rest)) == 0
    assert "already holds" in capsys.readouterr().err
    assert wavs(out / "no") == ["01.wav", "02.wav"]


def test_enroll_reads_what_record_wrote(tmp_path):
    pytest.importorskip("torch")
    from training.enroll import commands_of, read_recordings

    out = tmp_path / "my_voice"
    audio = takes_file(tmp_path / "all.wav", (0.6, -20), (0.4, -20))
    assert record("turn on the light", "stop", "--takes", "1", "--out", str(out),
                  "--input", str(audio)) == 0
    assert commands_of(read_recordings(out)) == ["stop", "turn on the light"]


@pytest.mark.parametrize("argv, words", [
    ([], "give the commands"),
    (["stop", "--commands", "c.txt"], "not both"),
    (["--commands", "missing.txt"], "does not exist"),
    (["café"], "cannot spell"),
    (["stop", "--input", "missing.wav"], "missing.wav"),
])
def test_usage_errors_exit_2_in_one_line(tmp_path, monkeypatch, capsys, argv, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text("stop\n")
    assert record(*argv, "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_takes_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        record("stop", "--takes", "0")
    assert "must be 1 or more" in capsys.readouterr().err


@pytest.fixture
def sd(monkeypatch):
    fake = FakeSD()
    monkeypatch.setattr(mic, "_sounddevice", lambda: fake)
    return fake


def test_from_a_microphone_until_done(sd, tmp_path, capsys):
    sd.audio = np.concatenate([silence(0.5), word(0.5), silence(1.0), word(0.4, seed=3),
                               silence(1.0)])
    out = tmp_path / "my_voice"
    assert record("stop", "go", "--takes", "1", "--out", str(out), "--device", "3") == 0
    assert wavs(out / "stop") == ["01.wav"] and wavs(out / "go") == ["01.wav"]
    assert "recording from input device 3" in capsys.readouterr().err
    assert all(s.closed for s in sd.streams)


def test_ctrl_c_keeps_the_takes_saved(sd, tmp_path, capsys):
    sd.audio = np.concatenate([silence(0.5), word(0.5), silence(1.0)])
    sd.after = "interrupt"
    out = tmp_path / "my_voice"
    assert record("stop", "--takes", "3", "--out", str(out), "--device", "3") == 0
    assert wavs(out / "stop") == ["01.wav"]
    assert "stopped: 1 take(s) saved" in capsys.readouterr().err
    assert all(s.closed for s in sd.streams)
