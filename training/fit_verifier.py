"""Fit a second-stage verifier (speechrnn.verifier) for an exported model, on training
material only, and store it in the model file.

    python -m training.fit_verifier MODEL.onnx [--out OTHER.onnx] [--also FLOAT.onnx]

Hits: training voices' command clips (half of them under the training noise recordings
at 0-25 dB), each counted right when its best command is the word said. Misses: every
segment the stream engine cuts from long-form audio of training voices' other words and
the training noise recordings (music included). Nothing of the held-out voices or the
benchmarks' noises is used, so benchmarks/study_verifier.py can test the fit on them.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks.scoring import long_form_segments
from benchmarks.testsets import says_a_command
from speechrnn.audio import SAMPLE_RATE, AudioError, read_audio
from speechrnn.recognizer import (
    Recognizer,
    _is_silent,
    frame_power,
    speech_piece,
    speech_regions,
)
from speechrnn.session import ModelError
from speechrnn.text import normalize_text
from speechrnn.verifier import METADATA_KEY, Verifier, verifier_inputs
from training.augment import AugmentConfig
from training.augment import _read_folder as read_folder
from training.train import CONFIG_DIR, load_config, split_synthetic


def piece_inputs(recognizer: Recognizer, piece: np.ndarray) -> tuple[str, np.ndarray]:
    """(best command, verifier_inputs) of one stretch of audio, from the decoder's own
    confidence (whatever verifier the model already carries is not used)."""
    log_probs = recognizer.session.log_probs(piece)
    match = recognizer.scorer.score(log_probs)
    return match.command, verifier_inputs(log_probs, match.confidence, match.command,
                                          recognizer.info.tokens, recognizer.info.blank_index)


def clip_piece(audio: np.ndarray) -> np.ndarray | None:
    """What the recognizer decodes of a short clip (None for silence)."""
    power = frame_power(audio)
    if _is_silent(audio, power):
        return None
    return speech_piece(audio, regions=speech_regions(audio, power))[2]


def _speech_only(audio: np.ndarray, margin: float = 0.1) -> np.ndarray:
    regions = speech_regions(audio)
    if regions:
        pad = int(margin * SAMPLE_RATE)
        audio = audio[max(0, regions[0][0] - pad):regions[-1][1] + pad]
    return audio.astype(np.float32)


def _stretch(noise: np.ndarray, n: int, rng: random.Random) -> np.ndarray:
    if len(noise) <= n:
        noise = np.tile(noise, n // len(noise) + 1)
    start = rng.randrange(0, len(noise) - n + 1)
    return noise[start:start + n]


def training_material(recognizer: Recognizer, config: Path, clips: int = 2500,
                      minutes: float = 40.0, seed: int = 5):
    """(inputs of the command clips, whether each was right, inputs of the command-free
    segments), as the module docstring says."""
    cfg = load_config(config)
    data = cfg.data
    train, _ = split_synthetic(data.synth_manifest, data)
    commands = recognizer.commands
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    noise_dir = AugmentConfig(**cfg.augment).noise_dir
    noises = read_folder(noise_dir)
    if not noises:
        raise FileNotFoundError(f"no noise recordings in {noise_dir}")
    real_other = []
    for spec in data.real:
        manifest = Path(spec["manifest"])
        for line in manifest.read_text().splitlines():
            row = json.loads(line) if line.strip() else None
            if not row or row.get("source") in spec.get("held_out_sources", []):
                continue
            text = normalize_text(row.get("text") or "")
            if text not in spec.get("held_out_words", []) and not says_a_command(text, commands):
                real_other.append(str(manifest.parent / row["path"]))
    synth_other = [u.path for u in train if u.text and not says_a_command(u.text, commands)]
    said = [u for u in train if u.text in commands]
    if not said or not synth_other:
        raise FileNotFoundError(f"the synthetic corpus {data.synth_manifest} has no training "
                                "clips of the model's commands or of other words")

    hit_inputs, hits = [], []
    for u in tqdm(rng.sample(said, min(clips, len(said))), desc="command clips",
                  disable=None):
        audio = read_audio(u.path)
        if rng.random() < 0.5:
            noise = _stretch(noises[rng.randrange(len(noises))], len(audio), rng)
            gain = np.sqrt(np.mean(audio ** 2) / (np.mean(noise ** 2) + 1e-12)
                           / 10 ** (rng.uniform(0, 25) / 10))
            audio = (audio + noise * gain).astype(np.float32)
        piece = clip_piece(audio)
        if piece is not None:
            best, inputs = piece_inputs(recognizer, piece)
            hit_inputs.append(inputs)
            hits.append(best == u.text)

    def blocks() -> Iterator[np.ndarray]:
        """Runs of other words (60 %) and noise recordings, as the false-alarm hour."""
        step, buffer, written = 10 * SAMPLE_RATE, np.zeros(0, np.float32), 0
        while written < minutes * 60 * SAMPLE_RATE:
            if rng.random() < 0.6:
                pool = synth_other if rng.random() < 0.6 or not real_other else real_other
                gain = 10 ** (rng.uniform(-30, -16) / 20)
                parts = []
                for _ in range(rng.randint(5, 15)):
                    a = _speech_only(read_audio(rng.choice(pool)))
                    parts += [a / (np.sqrt(np.mean(a ** 2)) + 1e-9) * gain,
                              np.zeros(int(rng.uniform(0.15, 1.0) * SAMPLE_RATE), np.float32)]
                piece = np.concatenate(parts)
            else:
                piece = _stretch(noises[rng.randrange(len(noises))],
                                 int(rng.uniform(15, 40) * SAMPLE_RATE), rng)
                piece = piece / (np.sqrt(np.mean(piece ** 2)) + 1e-9) * 10 ** (
                    rng.uniform(-32, -20) / 20)
            written += len(piece)
            buffer = np.concatenate([buffer, piece.astype(np.float32)])
            while len(buffer) >= step:
                out = buffer[:step] + nrng.standard_normal(step) * 10 ** (-62 / 20)
                yield np.clip(out, -1, 1).astype(np.float32)
                buffer = buffer[step:]

    def counted(it: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        with tqdm(total=int(minutes * 6), desc="command-free audio", unit="10 s",
                  disable=None) as bar:
            for block in it:
                bar.update(1)
                yield block

    free_inputs = []

    def take(piece: np.ndarray) -> None:
        if len(piece):
            free_inputs.append(piece_inputs(recognizer, piece)[1])

    # Cut as users' streams are cut: at the default threshold, by the decoder's confidence.
    long_form_segments(Recognizer(recognizer.session, recognizer.commands, verify=False),
                       counted(blocks()), on_piece=take)
    return np.array(hit_inputs), np.array(hits), np.array(free_inputs)


def fit_for(model: Path, config: Path, clips: int = 2500, minutes: float = 40.0) -> Verifier:
    recognizer = Recognizer(model, threshold=0.0, verify=False)
    inputs, hits, free = training_material(recognizer, config, clips, minutes)
    return Verifier.fit(np.vstack([inputs, free]),
                        np.concatenate([hits.astype(float), np.zeros(len(free))]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.fit_verifier",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("model", type=Path, help="an exported speechrnn model (.onnx)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the model with its verifier here (default: MODEL itself)")
    p.add_argument("--also", type=Path, action="append", default=[],
                   help="store the same verifier in this model too, in place (the float "
                        "form of an int8 model, so that both decide alike)")
    p.add_argument("--config", type=Path, default=CONFIG_DIR / "default.json",
                   help="the training config whose data and noise to use (default: %(default)s)")
    p.add_argument("--clips", type=int, default=2500, help="command clips (default 2500)")
    p.add_argument("--minutes", type=float, default=40.0,
                   help="minutes of command-free audio (default 40)")
    args = p.parse_args(argv)
    from export.onnx_export import read_metadata, write_metadata

    try:
        verifier = fit_for(args.model, args.config, args.clips, args.minutes)
    except (ModelError, AudioError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.model
    if out != args.model:
        shutil.copyfile(args.model, out)
    for path in [out, *args.also]:
        metadata = read_metadata(path)
        metadata[METADATA_KEY] = verifier.to_json()
        write_metadata(path, metadata)
        print(f"wrote {path} with a verifier: weights "
              + ", ".join(f"{w:+.2f}" for w in verifier.weights))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
