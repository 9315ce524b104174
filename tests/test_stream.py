"""The streaming engine on synthetic block streams: separate events in order, the same
events whatever the block sizes, nothing from noise, partials, times and latencies."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from speechrnn.stream import Event, Hypothesis, Partial, StreamEngine, file_blocks, listen
from tests.signals import SR, is_subsequence, silence, white, word

WORDS = {140.0: "left", 200.0: "right", 110.0: "stop"}  # f0 of a synthetic word -> its name


class FakeDecoder:
    """Names a synthetic word by its fundamental; anything else is rejected."""

    def __init__(self, certain: bool = True):
        self.certain = certain
        self.finals = 0
        self.partials = 0

    @staticmethod
    def name(audio: np.ndarray) -> str | None:
        if len(audio) < 800:
            return None
        spectrum = np.abs(np.fft.rfft((audio - audio.mean()) * np.hanning(len(audio))))
        freqs = np.fft.rfftfreq(len(audio), 1 / SR)
        peak = int(np.argmax(spectrum[1:])) + 1
        if spectrum[peak] < 20 * np.median(spectrum[1:]):  # not tonal: noise
            return None
        f0 = min(WORDS, key=lambda f: abs(f - freqs[peak]))
        return WORDS[f0] if abs(f0 - freqs[peak]) < 8 else None

    @staticmethod
    def tonal(audio: np.ndarray) -> np.ndarray:
        """Which 30 ms frames hold a clear harmonic peak: where the 'model' hears speech."""
        n = len(audio) // 480
        frames = audio[: n * 480].reshape(n, 480)
        spectrum = np.abs(np.fft.rfft(frames * np.hanning(480), axis=1))[:, 1:]
        return spectrum.max(axis=1) > 12 * np.median(spectrum, axis=1)

    def partial(self, audio):
        self.partials += 1
        name = self.name(audio)
        spoken = np.flatnonzero(self.tonal(audio))
        end = (spoken[-1] + 1) * 0.03 if len(spoken) else None
        return Partial(name or "", 0.5, end)

    def final(self, audio):
        self.finals += 1
        name = self.name(audio)
        if name is None:
            return Hypothesis("mumble", 0.1, accepted=False, heard=bool(self.tonal(audio).any()))
        return Hypothesis(name, 0.9, accepted=True, certain=self.certain)


def commands_audio(pause: float = 0.6):
    parts = [silence(1.0), word(0.6, 140), silence(pause), word(0.7, 200, -26),
             silence(pause), word(0.5, 110, -16), silence(1.0)]
    spans, at = [], 0
    for i, p in enumerate(parts):
        if i % 2:
            spans.append((at / SR, (at + len(p)) / SR))
        at += len(p)
    return np.concatenate(parts), spans


def blocks_of(audio, size):
    return [audio[i:i + size] for i in range(0, len(audio), size)]


def run(audio, size=800, **kw):
    decoder = kw.pop("decoder", None) or FakeDecoder()
    engine = StreamEngine(decoder=decoder, **kw)
    return list(engine.run(blocks_of(audio, size)))


def finals(events):
    return [e for e in events if e.type != "partial"]


@pytest.mark.parametrize("certain", [True, False])
def test_commands_with_pauses_come_out_separately_in_order(certain):
    audio, spans = commands_audio()
    events = run(audio, decoder=FakeDecoder(certain=certain))
    done = finals(events)
    assert [(e.type, e.text) for e in done] == [("command", "left"), ("command", "right"),
                                                ("command", "stop")]
    for e, (start, end) in zip(done, spans, strict=True):
        assert abs(e.start - start) < 0.05 and abs(e.end - end) < 0.08
        assert e.confidence == pytest.approx(0.9)


def test_partials_come_before_their_final():
    audio, spans = commands_audio()
    events = run(audio)
    partials = [e for e in events if e.type == "partial"]
    assert partials, "no partial events"
    # Each word's partial is emitted while it is spoken: after the previous final.
    order = [e.text for e in events]
    assert order.index("left") < order.index("right") < order.index("stop")
    for e in partials:
        owner = next(s for s in spans if s[0] - 0.05 <= e.start <= s[1])
        assert e.end <= owner[1] + 0.15
        assert e.text == {spans[0]: "left", spans[1]: "right", spans[2]: "stop"}[owner]


@pytest.mark.parametrize("size", [1, 7, 160, 333, 1024, 4801, 10**7])
def test_block_sizes_give_the_same_events(size):
    audio, _ = commands_audio()
    reference = [(e.type, e.text, e.start, e.end) for e in run(audio, size=320)]
    assert [(e.type, e.text, e.start, e.end) for e in run(audio, size=size)] == reference


@pytest.mark.parametrize("background", [
    silence(5.0), white(5.0, -30.0), white(5.0, -70.0),
    np.full(5 * SR, 0.5, np.float32) + white(5.0, -55.0),
], ids=["silence", "noise", "quiet-noise", "dc-offset"])
def test_backgrounds_give_no_events(background):
    decoder = FakeDecoder()
    assert run(background, decoder=decoder) == []
    assert decoder.finals == 0 and decoder.partials == 0


def test_command_over_noise_is_found():
    audio, spans = commands_audio()
    events = finals(run(audio + white(len(audio) / SR, -40.0) + 0.2))
    assert [e.text for e in events] == ["left", "right", "stop"]


def test_unknown_speech_is_rejected():
    audio = np.concatenate([silence(1.0), word(0.6, 300.0), silence(1.0)])
    events = finals(run(audio))
    assert [(e.type, e.text) for e in events] == [("rejected", "mumble")]


def test_noise_the_model_does_not_hear_as_speech_gives_no_rejection():
    audio = np.concatenate([silence(1.0), white(0.5, -20.0), silence(1.0)])
    decoder = FakeDecoder()
    assert run(audio, decoder=decoder) == []
    assert decoder.finals == 1  # the VAD took it for speech; the model heard nothing


def warbling(seconds: float, level_db: float = -32.0) -> np.ndarray:
    """Noise swelling and fading 20 dB eight times a second: the VAD never hears an end."""
    noise = white(seconds, level_db, seed=5)
    t = np.arange(len(noise)) / SR
    return noise * (10 ** (np.sin(2 * np.pi * 8 * t) - 0.5))


def test_model_endpoint_ends_a_command_the_vad_cannot():
    audio = np.concatenate([silence(1.0), word(0.6, 140, -18), silence(3.0)])
    audio[SR:] += warbling(3.6)[: len(audio) - SR]
    spans = (1.0, 1.6)
    events = finals(simulated(audio, FakeDecoder()))
    assert [e.text for e in events][:1] == ["left"]
    first = events[0]
    assert abs(first.start - spans[0]) < 0.1 and abs(first.end - spans[1]) < 0.1
    assert first.latency < 0.9  # the model's blank stretch plus a partial interval
    # The VAD alone would hold the segment open as long as the noise lasts.
    stuck = finals(simulated(audio, FakeDecoder(), model_endpoint=None))
    assert stuck[0].end > 4.0


@pytest.mark.parametrize("size", [7, 1024, 10**7])
def test_model_endpoint_does_not_depend_on_block_sizes(size):
    audio = np.concatenate([silence(1.0), word(0.6, 140, -18), silence(0.5), word(0.5, 200),
                            silence(2.0)])
    audio[SR:] += warbling(4.0)[: len(audio) - SR]
    reference = [(e.type, e.text, e.start, e.end) for e in run(audio, size=800)]
    assert [e.text for e in finals(run(audio, size=800))][:2] == ["left", "right"]
    assert [(e.type, e.text, e.start, e.end) for e in run(audio, size=size)] == reference


def test_without_partial_events_the_decisions_are_the_same():
    audio = np.concatenate([silence(1.0), word(0.6, 140, -18), silence(0.5), word(0.5, 200),
                            silence(2.0)])
    audio[SR:] += warbling(4.0)[: len(audio) - SR]
    live, batch = FakeDecoder(), FakeDecoder()
    reference = run(audio, decoder=live)
    quiet = run(audio, decoder=batch, partials=False)
    assert [e.text for e in finals(reference)][:2] == ["left", "right"]  # model endpoints
    key = lambda events: [(e.type, e.text, e.start, e.end, e.confidence)  # noqa: E731
                          for e in events]
    assert key(quiet) == key(finals(reference))
    assert 0 < batch.partials < live.partials
    assert key(finals(run(audio, model_endpoint=None))) != key(finals(reference))


def test_certain_results_skip_the_hangover_and_split_short_pauses():
    audio, _ = commands_audio(pause=0.2)  # shorter than the 0.3 s hangover
    assert len(finals(run(audio, decoder=FakeDecoder(certain=True)))) == 3
    # Without certainty the engine must wait out the hangover, so the pause joins words.
    assert len(finals(run(audio, decoder=FakeDecoder(certain=False)))) < 3


def simulated(audio, decoder, size=800, **kw):
    """Runs the engine with block k arriving at the stream time of its last sample and
    a clock that reads the arrival of the block being processed."""
    now = [0.0]
    engine = StreamEngine(decoder=decoder, clock=lambda: now[0], **kw)
    events = []
    for i in range(0, len(audio), size):
        now[0] = (i + size) / SR
        events += engine.process(audio[i:i + size], arrival=now[0])
    return events + engine.flush()


def test_latency_is_the_silence_waited_for():
    audio, spans = commands_audio()
    for certain, waited in ((True, 0.1), (False, 0.3)):
        for e in finals(simulated(audio, FakeDecoder(certain=certain))):
            # From the block holding the end of speech to the block where it was decided.
            assert waited - 0.06 <= e.latency <= waited + 0.06, (certain, e)


def test_latency_counts_processing_time():
    class Slow(FakeDecoder):
        def final(self, audio):
            time.sleep(0.05)
            return super().final(audio)

    audio, _ = commands_audio()
    for e in finals(run(audio, size=len(audio), decoder=Slow())):
        assert e.latency >= 0.05


def test_event_to_dict_is_json():
    e = Event("command", "turn on the light", 0.91234567, 1.2345678, 2.5, 0.1234567)
    d = e.to_dict()
    assert list(d) == ["type", "text", "confidence", "start", "end", "latency"]
    assert json.loads(json.dumps(d)) == {"type": "command", "text": "turn on the light",
                                         "confidence": 0.9123, "start": 1.235, "end": 2.5,
                                         "latency": 0.1235}


def test_engine_needs_a_model():
    with pytest.raises(TypeError):
        StreamEngine()
    with pytest.raises(ValueError, match="16000"):
        StreamEngine(decoder=FakeDecoder(), sample_rate=8000)


def test_listen_plays_a_file_through_the_engine(tmp_path):
    audio, _ = commands_audio()
    path = tmp_path / "commands.wav"
    sf.write(path, audio, SR)
    events = list(listen(None, input=path, decoder=FakeDecoder()))
    assert [e.text for e in finals(events)] == ["left", "right", "stop"]


def test_file_blocks_realtime_pacing(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(4000, np.float32), 8000)  # 0.5 s at 8 kHz
    t0 = time.monotonic()
    blocks = list(file_blocks(path, block_seconds=0.1, realtime=True))
    assert time.monotonic() - t0 >= 0.45
    assert sum(len(b) for b, _ in blocks) == 8000
    assert all(a[1] <= b[1] for a, b in zip(blocks, blocks[1:], strict=False))


# -- with real models ----------------------------------------------------------------


def test_tiny_model_runs_in_the_engine(tiny_model_path):
    from speechrnn.recognizer import Recognizer
    from speechrnn.stream import SegmentDecoder

    decoder = SegmentDecoder(Recognizer(tiny_model_path, ["yes", "no", "stop"], threshold=0.0))
    audio, _ = commands_audio()
    events = run(audio, decoder=decoder)
    done = finals(events)
    assert len(done) == 3
    assert all(e.type == "command" and e.text in {"yes", "no", "stop"} for e in done)
    for e in events:
        json.dumps(e.to_dict())


def bundled_model():
    from speechrnn.session import bundled_model_path

    path = bundled_model_path()
    if not path.exists():
        pytest.skip(f"needs the trained model at {path} (not bundled yet)")
    return path


def espeak(text: str, path, rate: int = 140) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it makes the spoken test audio")
    subprocess.run(["espeak-ng", "-s", str(rate), "-w", str(path), text], check=True)
    from speechrnn.audio import read_audio

    return read_audio(path)


SPOKEN = ["left", "stop", "yes", "down", "go", "right"]
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def recognized_alone(recognizer, tmp_path, words):
    """Each word spoken by espeak-ng, and what batch transcription makes of it alone;
    skips when the bundled model is too weak to recognize most of them."""
    clips = [espeak(w, tmp_path / f"{i}.wav") for i, w in enumerate(words)]
    batch = [recognizer.transcribe(clip).text for clip in clips]
    right = [w for w, b in zip(words, batch, strict=True) if w == b]
    if len(right) < len(words) // 2:
        pytest.skip(f"the bundled model ({recognizer.info.model_version}) recognizes only "
                    f"{right} of {words} spoken alone; too weak for this check")
    return clips, batch


def test_trained_model_streams_what_batch_finds_in_order(tmp_path):
    from speechrnn.recognizer import Recognizer

    recognizer = Recognizer(bundled_model(), COMMANDS)
    clips, batch = recognized_alone(recognizer, tmp_path, SPOKEN)
    parts = [silence(0.8)]
    for clip in clips:
        parts += [clip, silence(0.6)]
    events = list(StreamEngine(recognizer).run(blocks_of(np.concatenate(parts), 800)))
    got = [e.text for e in events if e.type == "command"]
    # Nothing batch finds in a word alone is missed, and every command that comes out was
    # spoken, in order (in context, streaming may also accept a word batch rejected).
    assert is_subsequence([b for b in batch if b], got), (got, batch)
    assert is_subsequence(got, SPOKEN), (got, SPOKEN)


class FakeRecognizer:
    """Just what SegmentDecoder reads from a Recognizer, with a scripted verdict."""

    def __init__(self, commands, verdict, threshold=0.5):
        from speechrnn.recognizer import Result

        self.commands = commands
        self.threshold = threshold
        self.result = Result(*verdict)
        self.session = SimpleNamespace(
            info=SimpleNamespace(tokens=("<blank>", " ", "a"), blank_index=0, frame_rate=100.0),
            log_probs=lambda audio: np.log(np.full((5, 3), 1 / 3)))

    def decode(self, log_probs):
        return self.result


@pytest.mark.parametrize("commands, verdict, early, expected", [
    (["stop", "go"], ("stop", 0.9, "stop"), 0.0, ("stop", True, True)),
    (["stop", "go"], ("stop", 0.6, "stop"), 0.8, ("stop", True, False)),
    (["stop", "go"], ("", 0.3, "go"), 0.0, ("go", False, False)),
    (["turn on", "turn on the light"], ("turn on", 0.99, "turn on"), 0.0,
     ("turn on", True, False)),
    (["turn on", "turn on the light"], ("turn on the light", 0.99, "turn on the light"), 0.0,
     ("turn on the light", True, True)),
    ([], ("hello there", 0.7, "hello there"), 0.0, ("hello there", True, False)),
])
def test_segment_decoder_verdicts(commands, verdict, early, expected):
    from speechrnn.stream import SegmentDecoder

    decoder = SegmentDecoder(FakeRecognizer(commands, verdict), early_confidence=early)
    h = decoder.final(np.zeros(1600, np.float32))
    assert (h.text, h.accepted, h.certain) == expected
    partial = decoder.partial(np.zeros(1600, np.float32))
    assert partial.text == "" and 0 < partial.confidence <= 1 and partial.speech_end is None


def long_commands_audio():
    # Some pauses shorter than the VAD's hangover: only a certain result splits them.
    parts = [silence(1.0)]
    for i, (f0, pause) in enumerate([(140.0, 2.6), (200.0, 0.2), (110.0, 2.6), (170.0, 0.25),
                                     (125.0, 2.6)]):
        parts += [word(0.6, f0, -20 - 2 * i, seed=i), silence(pause)]
    return np.concatenate(parts)


def test_streaming_matches_batch_transcribe(tiny_model_path, tmp_path):
    from speechrnn.recognizer import Recognizer

    recognizer = Recognizer(tiny_model_path, ["yes", "no", "stop", "go"], threshold=0.0)
    audio = long_commands_audio()
    assert len(audio) > 10 * SR  # transcribe splits files this long by voice activity
    sf.write(tmp_path / "long.wav", audio, SR, subtype="FLOAT")
    batch = recognizer.transcribe(audio).segments
    assert recognizer.transcribe(tmp_path / "long.wav").segments == batch
    streamed = [e for e in StreamEngine(recognizer).run(blocks_of(audio, 800))
                if e.type == "command"]
    assert len(batch) == len(streamed) == 5
    for b, s in zip(batch, streamed, strict=True):
        assert (b.text, b.start, b.end) == (s.text, round(s.start, 3), round(s.end, 3))
        assert b.confidence == pytest.approx(s.confidence, abs=1e-3)


def test_recognizer_listen_on_a_file(tiny_model_path, tmp_path):
    from speechrnn.recognizer import Recognizer

    audio, _ = commands_audio()
    path = tmp_path / "commands.flac"
    sf.write(path, audio, SR)
    events = list(Recognizer(tiny_model_path, ["yes", "no"], threshold=0.0).listen(input=path))
    assert [e.type for e in finals(events)] == ["command"] * 3


def _streaming_wav(samples: np.ndarray, rate: int) -> bytes:
    """16-bit mono WAV as a live recorder writes it to a pipe: sizes unknown (0xFFFFFFFF)."""
    import struct

    header = (b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
              + b"data" + struct.pack("<I", 0xFFFFFFFF))
    return header + (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


@pytest.mark.parametrize("rate", [16000, 44100])
def test_listen_reads_a_recording_piped_in_as_it_arrives(rate):
    """`arecord -t wav | speechrnn listen --input -`: the stream's length is unknown, and
    the command comes out before the writer has finished."""
    import sys

    from speechrnn.audio import resample

    samples = Path(__file__).resolve().parent.parent / "samples"
    stop, _ = sf.read(samples / "stop.wav", dtype="float32")
    audio = np.concatenate([silence(1.0), stop, silence(6.0)])
    data = _streaming_wav(resample(audio, SR, rate), rate)
    proc = subprocess.Popen([sys.executable, "-m", "speechrnn", "listen", "--input", "-",
                             "--jsonl", "--commands", str(samples / "commands.txt")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    import threading

    watchdog = threading.Timer(60, proc.kill)  # a reader waiting for EOF fails, not hangs
    watchdog.start()
    cut = len(data) - 2 * rate * 4  # all but the last 4 s of silence
    proc.stdin.write(data[:cut])
    proc.stdin.flush()
    line = proc.stdout.readline()  # arrives while stdin is still open
    assert line, "no event before the end of the stream"
    first = json.loads(line)
    assert first["type"] in ("partial", "command")
    proc.stdin.write(data[cut:])
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=60)
    watchdog.cancel()
    events = [first] + [json.loads(line) for line in out.decode().splitlines()]
    assert proc.returncode == 0, err.decode()
    commands = [e for e in events if e["type"] == "command"]
    assert [e["text"] for e in commands] == ["stop"]
    assert 1.0 <= commands[0]["start"] < commands[0]["end"] <= 1.0 + len(stop) / SR + 0.05


def test_listen_names_standard_input_that_is_no_recording():
    import sys

    proc = subprocess.run([sys.executable, "-m", "speechrnn", "listen", "--input", "-"],
                          input=b"not audio\n", capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert b"standard input is not a readable audio stream" in proc.stderr
