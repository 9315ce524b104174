"""Embed a speechrnn model with numpy, soundfile and onnxruntime only: pick a WAV's command.

    python examples/embed_onnx.py clip.wav [--model model.onnx] [--commands commands.txt]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf

MODELS = Path(__file__).resolve().parent.parent / "speechrnn" / "models"
DEFAULT_MODEL = MODELS / "speechrnn.int8.onnx"  # speechrnn.onnx: the float form
# Taken off the blank's log-probability in every frame before scoring, as speechrnn does:
# the model leans to blank where it is unsure, which favours the shortest commands.
BLANK_PENALTY = 1.0


def load_model(path: Path) -> tuple[ort.InferenceSession, dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist; pass --model "
                                "or export one with python -m export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("speechrnn.format") != "1":
        raise ValueError(f"{path} is not a speechrnn format 1 model")
    return session, meta


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 at the model's rate."""
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (OSError, sf.LibsndfileError) as e:
        raise ValueError(f"cannot read {path} as audio; give a WAV, FLAC or OGG file") from e
    audio = audio.mean(axis=1)
    if rate != sample_rate:
        # Linear interpolation keeps this example numpy-only; a real app should use a
        # proper resampler (e.g. soxr), which filters out aliasing first.
        n_out = round(len(audio) * sample_rate / rate)
        audio = np.interp(np.arange(n_out) * rate / sample_rate, np.arange(len(audio)), audio)
    return audio.astype(np.float32)


def normalize(text: str, tokens: list[str]) -> str:
    """Lowercase and keep only characters the model knows (speechrnn also spells digits)."""
    text = "".join(c if c in tokens else " " for c in text.lower())
    return " ".join(text.split())


def ctc_log_likelihood(log_probs: np.ndarray, labels: list[int], blank: int) -> float:
    """log P(labels | audio) by the CTC forward algorithm over log_probs [frames, tokens]."""
    ext = np.full(2 * len(labels) + 1, blank)
    ext[1::2] = labels
    # A path may skip the blank between two different labels, never between equal ones.
    can_skip = np.zeros(len(ext), bool)
    can_skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    alpha = np.full(len(ext), -np.inf)
    alpha[:2] = log_probs[0, ext[:2]]
    for frame in log_probs[1:]:
        stay_or_step = np.logaddexp(alpha, np.concatenate([[-np.inf], alpha[:-1]]))
        skip = np.where(can_skip, np.concatenate([[-np.inf, -np.inf], alpha[:-2]]), -np.inf)
        alpha = np.logaddexp(stay_or_step, skip) + frame[ext]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(ext) > 1 else alpha[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print the command a WAV file most likely holds.")
    p.add_argument("wav", type=Path, help="audio file (any rate, mono or stereo)")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="speechrnn ONNX model")
    p.add_argument("--commands", type=Path,
                   help="commands, one a line (default: the model's default_commands)")
    args = p.parse_args(argv)

    try:
        session, meta = load_model(args.model)
        audio = read_audio(args.wav, int(meta["sample_rate"]))
        lines = args.commands.read_text().splitlines() if args.commands else None
    except Exception as e:  # an example: any failure to load is the user's file
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokens = json.loads(meta["tokens"])
    blank = int(meta["blank_index"])
    commands = [normalize(c, tokens) for c in lines] if lines else json.loads(
        meta["default_commands"])
    commands = [c for c in commands if c]

    log_probs, frames = session.run(None, {"audio": audio[None],
                                           "audio_lengths": np.array([len(audio)], np.int64)})
    log_probs = log_probs[0, : frames[0]]
    log_probs[:, blank] -= BLANK_PENALTY
    index = {t: i for i, t in enumerate(tokens)}
    scores = {c: ctc_log_likelihood(log_probs, [index[ch] for ch in c], blank) for c in commands}
    best = max(scores, key=scores.get)
    if not np.isfinite(scores[best]):
        print(f"error: {args.wav} is too short to hold any of the commands", file=sys.stderr)
        return 1
    # Share of the commands' total likelihood: how clearly the best one wins.
    values = np.array(list(scores.values()))
    share = 1.0 / np.exp(values - scores[best]).sum()
    print(f"{best}\tscore {scores[best]:.2f}\tshare {share:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
