"""One Recognizer shared by several threads gives exactly what one thread gives: for
`transcribe` on files (short and long) and arrays, and for a stream engine per thread.

A Recognizer holds no state that decoding changes (the session's onnxruntime run is
thread-safe, the command graph is read-only), so sharing one is safe; an engine
(`StreamEngine`, `listen`) is one stream's state and belongs to one thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrnn.recognizer import Recognizer
from speechrnn.stream import StreamEngine

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "samples").glob("*.wav"))
THREADS = 4


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer(commands=ROOT / "samples" / "commands.txt")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The samples, a 14 s file holding all of them (the long-file path) and arrays."""
    folder = tmp_path_factory.mktemp("conc")
    clips = [sf.read(p, dtype="float32")[0] for p in SAMPLES]
    rate = sf.info(SAMPLES[0]).samplerate
    gap = np.zeros(int(0.8 * rate), np.float32)
    joined = np.concatenate([x for c in clips for x in (c, gap)] * 2)
    sf.write(folder / "long.wav", joined, rate)
    rng = np.random.default_rng(0)
    arrays = [(clips[0] * 0.5 + rng.standard_normal(len(clips[0])).astype(np.float32) * 0.01,
               rate), (np.stack([clips[1], clips[1]], axis=1), rate)]
    return [str(p) for p in SAMPLES] + [str(folder / "long.wav")] + arrays


def transcribe(recognizer, item) -> dict:
    if isinstance(item, str):
        return recognizer.transcribe(item).to_dict()
    audio, rate = item
    return recognizer.transcribe(audio, sample_rate=rate).to_dict()


def run_threads(work, n: int = THREADS) -> list:
    """work(i) in n threads started together; their results, or the first exception."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def target(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def test_shared_recognizer_transcribes_like_one_thread(recognizer, inputs):
    serial = [transcribe(recognizer, item) for item in inputs]
    assert any(r["segments"] for r in serial), "nothing recognized: the test shows nothing"

    def work(i):
        # Each thread its own order, twice over, so different inputs overlap in time.
        order = list(np.random.default_rng(i).permutation(len(inputs))) * 2
        return [(k, transcribe(recognizer, inputs[k])) for k in order]

    for results in run_threads(work):
        for k, got in results:
            assert got == serial[k], f"thread result differs for input {k}"


def test_one_engine_per_thread_on_a_shared_recognizer(recognizer, inputs):
    audio = sf.read(inputs[len(SAMPLES)], dtype="float32")[0]
    from speechrnn.audio import to_16k_mono

    audio = to_16k_mono(audio, sf.info(inputs[len(SAMPLES)]).samplerate)

    def stream(i):
        size = [800, 1600, 333, 4000][i % 4]  # block sizes differ: events must not
        blocks = (audio[j:j + size] for j in range(0, len(audio), size))
        return [(e.type, e.text, round(e.start, 3), round(e.end, 3))
                for e in StreamEngine(recognizer, clock=lambda: 0.0).run(blocks)]

    serial = stream(0)
    assert serial, "no events: the test shows nothing"
    assert run_threads(stream) == [serial] * THREADS
