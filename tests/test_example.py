"""The embedding example runs on an exported model using numpy, soundfile and onnxruntime only.

Its CTC scorer is also checked against torch's CTC loss.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sf = pytest.importorskip("soundfile")

from export.onnx_export import build_metadata, export_onnx  # noqa: E402
from training.model import CTCModel, ModelConfig  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_onnx.py"
COMMANDS = ["yes", "no", "stop", "go left"]


def load_example():
    spec = importlib.util.spec_from_file_location("embed_onnx", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = CTCModel(ModelConfig(hidden=32, proj_dim=32)).eval()
    meta = build_metadata(model.config, model_version="test", training_data="none",
                        commands=COMMANDS)
    return export_onnx(model, tmp_path_factory.mktemp("example") / "tiny.onnx", meta)


def write_wav(path: Path, rate: int, channels: int = 1) -> Path:
    t = np.arange(int(0.8 * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.hanning(len(t))
    sf.write(str(path), np.repeat(tone[:, None], channels, axis=1), rate)
    return path


def run_example(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # -X importtime lists every module the example imports, on stderr.
    return subprocess.run([sys.executable, "-X", "importtime", str(EXAMPLE), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def imported_modules(stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in stderr.splitlines() if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("rate,channels", [(16000, 1), (8000, 2)])
def test_example_picks_a_command(model_path, tmp_path, rate, channels):
    wav = write_wav(tmp_path / "clip.wav", rate, channels)
    done = run_example(str(wav), "--model", str(model_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    best = done.stdout.split("\t")[0]
    assert best in COMMANDS
    assert "score" in done.stdout
    modules = imported_modules(done.stderr)
    assert {"numpy", "soundfile", "onnxruntime"} <= modules
    assert not modules & {"torch", "speechrnn", "training", "export", "librosa"}


def test_example_takes_a_command_file(model_path, tmp_path):
    wav = write_wav(tmp_path / "clip.wav", 16000)
    commands = tmp_path / "commands.txt"
    commands.write_text("Lights ON\nlights off\n")
    done = run_example(str(wav), "--model", str(model_path), "--commands", str(commands),
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\t")[0] in {"lights on", "lights off"}


def test_example_reports_a_missing_file(model_path, tmp_path):
    done = run_example(str(tmp_path / "missing.wav"), "--model", str(model_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "error:" in done.stderr


def test_example_metadata_defaults(model_path):
    meta = load_example().load_model(model_path)[1]
    assert json.loads(meta["default_commands"]) == COMMANDS


@pytest.mark.parametrize("frames,labels", [(20, [3, 3, 4]), (6, [2, 2, 2]), (1, [5]),
                                           (12, [9, 1, 10])])
def test_ctc_matches_torch(frames, labels):
    example = load_example()
    torch.manual_seed(frames)
    log_probs = torch.randn(frames, 29).log_softmax(-1)
    expected = -torch.nn.functional.ctc_loss(
        log_probs[:, None], torch.tensor([labels]), torch.tensor([frames]),
        torch.tensor([len(labels)]), reduction="sum").item()
    got = example.ctc_log_likelihood(log_probs.numpy(), labels, blank=0)
    assert got == pytest.approx(expected, abs=1e-4)


def test_ctc_impossible_label_is_minus_infinity():
    log_probs = np.log(np.full((2, 29), 1 / 29))
    assert load_example().ctc_log_likelihood(log_probs, [2, 2], blank=0) == -np.inf
