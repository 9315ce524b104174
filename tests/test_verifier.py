"""The second-stage verifier: its inputs, its fit, its place in the model file, and the
recognizer's use of it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from speechrnn.recognizer import Recognizer
from speechrnn.session import ModelError, bundled_model_path
from speechrnn.verifier import FEATURES, METADATA_KEY, Verifier, verifier_inputs
from tests.signals import word

TOKENS = ["<blank>", " ", "n", "o"]


def frames(*rows):
    p = np.array(rows, dtype=float) + 1e-12  # a network's log-softmax is never -inf
    return np.log(p / p.sum(axis=1, keepdims=True))


def test_inputs_are_the_confidence_the_peak_letter_the_speech_entropy_and_the_spelling():
    lp = frames([1.0, 0, 0, 0], [0.1, 0, 0.9, 0], [0.3, 0, 0, 0.7], [1.0, 0, 0, 0])
    x = verifier_inputs(lp, 0.5, "no", TOKENS)
    assert x[0] == pytest.approx(0.0)  # log odds of 0.5
    assert x[1] == pytest.approx(0.9, abs=1e-6)
    entropy = [-(0.1 * np.log(0.1) + 0.9 * np.log(0.9)), -(0.3 * np.log(0.3) + 0.7 * np.log(0.7))]
    assert x[2] == pytest.approx(np.mean(entropy), abs=1e-6)  # the two frames where blank < 0.5
    assert x[3] == 0.0  # greedy "no" is the command
    assert verifier_inputs(lp, 0.99, "on", TOKENS)[3] == 1.0  # two edits over two letters
    assert verifier_inputs(lp, 0.99, "on", TOKENS)[0] == pytest.approx(np.log(99))
    silent = frames([1.0, 0, 0, 0], [1.0, 0, 0, 0])
    assert np.isfinite(verifier_inputs(silent, 1.0, "no", TOKENS)).all()


def test_the_fit_separates_and_round_trips_through_json():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(1.0, 0.5, (200, 4)), rng.normal(-1.0, 0.5, (200, 4))])
    y = np.r_[np.ones(200), np.zeros(200)]
    v = Verifier.fit(x, y)
    assert np.mean((v.probabilities(x) > 0.5) == (y == 1)) > 0.98
    again = Verifier.from_json(v.to_json())
    assert np.allclose(again.probabilities(x), v.probabilities(x))
    for bad in ("[]", "{}", '{"features": ["a"], "mean": [0], "std": [1], "weights": [0, 1]}',
                v.to_json().replace('"std": [', '"std": [0.0, ', 1), "not json"):
        with pytest.raises(ValueError):
            Verifier.from_json(bad)
    with pytest.raises(ValueError):
        Verifier([0] * 4, [1, 1, 1, -1], [0] * 5)


@pytest.fixture(scope="module")
def model_with_verifier(tmp_path_factory):
    onnx_export = pytest.importorskip("export.onnx_export")
    path = tmp_path_factory.mktemp("verifier") / "model.onnx"
    shutil.copyfile(bundled_model_path(), path)
    verifier = Verifier([0.0, 0.5, 1.0, 0.5], [2.0, 0.3, 0.5, 0.5], [-1.0, 0.5, 2.0, -0.5, -1.0])
    metadata = onnx_export.read_metadata(path)
    metadata[METADATA_KEY] = verifier.to_json()
    onnx_export.write_metadata(path, metadata)
    return path, verifier


def test_a_model_carrying_a_verifier_reports_its_probability_as_the_confidence(
        model_with_verifier):
    path, verifier = model_with_verifier
    plain = Recognizer(path, verify=False, threshold=0.0)
    verified = Recognizer(plain.session, threshold=0.0)
    assert plain.info.verifier is not None and verified.verifier is not None
    assert plain.verifier is None
    lp = plain.session.log_probs(word(0.6, seed=2))
    before, after = plain.decode(lp), verified.decode(lp)
    assert after.candidate == before.candidate
    expected = verifier(lp, before.confidence, before.candidate, plain.info.tokens,
                        plain.info.blank_index)
    assert after.confidence == pytest.approx(expected)
    assert after.confidence != pytest.approx(before.confidence)
    # The threshold applies to it.
    strict = Recognizer(plain.session, threshold=min(1.0, after.confidence + 1e-6))
    assert strict.decode(lp).text == ""
    # Free mode has no commands to verify.
    assert Recognizer(plain.session, free=True).verifier is None


def test_a_model_with_a_damaged_verifier_is_refused(model_with_verifier, tmp_path):
    onnx_export = pytest.importorskip("export.onnx_export")
    path, _ = model_with_verifier
    broken = tmp_path / "broken.onnx"
    shutil.copyfile(path, broken)
    metadata = onnx_export.read_metadata(broken)
    metadata[METADATA_KEY] = json.dumps({"features": list(FEATURES), "mean": [0, 0],
                                         "std": [1, 1], "weights": [0, 0, 0]})
    onnx_export.write_metadata(broken, metadata)
    with pytest.raises(ModelError, match="malformed verifier"):
        Recognizer(broken)


def test_the_bundled_models_carry_the_same_verifier():
    int8, fp32 = Recognizer(), Recognizer(bundled_model_path(quantized=False))
    assert int8.verifier is not None
    assert int8.info.metadata[METADATA_KEY] == fp32.info.metadata[METADATA_KEY]


def test_fitting_without_the_training_data_says_so_and_leaves_the_model(tmp_path, capsys):
    fit_verifier = pytest.importorskip("training.fit_verifier")
    model = tmp_path / "m.onnx"
    shutil.copyfile(bundled_model_path(), model)
    before = model.read_bytes()
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"data": {"synth_manifest": str(tmp_path / "none.jsonl")}}))
    assert fit_verifier.main([str(model), "--config", str(config)]) == 2
    assert "none.jsonl" in capsys.readouterr().err
    assert model.read_bytes() == before
