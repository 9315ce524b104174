"""`speechrnn listen` end to end through a real audio stack: a private PulseAudio server,
a WAV played into a null sink, and its monitor recorded as the microphone.

PortAudio reaches PulseAudio through ALSA's pulse plugin (Debian: libasound2-plugins), as
on a desktop. Skips with the reason when PulseAudio, PortAudio or the plugin is missing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.signals import is_subsequence

ROOT = Path(__file__).resolve().parent.parent
SINK = "speechrnn_e2e"
TOOLS = ("pulseaudio", "pactl", "paplay")


def _run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30, **kw)


@contextmanager
def pulse_server():
    """Environment of a private PulseAudio server with a null sink as default, and the
    server's process; the server is stopped and its files removed afterwards, whatever
    happens."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt install pulseaudio "
                    "pulseaudio-utils); needed for the end-to-end audio test")
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pytest.skip("the PortAudio library is not installed (Debian: apt install libportaudio2)")
    # A short path: the server's unix socket path must stay under 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="speechrnn-pa-"))
    os.chmod(home, 0o700)
    socket = home / "native"
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
           "PULSE_RUNTIME_PATH": str(home / "runtime"), "PULSE_STATE_PATH": str(home / "state"),
           "PULSE_SERVER": f"unix:{socket}", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(home / "server.log", "w")
    # -n: no default.pa, so nothing but these two modules (no real hardware, no dbus).
    server = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", "--exit-idle-time=-1", "--disallow-exit",
         "--use-pid-file=no", "--log-target=stderr",
         f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket}",
         f"--load=module-null-sink sink_name={SINK} rate=48000 channels=1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while _run(["pactl", "info"], env).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail("PulseAudio did not start:\n" + (home / "server.log").read_text())
            time.sleep(0.1)
        _run(["pactl", "set-default-sink", SINK], env, check=True)
        _run(["pactl", "set-default-source", f"{SINK}.monitor"], env, check=True)
        devices = _run([sys.executable, "-m", "speechrnn", "devices", "--jsonl"], env)
        names = [json.loads(line)["name"] for line in devices.stdout.splitlines()]
        if "pulse" not in names:
            pytest.skip("PortAudio sees no 'pulse' device: ALSA's PulseAudio plugin is not "
                        f"installed (Debian: apt install libasound2-plugins); saw {names}")
        yield env, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def pulse():
    with pulse_server() as (env, _):
        yield env


class Listener:
    """`speechrnn listen --jsonl` in a subprocess, with its stderr watched."""

    def __init__(self, env, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "speechrnn", "listen", "--jsonl", "--device", "pulse",
             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.err: list[str] = []
        self.out: list[str] = []
        self.ready = threading.Event()
        # Both pipes are drained by threads: nothing else may read them, or lines race.
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=self._read_out, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_err(self):
        for line in self.proc.stderr:
            self.err.append(line)
            if line.startswith("listening to"):
                self.ready.set()

    def _read_out(self):
        for line in self.proc.stdout:
            self.out.append(line)

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("speechrnn listen did not start:\n" + "".join(self.err))

    def stop(self) -> tuple[int, list[dict], str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        events = [json.loads(line) for line in self.out]  # every line must be JSON
        return self.proc.returncode, events, "".join(self.err)


def play(env, path: Path):
    _run(["paplay", "--device", SINK, str(path)], env, check=True)


def tone_words(path: Path, rate: int = 22050) -> list[float]:
    """Three speech-like bursts with pauses; returns their start times in seconds."""
    t = np.arange(int(0.5 * rate)) / rate
    burst = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    burst = (0.3 * burst / np.abs(burst).max() * np.sin(np.pi * t / 0.5)).astype(np.float32)
    gap = np.zeros(int(0.9 * rate), np.float32)
    sf.write(path, np.concatenate([gap, burst, gap, burst, gap, burst, gap]), rate)
    return [0.9, 2.3, 3.7]


def test_listen_through_pulseaudio_tiny_model(pulse, tiny_model_path, tmp_path):
    wav = tmp_path / "words.wav"
    starts = tone_words(wav)
    listener = Listener(pulse, "--model", str(tiny_model_path), "--threshold", "0")
    try:
        listener.wait_ready()
        play(pulse, wav)
        time.sleep(1.0)  # the last word's hangover and decode
    finally:
        code, events, err = listener.stop()
    assert code == 0, err
    finals = [e for e in events if e["type"] != "partial"]
    assert [e["type"] for e in finals] == ["command"] * 3, err
    gaps = np.diff([e["start"] for e in finals])
    assert np.allclose(gaps, np.diff(starts), atol=0.1), finals
    assert all(e["end"] > e["start"] and 0 <= e["latency"] < 2 for e in finals)
    assert "stopped after" in err and "3 command(s)" in err


def test_audio_server_vanishing_mid_stream(tiny_model_path):
    with pulse_server() as (env, server):
        listener = Listener(env, "--model", str(tiny_model_path))
        try:
            listener.wait_ready()
            time.sleep(0.5)
            server.kill()  # the microphone goes away under the running listener
            server.wait()
            listener.proc.wait(timeout=20)
        finally:
            code, events, err = listener.stop()
    assert code == 1, err
    assert re.search(r"input device \d+ 'pulse' stopped after", err), err
    assert "Traceback" not in err and events == []


def test_listen_through_pulseaudio_spoken_commands(pulse, tmp_path):
    from speechrnn.recognizer import Recognizer
    from speechrnn.session import bundled_model_path

    if not bundled_model_path().exists():
        pytest.skip(f"needs the trained model at {bundled_model_path()} (not bundled yet)")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it speaks the test commands")
    spoken = ["left", "stop", "yes", "down", "go", "right"]
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    commands = tmp_path / "commands.txt"
    commands.write_text("\n".join(words))
    recognizer = Recognizer(None, words)
    parts, expected = [], []
    for i, word in enumerate(spoken):
        path = tmp_path / f"{i}.wav"
        _run(["espeak-ng", "-s", "140", "-w", str(path), word], None, check=True)
        audio, rate = sf.read(path, dtype="float32")
        parts += [np.zeros(int(0.8 * rate), np.float32), audio]
        expected.append(recognizer.transcribe(path).text)
    right = [w for w, e in zip(spoken, expected, strict=True) if w == e]
    if len(right) < len(spoken) // 2:
        pytest.skip(f"the bundled model ({recognizer.info.model_version}) recognizes only "
                    f"{right} of {spoken} spoken alone; too weak for this check")
    wav = tmp_path / "spoken.wav"
    sf.write(wav, np.concatenate(parts + [np.zeros(int(0.8 * rate), np.float32)]), rate)
    listener = Listener(pulse, "--commands", str(commands))
    try:
        listener.wait_ready()
        play(pulse, wav)
        time.sleep(1.0)
    finally:
        code, events, err = listener.stop()
    assert code == 0, err
    got = [e["text"] for e in events if e["type"] == "command"]
    # Every command that comes out was spoken, in the order it was played, and nothing
    # that batch transcription finds in a word alone is missed (streaming may also accept
    # a word that batch rejected, since it sees the word in context).
    assert is_subsequence(got, spoken), (got, spoken)
    assert is_subsequence([e for e in expected if e], got), (got, expected)




def test_record_through_pulseaudio(pulse, tmp_path):
    """`speechrnn record` cuts takes from a real audio stack and stops once it has them."""
    wav = tmp_path / "words.wav"
    tone_words(wav)
    out = tmp_path / "my_voice"
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechrnn", "record", "stop", "go", "--takes", "1",
         "--device", "pulse", "--out", str(out)],
        env=pulse, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    ready = threading.Event()

    def read_err():
        for line in proc.stderr:
            err.append(line)
            if line.startswith("recording from"):
                ready.set()

    reader = threading.Thread(target=read_err, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), "".join(err)
        play(pulse, wav)  # three bursts: the first two are the takes
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    assert proc.returncode == 0, "".join(err)
    for command in ("stop", "go"):
        audio, rate = sf.read(out / command / "01.wav")
        assert rate == 16000 and 0.4 < len(audio) / rate < 1.2
    assert "done: 2 take(s) saved" in "".join(err)
