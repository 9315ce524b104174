"""Export a speechrnn checkpoint to one ONNX graph: 16 kHz waveform in, CTC log-probs out.

The MFCC front end and its normalization are inside the graph; everything an app needs
to use the file travels in its metadata.

The graph
---------
inputs:
    audio          float32 [batch, samples]  16 kHz mono waveform, roughly -1..1; rows of a
                                             batch may be zero-padded to the longest one
    audio_lengths  int64   [batch]           valid samples in each row
outputs:
    log_probs      float32 [batch, frames, tokens]  natural-log CTC posteriors per frame
    frame_lengths  int64   [batch]                  valid frames in each row
Batch and samples are dynamic. frames = ceil((samples // hop_length + 1) / stack), and
frame t covers audio around t * hop_samples. Padding never changes a row's result.

Metadata (ONNX metadata_props, every value a string) -- a contract, keys are stable:
    speechrnn.format  "1"; bumped when the graph's inputs, outputs or these keys change
    tokens            JSON list of token strings; index = log_probs column; "<blank>" is
                      the CTC blank, " " the word separator
    blank_index       index of the CTC blank in tokens ("0")
    sample_rate       sample rate the graph expects ("16000"); resample before feeding it
    frame_rate        output frames per second, decimal (sample_rate / hop_samples)
    hop_samples       output frame hop in samples (hop_length * stack)
    features          JSON of the front end's settings (sample_rate, n_fft, hop_length,
                      n_mels, n_mfcc, f_min, f_max) plus "stack"; informative only, the
                      front end is already in the graph
    model_version     identifier of the trained weights
    training_data     short description of what the model was trained on
    default_commands  JSON list of normalized command strings to decode against when the
                      user gives none
    description       one-line human description of the model
    quantization      "none" or "dynamic-int8"
    verifier          optional: JSON of a second-stage verifier (speechrnn.verifier), added
                      by `python -m training.fit_verifier`; where present its probability
                      replaces the command confidence
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from speechrnn.text import BLANK, BLANK_INDEX, normalize_text
from training.checkpoint import CheckpointError, load_checkpoint
from training.model import CTCModel, ModelConfig

FORMAT = "1"
OPSET = 18
INPUT_NAMES = ["audio", "audio_lengths"]
OUTPUT_NAMES = ["log_probs", "frame_lengths"]
DEFAULT_COMMANDS_FILE = Path(__file__).resolve().parent.parent / "training" / "vocab" / (
    "speech_commands.txt")
DESCRIPTION = ("speechrnn BiLSTM-CTC character model: 16 kHz waveform in, per-frame "
               "log-probabilities out, MFCC front end inside")


class ExportError(Exception):
    """An export that cannot be done; the message is one sentence for the user."""


@dataclass
class ExportResult:
    path: Path
    metadata: dict[str, str]
    max_abs_diff: float  # onnxruntime vs torch on a length not used at export time
    argmax_agreement: float  # share of frames whose best token matches torch


def read_commands(path: str | Path) -> list[str]:
    """Normalized, de-duplicated commands of a file (one a line, '#' starts a comment)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ExportError(f"command file {path} cannot be read ({e.__class__.__name__})") from e
    commands: list[str] = []
    for line in lines:
        text = normalize_text(line.split("#", 1)[0])
        if text and text not in commands:
            commands.append(text)
    if not commands:
        raise ExportError(f"command file {path} holds no commands; write one per line")
    return commands


def build_metadata(config: ModelConfig, *, model_version: str, training_data: str,
                   commands: list[str], description: str = DESCRIPTION,
                   quantization: str = "none") -> dict[str, str]:
    """The metadata_props of an exported model (see the module docstring)."""
    tokens = list(config.tokens)
    if tokens[BLANK_INDEX] != BLANK:
        raise ExportError(f"model's token {BLANK_INDEX} is {tokens[BLANK_INDEX]!r}, not {BLANK}")
    feats = config.features
    hop = feats.hop_length * config.stack
    return {
        "speechrnn.format": FORMAT,
        "tokens": json.dumps(tokens),
        "blank_index": str(BLANK_INDEX),
        "sample_rate": str(feats.sample_rate),
        "frame_rate": repr(feats.sample_rate / hop),
        "hop_samples": str(hop),
        "features": json.dumps({**feats.to_dict(), "stack": config.stack}),
        "model_version": model_version,
        "training_data": training_data,
        "default_commands": json.dumps(commands),
        "description": description,
        "quantization": quantization,
    }


def read_metadata(path: str | Path) -> dict[str, str]:
    """metadata_props of an ONNX file, without loading its weights."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    model.doc_string = metadata.get("description", "")
    onnx.save(model, str(path))


def export_onnx(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None,
                *, opset: int = OPSET) -> Path:
    """Trace `module(audio, audio_lengths) -> (log_probs, frame_lengths)` to ONNX.

    Batch and length are dynamic; the dummy rows have different lengths so the
    padding masks are traced as data-dependent ops, not constants.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    audio = torch.randn(2, 7200) * 0.1
    lengths = torch.tensor([7200, 5000], dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        torch.onnx.export(
            module, (audio, lengths), str(path), dynamo=False, opset_version=opset,
            input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            dynamic_axes={"audio": {0: "batch", 1: "samples"}, "audio_lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "frames"},
                          "frame_lengths": {0: "batch"}},
        )
    if metadata:
        write_metadata(path, metadata)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def quantize_int8(src: str | Path, dst: str | Path) -> Path:
    """Dynamic int8 quantization of the LSTM layers, which hold most of the weights and
    time; everything else stays float.

    The DFT, mel and DCT matrices act on a power spectrum spanning many orders of
    magnitude, which per-tensor int8 would flatten. The frame-stacking convolution and
    the output layer are small, and onnxruntime's ConvInteger with its input quantizer
    took 3.5 times as long as the float convolution (the whole model: 7 % slower than
    with them float).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    metadata = read_metadata(src)
    logging.disable(logging.WARNING)  # quantize_dynamic nags about optional pre-processing
    try:
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
    finally:
        logging.disable(logging.NOTSET)
    write_metadata(dst, {**metadata, "quantization": "dynamic-int8"})
    return dst


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def compare(model: nn.Module, path: str | Path, audio: np.ndarray,
            lengths: np.ndarray) -> tuple[float, float]:
    """(max |torch - onnxruntime| over valid frames, share of frames with equal argmax)."""
    with torch.no_grad():
        ref, ref_len = model(torch.from_numpy(audio), torch.from_numpy(lengths))
    out, out_len = session(path).run(None, {"audio": audio, "audio_lengths": lengths})
    if not np.array_equal(out_len, ref_len.numpy()) or out.shape != tuple(ref.shape):
        return float("inf"), 0.0
    ref = ref.numpy()
    valid = np.arange(out.shape[1])[None, :] < out_len[:, None]
    diff = float(np.abs(out - ref)[valid].max()) if valid.any() else 0.0
    agree = float((out.argmax(-1) == ref.argmax(-1))[valid].mean()) if valid.any() else 1.0
    return diff, agree


def checkpoint_model(checkpoint: str | Path) -> tuple[CTCModel, dict]:
    """The model of a checkpoint (eval mode) and the checkpoint's other entries."""
    state = load_checkpoint(checkpoint)
    try:
        model = CTCModel(ModelConfig.from_dict(state["model_config"]))
        model.load_state_dict(state["model_state"])
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise ExportError(f"checkpoint {checkpoint} does not match this version of the "
                          f"model code ({type(e).__name__}); export it with the code that "
                          "trained it") from e
    extra = {k: v for k, v in state.items() if k not in ("model_config", "model_state")}
    return model.eval(), extra


def default_model_version(checkpoint: Path) -> str:
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    return f"{checkpoint.stem}-{digest}"


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, int8: bool = False,
                      commands: list[str] | None = None, training_data: str | None = None,
                      model_version: str | None = None, description: str = DESCRIPTION,
                      opset: int = OPSET, tolerance: float = 1e-4) -> ExportResult:
    """Checkpoint -> checked ONNX file (int8 if asked), verified against torch.

    Metadata values given here win over the checkpoint's own `model_version` and
    `training_data` entries; raises ExportError or CheckpointError with a one-sentence
    message on user errors.
    """
    checkpoint, output = Path(checkpoint), Path(output)
    model, extra = checkpoint_model(checkpoint)
    if commands is None:
        commands = read_commands(DEFAULT_COMMANDS_FILE)
    metadata = build_metadata(
        model.config,
        model_version=model_version or str(extra.get("model_version") or "")
        or default_model_version(checkpoint),
        training_data=training_data or str(extra.get("training_data") or "") or "not stated",
        commands=commands, description=description)

    # A length not used at export time catches a frozen time axis.
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((2, 11_111)) * 0.1).astype(np.float32)
    lengths = np.array([11_111, 9_001], dtype=np.int64)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = export_onnx(model, Path(tmp) / "model.onnx", metadata, opset=opset)
            diff, agree = compare(model, fp32, audio, lengths)
            if diff > tolerance:
                raise ExportError(f"exported graph differs from torch by {diff:.2g} "
                                  f"(tolerance {tolerance:g}); the export is not usable")
            output.parent.mkdir(parents=True, exist_ok=True)
            if int8:
                quantize_int8(fp32, output)
                diff, agree = compare(model, output, audio, lengths)
            else:
                output.write_bytes(fp32.read_bytes())
    except OSError as e:
        raise ExportError(f"cannot write {output} ({e.strerror or e}); check the folder") from e
    return ExportResult(output, read_metadata(output), diff, agree)


__all__ = ["CheckpointError", "ExportError", "ExportResult", "build_metadata", "compare",
           "export_checkpoint", "export_onnx", "quantize_int8", "read_commands",
           "read_metadata", "session"]
