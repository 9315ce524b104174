"""The model session: metadata checks, one sentence for every unusable model file, and
waveform-to-log-probs runs, single and batched, on a tiny random model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechrnn.audio import declip
from speechrnn.session import MIN_FRAMES, ModelError, ModelSession, bundled_model_path
from speechrnn.text import TOKENS


@pytest.fixture(scope="module")
def session(tiny_model_path):
    return ModelSession(tiny_model_path)


def test_info_comes_from_the_metadata(session, tiny_model_path):
    info = session.info
    assert info.tokens == TOKENS and info.blank_index == 0
    assert info.sample_rate == 16000 and info.hop_samples == 480
    assert info.frame_rate == pytest.approx(16000 / 480)
    assert list(info.default_commands) == ["yes", "no", "stop", "turn on the light"]
    assert info.model_version == "tiny-random-test"
    assert info.path == str(tiny_model_path)
    assert info.features["n_mfcc"] == 30


def test_log_probs_shape_and_normalization(session):
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    lp = session.log_probs(audio)
    assert lp.shape == (-(-(16000 // 160 + 1) // 3), len(TOKENS))
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-4)


def test_batch_equals_one_at_a_time(session):
    rng = np.random.default_rng(1)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 5000, 23000)]
    batched = session.log_probs_batch(clips)
    for clip, lp in zip(clips, batched, strict=True):
        np.testing.assert_allclose(lp, session.log_probs(clip), atol=1e-4)
    assert session.log_probs_batch([]) == []


@pytest.mark.parametrize("samples", [0, 1, 100, 480])
def test_very_short_audio_still_gives_frames(session, samples):
    lp = session.log_probs(np.zeros(samples, np.float32))
    assert lp.shape[0] >= MIN_FRAMES and np.isfinite(lp).all()


def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ModelSession(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="is a folder"):
        ModelSession(tmp_path)


@pytest.mark.parametrize("content", ["random", "truncated", "text"])
def test_corrupt_model(tmp_path, tiny_model_path, content):
    path = tmp_path / "broken.onnx"
    data = tiny_model_path.read_bytes()
    path.write_bytes({"random": np.random.default_rng(0).bytes(5000),
                      "truncated": data[: len(data) // 2],
                      "text": b"not a model\n"}[content])
    with pytest.raises(ModelError) as err:
        ModelSession(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def with_metadata(src, dst, change):
    pytest.importorskip("onnx")
    from export.onnx_export import read_metadata, write_metadata

    dst.write_bytes(src.read_bytes())
    metadata = read_metadata(src)
    change(metadata)
    write_metadata(dst, metadata)
    return dst


@pytest.mark.parametrize("change,words", [
    (lambda m: m.clear(), "lacks speechrnn.format, tokens, blank_index"),
    (lambda m: m.pop("hop_samples"), "lacks hop_samples"),
    (lambda m: m.update(tokens=json.dumps(list(TOKENS[:5]))), "outputs 29 scores per frame"),
    (lambda m: m.update({"speechrnn.format": "2"}), "format '2'"),
    (lambda m: m.update(tokens="[not json"), "malformed metadata"),
    (lambda m: m.update(blank_index="99"), "inconsistent metadata"),
])
def test_bad_metadata_is_refused(tmp_path, tiny_model_path, change, words):
    path = with_metadata(tiny_model_path, tmp_path / "m.onnx", change)
    with pytest.raises(ModelError) as err:
        ModelSession(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_bundled_model_path_is_inside_the_package():
    assert bundled_model_path().parent.name == "models"
    assert bundled_model_path().parent.parent.name == "speechrnn"
    assert bundled_model_path(quantized=False).parent == bundled_model_path().parent


@pytest.mark.skipif(not bundled_model_path().exists(), reason="no bundled model yet")
def test_bundled_int8_and_float_models_are_the_same_model():
    int8, fp32 = ModelSession(), ModelSession(bundled_model_path(quantized=False))
    assert int8.path == bundled_model_path()
    assert int8.info.metadata.pop("quantization") == "dynamic-int8"
    assert fp32.info.metadata.pop("quantization") == "none"
    assert int8.info.metadata == fp32.info.metadata
    # The same network: on the sample recordings both pick the same letter in (nearly)
    # every frame, and both hear the same commands. Quantization may flip a letter in a
    # frame where two are close, so the spellings themselves may differ by one.
    from speechrnn import Recognizer
    from speechrnn.audio import read_audio
    from speechrnn.commands import load_commands

    folder = Path(__file__).parent.parent / "samples"
    commands = load_commands(folder / "commands.txt")
    recognizers = [Recognizer(m, commands) for m in (int8, fp32)]
    samples = sorted(folder.glob("*.wav"))
    assert samples
    heard_any = False
    for wav in samples:
        audio = read_audio(wav)
        best = [m.log_probs(audio).argmax(-1) for m in (int8, fp32)]
        assert np.mean(best[0] == best[1]) >= 0.95, wav.name
        heard = [r.transcribe(audio).text for r in recognizers]
        assert heard[0] == heard[1], wav.name
        heard_any = heard_any or bool(heard[0])
    assert heard_any


def test_runtime_never_imports_torch():
    code = ("import sys, speechrnn, speechrnn.cli, speechrnn.recognizer, speechrnn.decoding, "
            "speechrnn.audio, speechrnn.session, speechrnn.commands; "
            "from speechrnn import Recognizer; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_clipped_audio_is_rebuilt_before_the_network(session):
    t = np.arange(8000) / 16000
    clipped = np.clip(np.sin(2 * np.pi * 190 * t) * np.hanning(8000), -0.6, 0.6).astype(
        np.float32)
    rebuilt = declip(clipped)
    assert rebuilt is not clipped
    frames, n = session._run(clipped[None], np.array([len(clipped)]))  # the bare network
    as_clipped = frames[0, : int(n[0])]
    np.testing.assert_allclose(session.log_probs(clipped), session.log_probs(rebuilt),
                               atol=1e-5)
    assert np.abs(session.log_probs(clipped) - as_clipped).max() > 1e-3

