"""The ONNX model: load it, check its metadata, and run waveforms to CTC log-probabilities.

Everything the runtime knows about a model comes from the file's metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechrnn.audio import declip
from speechrnn.verifier import METADATA_KEY as VERIFIER_KEY
from speechrnn.verifier import Verifier

MODEL_FORMAT = "1"
REQUIRED_KEYS = ("speechrnn.format", "tokens", "blank_index", "sample_rate", "frame_rate",
                 "hop_samples")
MIN_FRAMES = 4  # shorter audio is zero-padded: a few frames give the LSTM some context


class ModelError(Exception):
    """A model file that cannot be used; the message is one sentence naming the file."""


def bundled_model_path(quantized: bool = True) -> Path:
    """The default model shipped inside the package: its int8 form, which the runtime uses
    (network about 2x faster on one thread, the same accuracy:
    benchmarks/results/model.md), or with `quantized=False` the float one, for runtimes
    without onnxruntime's DynamicQuantizeLSTM.
    """
    name = "speechrnn.int8.onnx" if quantized else "speechrnn.onnx"
    return Path(__file__).resolve().parent / "models" / name


@dataclass(frozen=True)
class ModelInfo:
    path: str
    tokens: tuple[str, ...]
    blank_index: int
    sample_rate: int
    frame_rate: float  # output frames per second
    hop_samples: int  # input samples per output frame
    default_commands: tuple[str, ...]
    model_version: str
    training_data: str
    description: str
    features: dict
    metadata: dict[str, str]  # every metadata_props entry, as stored
    verifier: Verifier | None = None  # replaces the command confidence where present


def parse_metadata(metadata: dict[str, str], path: str) -> ModelInfo:
    """Check a model's metadata_props and turn them into a ModelInfo."""
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ModelError(f"model {path} is not a speechrnn model: its metadata lacks "
                         f"{', '.join(missing)}; export it with `python -m export`")
    if metadata["speechrnn.format"] != MODEL_FORMAT:
        raise ModelError(f"model {path} has format {metadata['speechrnn.format']!r}, but this "
                         f"speechrnn reads format {MODEL_FORMAT!r}; upgrade speechrnn or "
                         "re-export the model")
    try:
        tokens = tuple(json.loads(metadata["tokens"]))
        blank = int(metadata["blank_index"])
        sample_rate = int(metadata["sample_rate"])
        frame_rate = float(metadata["frame_rate"])
        hop = int(metadata["hop_samples"])
        commands = tuple(json.loads(metadata.get("default_commands", "[]")))
        features = json.loads(metadata.get("features", "{}"))
    except (ValueError, TypeError) as e:
        raise ModelError(f"model {path} has malformed metadata ({e})") from e
    if (not tokens or not all(isinstance(t, str) for t in tokens)
            or not 0 <= blank < len(tokens) or sample_rate <= 0 or frame_rate <= 0 or hop <= 0
            or not all(isinstance(c, str) and c for c in commands)):
        raise ModelError(f"model {path} has inconsistent metadata (tokens, blank_index, rates "
                         "or default_commands); re-export it")
    verifier = None
    if VERIFIER_KEY in metadata:
        try:
            verifier = Verifier.from_json(metadata[VERIFIER_KEY])
        except ValueError as e:
            raise ModelError(f"model {path} has a malformed verifier ({e}); fit it again with "
                             "`python -m training.fit_verifier`") from e
    return ModelInfo(path=path, tokens=tokens, blank_index=blank, sample_rate=sample_rate,
                     frame_rate=frame_rate, hop_samples=hop, default_commands=commands,
                     model_version=metadata.get("model_version", ""),
                     training_data=metadata.get("training_data", ""),
                     description=metadata.get("description", ""), features=features,
                     metadata=dict(metadata), verifier=verifier)


class ModelSession:
    """An onnxruntime session of a speechrnn model: waveform in, log-probs out."""

    def __init__(self, path: str | Path | None = None, threads: int = 1):
        import onnxruntime as ort

        path = Path(path) if path is not None else bundled_model_path()
        if not path.exists():
            hint = ("reinstall speechrnn, or pass a model file"
                    if path == bundled_model_path() else "check the path")
            raise ModelError(f"model {path} does not exist; {hint}")
        if path.is_dir():
            raise ModelError(f"model {path} is a folder; give the .onnx file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # onnxruntime's warnings are not the user's business
        try:
            self._session = ort.InferenceSession(str(path), opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises several kinds for a bad file
            raise ModelError(f"model {path} is not a readable ONNX file; it may be truncated "
                             "or not a model at all") from e
        self.path = path
        self.info = parse_metadata(self._session.get_modelmeta().custom_metadata_map,
                                   str(path))
        inputs = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != {"audio", "audio_lengths"} or outputs[:2] != ["log_probs", "frame_lengths"]:
            raise ModelError(f"model {path} does not have the speechrnn inputs (audio, "
                             "audio_lengths) and outputs (log_probs, frame_lengths)")
        # One short run checks that the graph's output matches the token list, before
        # any user audio depends on it.
        width = self.log_probs(np.zeros(self.info.hop_samples, dtype=np.float32)).shape[1]
        if width != len(self.info.tokens):
            raise ModelError(f"model {path} outputs {width} scores per frame but its metadata "
                             f"lists {len(self.info.tokens)} tokens; re-export it")

    @property
    def min_samples(self) -> int:
        return MIN_FRAMES * self.info.hop_samples

    def _run(self, audio: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        try:
            log_probs, frames = self._session.run(
                ["log_probs", "frame_lengths"], {"audio": audio, "audio_lengths": lengths})
        except Exception as e:
            raise ModelError(f"model {self.path} failed to run ({type(e).__name__}); it may "
                             "not be a speechrnn model") from e
        return log_probs, frames

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 [samples] -> log-probabilities [frames, tokens]."""
        return self.log_probs_batch([audio])[0]

    def log_probs_batch(self, audios: list[np.ndarray]) -> list[np.ndarray]:
        """Several waveforms in one run, zero-padded to the longest; one matrix each.
        Clipped peaks are rebuilt first (`speechrnn.audio.declip`)."""
        if not audios:
            return []
        sizes = [max(len(a), self.min_samples) for a in audios]
        batch = np.zeros((len(audios), max(sizes)), dtype=np.float32)
        for row, a in zip(batch, audios, strict=True):
            row[: len(a)] = declip(a)
        # Very short audio counts as padded to the minimum, so the model sees real frames.
        lengths = np.array(sizes, dtype=np.int64)
        log_probs, frames = self._run(batch, lengths)
        return [log_probs[i, : int(frames[i])] for i in range(len(audios))]
