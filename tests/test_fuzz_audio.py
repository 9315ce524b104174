"""Fuzzing the audio reader and `transcribe`: random bytes, WAV/FLAC/AU headers with absurd
fields, truncated and oversized files, odd arrays. Every input must end in audio or one
AudioError sentence naming the file (a Transcript with that error from `transcribe`,
exit status 1 from the command), with bounded memory; plus the regressions the fuzzing
found and a short run of the atheris target (fuzz/fuzz_audio.py).
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.inputs import (
    FlacFields,
    WavFields,
    au_bytes,
    check_file,
    flac_bytes,
    seeds,
    wav_bytes,
)
from fuzz.regressions import ARRAY_REGRESSIONS, REGRESSIONS
from speechrnn import cli
from speechrnn.audio import AudioError, read_audio
from speechrnn.recognizer import Recognizer

ROOT = Path(__file__).resolve().parent.parent
SEEDS = seeds()
MEMORY_MB = 300  # growth of the peak resident set any one input may cause

# Examples are not timed (the machine is shared); a hang shows as the test never ending,
# and the atheris run below has a hard per-input timeout.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

pytestmark = pytest.mark.filterwarnings("error")  # a warning on stderr is a finding too


@pytest.fixture(scope="module")
def recognizer():
    return Recognizer()  # the bundled model: real audio paths, no torch needed


def _peak_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return None


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def check_bytes(data: bytes, folder: Path, recognizer) -> str:
    """check_file on `data`, with the peak resident set checked too (where Linux tells)."""
    path = folder / "input.wav"
    path.write_bytes(data)
    _reset_peak()
    before = _peak_mb()
    outcome = check_file(path, recognizer)
    after = _peak_mb()
    if before is not None and after is not None:
        assert after - before < MEMORY_MB, f"{after - before:.0f} MB for one input"
    return outcome


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path, recognizer, data):
    assert check_bytes(data, tmp_path, recognizer) == "error" or len(data) > 4


@FUZZ
@given(name=st.sampled_from(sorted(SEEDS)), cut=st.floats(0, 1), tail=st.binary(max_size=64))
def test_truncated_and_extended_files(tmp_path, recognizer, name, cut, tail):
    data = SEEDS[name]
    check_bytes(data[:int(cut * len(data))] + tail, tmp_path, recognizer)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_valid_seeds_are_read(tmp_path, recognizer, name):
    assert check_bytes(SEEDS[name], tmp_path, recognizer) == "ok"


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_garbage_after_valid_audio_still_reads(tmp_path, recognizer, name):
    if name.startswith("ogg"):
        pytest.skip("Vorbis treats trailing bytes as a damaged page")
    data = SEEDS[name] + np.random.default_rng(0).bytes(3000)
    assert check_bytes(data, tmp_path, recognizer) in ("ok", "error")
    assert len(read_audio(tmp_path / "input.wav")) > 0


def interesting(bits: int, extra: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    edges = [0, 1, 2, 3, 4000, 8000, 16000, 65535, 768000, 768001, 2**31 - 1, *extra]
    return st.one_of(st.sampled_from([e for e in edges if e < 2**bits]),
                     st.integers(0, 2**bits - 1))


wav_fields = st.builds(
    WavFields, format_tag=st.sampled_from([1, 3, 6, 7, 0x11, 0xFFFE, 0, 0xFFFF]),
    channels=interesting(16, (1024, 1025)), sample_rate=interesting(32, (2**32 - 1,)),
    byte_rate=st.none() | interesting(32), block_align=st.none() | interesting(16),
    bits=st.sampled_from([0, 1, 4, 8, 12, 16, 24, 32, 33, 64, 65535]),
    fmt_size=st.sampled_from([16, 18, 40, 14, 0]),
    riff_size=st.none() | interesting(32, (2**32 - 1,)),
    data_size=st.none() | interesting(32, (2**32 - 1,)), junk_chunk=st.booleans())


@FUZZ
@given(fields=wav_fields, payload=st.binary(max_size=4096) | st.just(b"\x01\x02" * 20000))
def test_wav_headers(tmp_path, recognizer, fields, payload):
    check_bytes(wav_bytes(fields, payload), tmp_path, recognizer)


@FUZZ
@given(field=st.sampled_from(["sample_rate", "channels", "data_size", "riff_size",
                              "byte_rate", "block_align"]),
       value=interesting(32, (1024, 65535, 2**32 - 1)), stereo=st.booleans(),
       frames=st.sampled_from([0, 1, 100, 20000]))
def test_valid_wav_with_one_absurd_field(tmp_path, recognizer, field, value, stereo, frames):
    # One field wrong in an otherwise valid header gets much further into the reader
    # than many wrong together.
    fields = WavFields(channels=2 if stereo else 1)
    payload = (np.arange(frames * fields.channels) % 200 - 100).astype("<i2").tobytes()
    setattr(fields, field, value)
    check_bytes(wav_bytes(fields, payload), tmp_path, recognizer)


flac_fields = st.builds(
    FlacFields, min_block=st.none() | interesting(16), max_block=st.none() | interesting(16),
    sample_rate=st.none() | interesting(20), channels=st.none() | st.integers(1, 8),
    bits=st.none() | st.integers(1, 32),
    total_samples=st.none() | interesting(36, (2**36 - 1, 2**32)))


@FUZZ
@given(fields=flac_fields, template=st.sampled_from(["flac", "flac_stereo_48k"]),
       cut=st.none() | st.floats(0, 1))
def test_flac_streaminfo(tmp_path, recognizer, fields, template, cut):
    data = flac_bytes(fields, SEEDS[template])
    check_bytes(data if cut is None else data[:int(cut * len(data))], tmp_path, recognizer)


@FUZZ
@given(encoding=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 27, 2**32 - 1]),
       rate=interesting(32), channels=interesting(32, (1024, 1025)),
       size=interesting(32, (2**32 - 1,)), payload=st.binary(max_size=4096))
def test_au_headers(tmp_path, recognizer, encoding, rate, channels, size, payload):
    check_bytes(au_bytes(encoding, rate, channels, size, payload), tmp_path, recognizer)


# -- what the fuzzing found ------------------------------------------------------------


@pytest.mark.parametrize("case", REGRESSIONS, ids=[r.name for r in REGRESSIONS])
def test_regressions(tmp_path, recognizer, case):
    assert check_bytes(case.build(), tmp_path, recognizer) == "error"
    with pytest.raises(AudioError, match=case.expect):
        read_audio(tmp_path / "input.wav")


@pytest.mark.parametrize("case", ARRAY_REGRESSIONS, ids=[r.name for r in ARRAY_REGRESSIONS])
def test_array_regressions(recognizer, case):
    if case.expect is None:
        t = recognizer.transcribe(case.build())
        assert t.segments == []
        assert t.error is None if case.error is None else case.error in t.error
    else:
        with pytest.raises(ValueError, match=case.expect):
            recognizer.transcribe(case.build())


@pytest.mark.parametrize("rate,ok", [(1, False), (3999, False), (4000, True),
                                     (768000, True), (768001, False)])
def test_sample_rate_limits(tmp_path, rate, ok):
    path = tmp_path / "r.wav"
    path.write_bytes(wav_bytes(WavFields(sample_rate=rate), bytes(4000)))
    if ok:
        assert len(read_audio(path)) == round(2000 * 16000 / rate)
    else:
        with pytest.raises(AudioError, match=f"sample rate of {rate} Hz, outside"):
            read_audio(path)


arrays = st.one_of(
    st.builds(lambda n, c, dt, seed: np.random.default_rng(seed).standard_normal(
        (n, c) if c else n).astype(dt) * 0.1,
        st.integers(0, 40000), st.integers(0, 3), st.sampled_from(["f4", "f8", "f2"]),
        st.integers(0, 9)),
    st.builds(lambda n, dt: np.random.default_rng(n).integers(
        np.iinfo(dt).min, np.iinfo(dt).max, n, dtype=dt, endpoint=True),
        st.integers(0, 20000), st.sampled_from(["i1", "u1", "i2", "u2", "i4", "i8"])),
    st.sampled_from([np.zeros((2, 2, 2)), np.array(["a", "b"]), np.zeros(3, complex),
                     np.array([np.nan, 0.0]), np.array([np.inf] * 500), np.full(10, 1e39),
                     np.zeros((5, 0)), np.zeros(0), np.ones(5, bool)]))


@FUZZ
@given(audio=arrays, rate=st.one_of(st.sampled_from([8000, 16000, 44100, 48000]),
                                    st.integers(-5, 10**6)))
def test_arrays_end_in_a_transcript_or_a_value_error(recognizer, audio, rate):
    try:
        t = recognizer.transcribe(audio, sample_rate=rate)
    except ValueError as e:
        assert "\n" not in str(e)
        return
    assert t.error is None or "NaN or infinite" in t.error
    assert all(0.0 <= s.confidence <= 1.0 for s in t.segments)


# -- through the command -----------------------------------------------------------------


def test_command_gives_one_sentence_per_bad_file_and_exit_1(tmp_path, capsys):
    for case in REGRESSIONS:
        (tmp_path / f"{REGRESSIONS.index(case)}.wav").write_bytes(case.build())
    (tmp_path / "good.flac").write_bytes(SEEDS["flac"])
    status = cli.main(["transcribe", "--format", "jsonl", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == cli.EXIT_FILE_FAILED
    assert len(out.splitlines()) == len(REGRESSIONS) + 1
    lines = err.splitlines()
    assert len(lines) == len(REGRESSIONS) + 1 and "Traceback" not in err
    assert lines[-1] == f"speechrnn: {len(REGRESSIONS)} of {len(REGRESSIONS) + 1} input(s) " \
                        "could not be transcribed"


# -- a short run of the atheris target -------------------------------------------------


def test_short_atheris_run(tmp_path):
    pytest.importorskip("atheris")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "fuzz_audio.py"), "-runs=600", "-seed=1",
         "-timeout=20", "-rss_limit_mb=1500", f"-artifact_prefix={tmp_path}/",
         str(tmp_path / "corpus")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 600 runs" in proc.stderr
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("oom-*"))


# The first long run's finding: a WAV recipe declaring a 2 GB fmt chunk, which the harness
# itself used to build in memory (libFuzzer: out-of-memory).
HARNESS_OOM = ("QQMAAFdBVkVmbXQgEAAAAAEAMgBAHwAAQB8AAAEACABkYXRh+/v7pJ6ViXxvZYKCgYGAf35+fn5+fn9/"
               "gICKlJyAgJyShnpuY11aXGJrd4SRm6KlpJ6ViXxvZYKCgYGAf35+fn5+fn9/gICBgYGBgICAAn9/f39/"
               "f39/K3+AgH9/f39/f39/gICA0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dHR0dE5ThHFGMYU4hBS"
               "iOKojmUykQz2ejZxfP58/7YLtq0v9n9/f4CA")


def test_replaying_a_finding(tmp_path):
    pytest.importorskip("atheris")
    finding = tmp_path / "oom-harness"
    finding.write_bytes(base64.b64decode(HARNESS_OOM))
    proc = subprocess.run([sys.executable, str(ROOT / "fuzz" / "fuzz_audio.py"),
                           "-rss_limit_mb=1500", str(finding)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Executed" in proc.stderr and "out-of-memory" not in proc.stderr
