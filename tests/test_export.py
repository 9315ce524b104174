"""The exported ONNX graph equals the torch model, honours padding and carries its metadata.

A tiny randomly initialised model is exported into a temporary folder, so nothing here
depends on a trained model.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from export.__main__ import main as export_main  # noqa: E402
from export.onnx_export import (  # noqa: E402
    export_checkpoint,
    export_onnx,
    read_metadata,
    session,
)
from speechrnn.text import TOKENS, normalize_text  # noqa: E402
from training.checkpoint import load_model, save_checkpoint  # noqa: E402
from training.model import CTCModel, ModelConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED_SPEECH = ROOT.parent / "shared" / "data" / "speech" / "manifest.jsonl"
TOL = 1e-4
# Export traces with 7,200 and 5,000 samples; none of these may be frozen into the graph.
LENGTHS = [1, 479, 3_001, 16_000, 27_310, 40_000]


def speech_like(n: int, seed: int = 0) -> np.ndarray:
    """Gliding harmonic tone under a syllable-shaped envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    f0 = 110 + 40 * np.sin(2 * np.pi * 1.3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voiced = sum(np.sin(k * phase) * np.exp(-k / 8) for k in range(1, 40))
    envelope = np.exp(-(((t - t.mean()) / max(t.max() / 4, 1e-3)) ** 2))
    y = voiced * envelope + 0.01 * rng.standard_normal(n)
    return (0.4 * y / max(np.abs(y).max(), 1e-9)).astype(np.float32)


def real_clip() -> np.ndarray | None:
    """A real recording from ../shared when the checkout has one beside it."""
    if not SHARED_SPEECH.is_file():
        return None
    import soundfile as sf

    row = json.loads(SHARED_SPEECH.read_text().splitlines()[0])
    audio, sr = sf.read(SHARED_SPEECH.parent / row["path"], dtype="float32", always_2d=True)
    return audio.mean(axis=1) if sr == 16000 else None


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    checkpoint = tmp / "tiny.pt"
    save_checkpoint(checkpoint, CTCModel(ModelConfig(hidden=32, proj_dim=32)),
                    training_data="unit-test data")
    fp32 = export_checkpoint(checkpoint, tmp / "tiny.onnx")
    int8 = export_checkpoint(checkpoint, tmp / "tiny-int8.onnx", int8=True)
    return {"checkpoint": checkpoint, "model": load_model(checkpoint), "fp32": fp32.path,
            "int8": int8.path, "tmp": tmp}


def run_torch(model, audio: np.ndarray, lengths: np.ndarray):
    with torch.no_grad():
        log_probs, frames = model(torch.from_numpy(audio), torch.from_numpy(lengths))
    return log_probs.numpy(), frames.numpy()


def run_onnx(path: Path, audio: np.ndarray, lengths: np.ndarray):
    return session(path).run(None, {"audio": audio, "audio_lengths": lengths})


def one(audio: np.ndarray):
    return audio[None].astype(np.float32), np.array([audio.shape[0]], np.int64)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("kind", ["random", "speech_like"])
def test_onnx_equals_torch(exported, kind, n):
    rng = np.random.default_rng(n)
    audio = (0.1 * rng.standard_normal(n)).astype(np.float32) if kind == "random" \
        else speech_like(n, seed=n)
    expected, expected_frames = run_torch(exported["model"], *one(audio))
    got, frames = run_onnx(exported["fp32"], *one(audio))
    assert frames.tolist() == expected_frames.tolist() == [math.ceil((n // 160 + 1) / 3)]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_onnx_equals_torch_on_real_speech(exported):
    audio = real_clip()
    if audio is None:
        pytest.skip("no ../shared/data/speech beside this checkout")
    expected, _ = run_torch(exported["model"], *one(audio))
    got, _ = run_onnx(exported["fp32"], *one(audio))
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)


def test_padded_batch_equals_single_items(exported):
    clips = [speech_like(16_000, 1), speech_like(4_321, 2), speech_like(9_999, 3)]
    width = max(len(c) for c in clips) + 1_234
    # Padding holds loud noise, not zeros: the graph must ignore it, not just tolerate it.
    batch = (0.5 * np.random.default_rng(0).standard_normal((len(clips), width))).astype(
        np.float32)
    for row, clip in zip(batch, clips, strict=True):
        row[: len(clip)] = clip
    lengths = np.array([len(c) for c in clips], np.int64)
    got, frames = run_onnx(exported["fp32"], batch, lengths)
    torch_batch, _ = run_torch(exported["model"], batch, lengths)
    for i, clip in enumerate(clips):
        alone, alone_frames = run_onnx(exported["fp32"], *one(clip))
        assert frames[i] == alone_frames[0]
        np.testing.assert_allclose(got[i, : frames[i]], alone[0], atol=TOL, rtol=0)
        np.testing.assert_allclose(torch_batch[i, : frames[i]], alone[0], atol=TOL, rtol=0)


def test_noise_subtraction_exports(tmp_path):
    from training.features import FeatureConfig
    torch.manual_seed(1)
    config = ModelConfig(hidden=16, proj_dim=16,
                         features=FeatureConfig(noise_subtraction=2.0))
    checkpoint = tmp_path / "ns.pt"
    save_checkpoint(checkpoint, CTCModel(config), training_data="unit-test data")
    path = tmp_path / "ns.onnx"
    export_checkpoint(checkpoint, path)
    model = load_model(checkpoint)
    noise = 0.05 * np.random.default_rng(0).standard_normal(27_310).astype(np.float32)
    for n in (3_001, 27_310):
        audio = speech_like(n, seed=n) + noise[:n]
        expected, _ = run_torch(model, *one(audio))
        got, _ = run_onnx(path, *one(audio))
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=0)
    # A padded row decodes as it does alone: padding never sets the noise floor.
    batch = np.zeros((2, 27_310), np.float32)
    batch[0] = speech_like(27_310) + noise
    batch[1, :9_999] = speech_like(9_999, seed=3) + noise[:9_999]
    batch[1, 9_999:] = 0.5
    got, frames = run_onnx(path, batch, np.array([27_310, 9_999], np.int64))
    alone, _ = run_onnx(path, *one(batch[1, :9_999]))
    np.testing.assert_allclose(got[1, : frames[1]], alone[0], atol=TOL, rtol=0)
    assert json.loads(read_metadata(path)["features"])["noise_subtraction"] == 2.0


class FrontEnd(torch.nn.Module):
    """Only the model's front end: waveform -> normalized MFCC and their lengths."""

    def __init__(self, model: CTCModel):
        super().__init__()
        self.model = model

    def forward(self, audio, audio_lengths):
        return self.model.features(audio, audio_lengths)


def test_front_end_matches_training_front_end(exported):
    front_end = FrontEnd(exported["model"]).eval()
    path = export_onnx(front_end, exported["tmp"] / "front_end.onnx")
    clips = [speech_like(20_000, 4), (0.05 * np.random.default_rng(5).standard_normal(
        6_100)).astype(np.float32)]
    batch = np.zeros((2, 20_000), np.float32)
    for row, clip in zip(batch, clips, strict=True):
        row[: len(clip)] = clip
    lengths = np.array([len(c) for c in clips], np.int64)
    got, frames = run_onnx(path, batch, lengths)
    with torch.no_grad():
        expected, expected_frames = front_end(torch.from_numpy(batch), torch.from_numpy(lengths))
    assert frames.tolist() == expected_frames.tolist() == [20_000 // 160 + 1, 6_100 // 160 + 1]
    np.testing.assert_allclose(got, expected.numpy(), atol=TOL, rtol=0)


def test_graph_signature(exported):
    model = onnx.load(str(exported["fp32"]))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}  # no custom ops

    def signature(values):
        return {v.name: (v.type.tensor_type.elem_type,
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values}

    f32, i64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    assert signature(model.graph.input) == {
        "audio": (f32, ["batch", "samples"]), "audio_lengths": (i64, ["batch"])}
    outputs = signature(model.graph.output)
    assert list(outputs) == ["log_probs", "frame_lengths"]
    assert outputs["log_probs"][0] == f32 and outputs["log_probs"][1][:2] == ["batch", "frames"]
    assert outputs["log_probs"][1][2] == len(TOKENS)
    assert outputs["frame_lengths"] == (i64, ["batch"])


def test_each_bilstm_layer_is_one_lstm_node(exported):
    """One bidirectional LSTM node per layer, told each row's length (`sequence_lens`), so
    embedders see a standard BiLSTM; the padded-batch test above shows it reads no padding."""
    layers = exported["model"].config.layers
    for path, op in ((exported["fp32"], "LSTM"), (exported["int8"], "DynamicQuantizeLSTM")):
        lstms = [n for n in onnx.load(str(path)).graph.node if n.op_type == op]
        assert len(lstms) == layers
        for node in lstms:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attrs["direction"] == b"bidirectional"
            assert node.input[4]  # sequence_lens: not an omitted optional input


def test_metadata(exported):
    for path in (exported["fp32"], exported["int8"]):
        meta = read_metadata(path)
        assert all(isinstance(v, str) for v in meta.values())
        assert meta["speechrnn.format"] == "1"
        assert json.loads(meta["tokens"]) == list(TOKENS)
        assert json.loads(meta["tokens"])[int(meta["blank_index"])] == "<blank>"
        assert meta["blank_index"] == "0"
        assert meta["sample_rate"] == "16000"
        assert meta["hop_samples"] == "480"
        assert float(meta["frame_rate"]) == pytest.approx(16000 / 480)
        features = json.loads(meta["features"])
        assert features["stack"] == 3 and features["hop_length"] == 160
        assert features["n_mfcc"] == 30 and features["sample_rate"] == 16000
        assert meta["model_version"].startswith("tiny-")
        assert meta["training_data"] == "unit-test data"
        commands = json.loads(meta["default_commands"])
        assert len(commands) == 35 and commands[:3] == ["yes", "no", "up"]
        assert all(c == normalize_text(c) for c in commands)
        assert meta["description"]
    assert read_metadata(exported["fp32"])["quantization"] == "none"
    assert read_metadata(exported["int8"])["quantization"] == "dynamic-int8"


def test_frame_rate_describes_the_output(exported):
    meta = read_metadata(exported["fp32"])
    seconds = 3.0
    _, frames = run_onnx(exported["fp32"], *one(np.zeros(int(16000 * seconds), np.float32)))
    assert abs(frames[0] - seconds * float(meta["frame_rate"])) <= 1
    assert abs(frames[0] * int(meta["hop_samples"]) - 16000 * seconds) <= int(meta["hop_samples"])


def test_loads_with_cpu_provider(exported):
    for path in (exported["fp32"], exported["int8"]):
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert [i.name for i in sess.get_inputs()] == ["audio", "audio_lengths"]
        assert [o.name for o in sess.get_outputs()] == ["log_probs", "frame_lengths"]


def test_int8_close_to_fp32(exported):
    clips = [speech_like(16_000, s) for s in range(4)]
    audio = np.stack(clips)
    lengths = np.full(len(clips), 16_000, np.int64)
    fp32, frames = run_onnx(exported["fp32"], audio, lengths)
    int8, frames8 = run_onnx(exported["int8"], audio, lengths)
    assert frames.tolist() == frames8.tolist()
    perturbation = np.abs(int8 - fp32).mean()
    assert perturbation < 0.02
    agree = int8.argmax(-1) == fp32.argmax(-1)
    assert agree.mean() >= 0.75
    # A random model has many near-ties; decisions clearer than the int8 noise must survive.
    top2 = np.sort(fp32, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 4 * perturbation
    assert clear.sum() >= 5 and agree[clear].mean() >= 0.95
    assert exported["int8"].stat().st_size < exported["fp32"].stat().st_size


def test_commands_file(exported, tmp_path):
    commands = tmp_path / "commands.txt"
    commands.write_text("# lights\nTurn ON the lights\nturn off the lights  # night\n\nCall 911\n")
    out = tmp_path / "custom.onnx"
    assert export_main([str(exported["checkpoint"]), "-o", str(out), "--commands",
                        str(commands), "--model-version", "v-test"]) == 0
    meta = read_metadata(out)
    assert json.loads(meta["default_commands"]) == [
        "turn on the lights", "turn off the lights", "call nine hundred eleven"]
    assert meta["model_version"] == "v-test"


@pytest.mark.parametrize("content", [None, b"not a checkpoint", b""])
def test_bad_checkpoint_is_one_sentence(tmp_path, capsys, content):
    checkpoint = tmp_path / "model.pt"
    if content is not None:
        checkpoint.write_bytes(content)
    assert export_main([str(checkpoint), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(checkpoint) in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "m.onnx").exists()


def test_empty_commands_file(exported, tmp_path, capsys):
    commands = tmp_path / "empty.txt"
    commands.write_text("# nothing\n\n")
    assert export_main([str(exported["checkpoint"]), "--commands", str(commands)]) == 2
    assert "holds no commands" in capsys.readouterr().err


def test_help_needs_no_torch():
    code = ("import sys\nfrom export.__main__ import main\ntry:\n    main(['--help'])\n"
            "except SystemExit as e:\n    assert e.code == 0\nassert 'torch' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--int8" in done.stdout and "--commands" in done.stdout


def test_cost_report_counts_the_same_parameters_in_both_forms(exported):
    from benchmarks.bench_cost import model_size

    fp32, int8 = model_size(exported["fp32"]), model_size(exported["int8"])
    assert fp32["parameters"] == int8["parameters"] > 0
    assert int8["mb"] < fp32["mb"]
