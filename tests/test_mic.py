"""The microphone and the listen/devices commands against a fake sounddevice: device
choice, resampling, overflows, a vanishing device, Ctrl-C, and clear one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from speechrnn import cli, mic
from speechrnn.audio import resample
from speechrnn.mic import MicError, Microphone, find_device, list_devices
from tests.signals import at_best_scale, voiced


class PortAudioError(Exception):
    pass


class FakeStream:
    """Delivers `audio` in blocks from a thread, as PortAudio's callback would."""

    def __init__(self, sd, device, samplerate, channels, dtype, blocksize, callback,
                 finished_callback):
        self.sd, self.callback, self.finished = sd, callback, finished_callback
        self.blocksize, self.channels = blocksize, channels
        self.active = False
        self.closed = False
        sd.streams.append(self)

    def start(self):
        if self.sd.interrupt_on_start:
            raise KeyboardInterrupt
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        audio = self.sd.audio
        if audio.ndim == 1:
            audio = audio[:, None]
        audio = np.repeat(audio, self.channels, axis=1) if audio.shape[1] < self.channels \
            else audio[:, :self.channels]
        for n, i in enumerate(range(0, len(audio), self.blocksize)):
            if not self.active:
                return
            status = SimpleNamespace(input_overflow=n in self.sd.overflow_blocks)
            block = audio[i:i + self.blocksize].astype(np.float32)
            self.callback(block, len(block), None, status)
            time.sleep(self.sd.block_sleep)
        if self.sd.after == "vanish":
            self.active = False
            self.finished()
        elif self.sd.after == "interrupt":
            time.sleep(0.2)
            # A real SIGINT, as Ctrl-C sends: unlike _thread.interrupt_main() it also
            # wakes a main thread blocked waiting for audio.
            os.kill(os.getpid(), signal.SIGINT)
        # "stall": stays active and silent, like a device that hangs

    def abort(self):
        self.active = False

    def close(self):
        self.closed = True


class FakeSD:
    PortAudioError = PortAudioError

    def __init__(self, devices=None, default=1, audio=None, rates=None):
        self.devices = devices if devices is not None else [
            {"index": 0, "name": "HDA Intel PCH: ALC3246 Analog (hw:0,0)", "hostapi": 0,
             "max_input_channels": 2, "max_output_channels": 2, "default_samplerate": 48000.0},
            {"index": 1, "name": "default", "hostapi": 0, "max_input_channels": 32,
             "max_output_channels": 32, "default_samplerate": 44100.0},
            {"index": 2, "name": "HDMI 0 (hw:1,3)", "hostapi": 0, "max_input_channels": 0,
             "max_output_channels": 8, "default_samplerate": 48000.0},
            {"index": 3, "name": "USB Audio Device (hw:2,0)", "hostapi": 0,
             "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 16000.0},
        ]
        self.default = SimpleNamespace(device=[default, default])
        self.audio = audio if audio is not None else np.zeros(4800, np.float32)
        self.refuse = rates or set()  # device indices that refuse their rate
        self.overflow_blocks: set[int] = set()
        self.block_sleep = 0.001
        self.after = "stall"
        self.interrupt_on_start = False
        self.streams: list[FakeStream] = []

    def query_devices(self):
        return self.devices

    def query_hostapis(self):
        return ({"name": "ALSA"},)

    def check_input_settings(self, device, channels, dtype, samplerate):
        if device in self.refuse:
            raise PortAudioError("Invalid sample rate [PaErrorCode -9997]")
        if channels > self.devices[device]["max_input_channels"]:
            raise PortAudioError("Invalid number of channels [PaErrorCode -9998]")

    def InputStream(self, **kw):  # noqa: N802 (sounddevice's name)
        return FakeStream(self, **kw)


@pytest.fixture
def sd(monkeypatch):
    fake = FakeSD()
    monkeypatch.setattr(mic, "_sounddevice", lambda: fake)
    return fake


def sine(seconds, rate, freq=440.0, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def take(microphone, samples):
    got = []
    for block, _ in microphone:
        got.append(block)
        if sum(len(b) for b in got) >= samples:
            break
    return np.concatenate(got)


# -- choosing a device ---------------------------------------------------------------


def test_list_devices_shows_inputs_and_the_default(sd):
    devices = list_devices()
    assert [d.index for d in devices] == [0, 1, 3]
    assert [d.is_default for d in devices] == [False, True, False]
    assert devices[0].sample_rate == 48000 and devices[0].channels == 2
    assert devices[0].hostapi == "ALSA"


@pytest.mark.parametrize("wanted, index", [
    (None, 1), (0, 0), ("3", 3), ("default", 1), ("usb", 3), ("ALC3246", 0),
])
def test_find_device(sd, wanted, index):
    assert find_device(wanted).index == index


@pytest.mark.parametrize("wanted, words", [
    (7, "no input device with index 7"),
    (2, "no input device with index 2"),  # an output-only device
    ("webcam", "no input device named 'webcam'"),
    ("hw:", "matches several input devices"),
])
def test_unknown_device_is_one_sentence(sd, wanted, words):
    with pytest.raises(MicError, match=words) as e:
        find_device(wanted)
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value)


def test_no_devices(sd):
    sd.devices = []
    with pytest.raises(MicError, match="no audio input device") as e:
        find_device(None)
    assert e.value.exit_code == 2


def test_missing_default_falls_back_to_first_input(sd):
    sd.default.device = [-1, -1]
    assert find_device(None).index == 0


def test_rate_refused(sd):
    sd.refuse = {0}
    with pytest.raises(MicError, match="refuses to record at its own rate of 48000 Hz") as e:
        Microphone(0).__enter__()
    assert e.value.exit_code == 2


def test_portaudio_missing(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_portaudio(name, *args, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(MicError, match="PortAudio library is not installed"):
        list_devices()


def test_package_does_not_import_sounddevice():
    code = ("import sys, speechrnn, speechrnn.stream, speechrnn.vad, speechrnn.mic, "
            "speechrnn.cli_listen, speechrnn.cli; cli = speechrnn.cli.build_parser(); "
            "print('sounddevice' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


# -- capturing ------------------------------------------------------------------------


@pytest.mark.parametrize("rate, channels", [(48000, 2), (44100, 1), (16000, 1)])
def test_blocks_are_16k_mono(sd, rate, channels):
    sd.devices[0].update(default_samplerate=float(rate), max_input_channels=channels)
    sd.audio = sine(1.0, rate, channels=channels)
    with Microphone(0, block_seconds=0.05) as m:
        audio = take(m, 15000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert m.device.sample_rate == rate
    spectrum = np.abs(np.fft.rfft(audio[2000:14000]))
    peak = np.fft.rfftfreq(12000, 1 / 16000)[np.argmax(spectrum)]
    assert abs(peak - 440) < 3
    assert 0.3 < np.abs(audio[2000:14000]).max() < 0.6
    assert sd.streams[-1].closed


def test_a_microphone_that_clips_has_its_peaks_rebuilt_before_resampling(sd):
    voice = voiced(1.0, rate=48000)
    sd.audio = np.clip(voice, -0.7, 0.7)  # driven into clipping at 48 kHz
    with Microphone(0, block_seconds=0.05) as m:
        audio = take(m, 15000)[2000:14000]
    target = resample(voice, 48000)[2000:14000]
    as_is = resample(sd.audio, 48000)[2000:14000]
    assert (np.mean((at_best_scale(audio, target) - target) ** 2)
            < 0.1 * np.mean((at_best_scale(as_is, target) - target) ** 2))


def test_overflows_are_counted_not_fatal(sd):
    sd.audio = sine(1.0, 48000, channels=2)
    sd.overflow_blocks = {2, 5, 9}
    with Microphone(0, block_seconds=0.05) as m:
        audio = take(m, 15500)
    assert len(audio) >= 15500
    assert m.overflows == 3


def test_reader_falling_behind_drops_and_counts(sd):
    sd.audio = sine(1.0, 48000)
    sd.block_sleep = 0
    with Microphone(0, block_seconds=0.05, max_queue_seconds=0.2) as m:
        time.sleep(0.3)  # the reader is busy; only 4 blocks fit in the queue
        assert m.overflows >= 10
        take(m, 1000)


def test_device_vanishing_mid_stream(sd):
    sd.audio = sine(0.5, 48000, channels=2)
    sd.after = "vanish"
    with pytest.raises(MicError, match="stopped after 0.5 s of recording") as e:
        with Microphone(0) as m:
            for _ in m:
                pass
    assert e.value.exit_code == 1
    assert sd.streams[-1].closed


def test_device_going_silent(sd):
    sd.audio = sine(0.2, 48000)
    with pytest.raises(MicError, match="sent no audio for 0.3 s") as e:
        with Microphone(0, stall_seconds=0.3) as m:
            for _ in m:
                pass
    assert e.value.exit_code == 1


def test_device_sending_nothing_at_all(sd, monkeypatch):
    sd.audio = np.zeros(0, np.float32)
    monkeypatch.setattr(mic, "FIRST_BLOCK_SECONDS", 0.6)
    t0 = time.monotonic()
    with pytest.raises(MicError, match="sent no audio for 0.3 s after 0.0 s") as e:
        with Microphone(0, stall_seconds=0.3) as m:
            for _ in m:
                pass
    assert e.value.exit_code == 1
    assert time.monotonic() - t0 >= 0.55  # a first block gets more time than the others


def test_listen_api_on_a_microphone_releases_it(sd):
    from speechrnn.stream import Hypothesis, Partial, listen

    class Decoder:
        def partial(self, audio):
            return Partial("", 0.0)

        def final(self, audio):
            return Hypothesis("go", 1.0, accepted=True, certain=True)

    sd.audio = words_audio(48000)
    events = listen(None, device="ALC3246", decoder=Decoder())
    finals = []
    for event in events:
        finals.append(event)
        if len(finals) == 2:
            break
    events.close()
    assert [(e.type, e.text) for e in finals] == [("command", "go")] * 2
    assert sd.streams[-1].closed


def test_ctrl_c_during_start_up_releases_the_stream(sd):
    sd.interrupt_on_start = True
    with pytest.raises(KeyboardInterrupt):
        with Microphone(0):
            pass
    assert sd.streams[-1].closed


def test_open_failure_is_one_sentence(sd, monkeypatch):
    def busy(**kw):
        raise PortAudioError("Device unavailable [PaErrorCode -9985]")

    monkeypatch.setattr(sd, "InputStream", busy)
    with pytest.raises(MicError, match=r"cannot open input device 0 .* at 48000 Hz "
                                       r"\(Device unavailable \[PaErrorCode -9985\]\)") as e:
        Microphone(0).__enter__()
    assert e.value.exit_code == 2


# -- the commands -------------------------------------------------------------------


def test_devices_command(sd, capsys):
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["index", "name", "rate", "channels", "host", "API"]
    assert [line[0] for line in out[1:4]] == [" ", "*", " "]
    assert "44100" in out[2] and "HDMI" not in "".join(out)
    assert cli.main(["devices", "--jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["default"] for r in rows] == [False, True, False]


def test_devices_command_without_devices(sd, capsys):
    sd.devices = []
    assert cli.main(["devices"]) == 2
    assert "no audio input device" in capsys.readouterr().err


def words_audio(rate):
    """Two tone bursts with silence around: two segments for the VAD."""
    parts = []
    for _ in range(2):
        parts += [np.zeros(int(0.8 * rate), np.float32), sine(0.5, rate, 180.0) * 0.2]
    return np.concatenate(parts + [np.zeros(int(0.8 * rate), np.float32)])


def test_listen_jsonl_then_ctrl_c(sd, tiny_model_path, capsys):
    sd.audio = words_audio(48000)
    sd.overflow_blocks = {3}
    sd.after = "interrupt"
    code = cli.main(["listen", "--model", str(tiny_model_path), "--device", "ALC3246",
                     "--jsonl", "--threshold", "0"])
    assert code == 0
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    finals = [e for e in events if e["type"] != "partial"]
    assert len(finals) == 2 and all(e["type"] == "command" for e in finals)
    assert all(set(e) == {"type", "text", "confidence", "start", "end", "latency"}
               for e in events)
    assert "stopped after 3.4 s: 2 command(s), 0 rejected, 1 overflow(s)" in err
    assert sd.streams[-1].closed


def test_listen_device_lost_exits_1(sd, tiny_model_path, capsys):
    sd.audio = words_audio(48000)[:48000]
    sd.after = "vanish"
    assert cli.main(["listen", "--model", str(tiny_model_path), "--device", "0"]) == 1
    err = capsys.readouterr().err
    assert "input device 0 'HDA Intel PCH: ALC3246 Analog (hw:0,0)' stopped after 1.0 s" in err


def test_listen_ctrl_c_during_start_up(sd, tiny_model_path, capsys):
    sd.interrupt_on_start = True
    assert cli.main(["listen", "--model", str(tiny_model_path)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "stopped after 0.0 s: 0 command(s), 0 rejected, 0 overflow(s)" in err
    assert sd.streams[-1].closed


@pytest.mark.parametrize("argv, words", [
    (["--device", "webcam"], "no input device named 'webcam'"),
    (["--device", "9"], "no input device with index 9"),
])
def test_listen_bad_device_exits_2(sd, tiny_model_path, capsys, argv, words):
    assert cli.main(["listen", "--model", str(tiny_model_path), *argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and words in err and "Traceback" not in err


def test_listen_rate_refused_exits_2(sd, tiny_model_path, capsys):
    sd.refuse = {1}
    assert cli.main(["listen", "--model", str(tiny_model_path)]) == 2
    assert "refuses to record at its own rate of 44100 Hz" in capsys.readouterr().err


def test_listen_default_threshold_is_the_recognizers():
    from speechrnn import cli_listen, recognizer

    assert cli_listen.DEFAULT_THRESHOLD == recognizer.DEFAULT_THRESHOLD


def test_listen_bad_model_or_input_exits_2(tmp_path, capsys):
    assert cli.main(["listen", "--model", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["silence", "dc-offset", "dc-offset-negative"])
def test_listen_device_delivering_silence_or_dc_gives_no_events(sd, tiny_model_path, capsys,
                                                                kind):
    # Threshold 0 accepts anything the VAD passes on, so a false segment shows as an event.
    level = {"silence": 0.0, "dc-offset": 0.3, "dc-offset-negative": -0.6}[kind]
    rng = np.random.default_rng(0)
    sd.audio = (level + rng.standard_normal(6 * 48000) * 1e-4 * (level != 0)
                ).astype(np.float32)
    sd.after = "interrupt"
    code = cli.main(["listen", "--model", str(tiny_model_path), "--device", "0", "--jsonl",
                     "--threshold", "0"])
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    assert "stopped after 6.0 s: 0 command(s), 0 rejected, 0 overflow(s)" in err
