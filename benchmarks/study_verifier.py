"""Study: would a second-stage verifier trade false accepts for misses better than the
confidence alone, when it is fitted on audio the benchmarks never use?

    python benchmarks/study_verifier.py [--minutes 60] [--train-minutes 40]

Not part of `python -m benchmarks`: nothing in the runtime uses a verifier yet. This
measures whether building one would pay.

Each decoded piece gets four numbers the decoder already has: the confidence (as log
odds), the likeliest letter's probability at its peak, the mean entropy of the speech
frames, and how far the greedy spelling is from the best command (edits a letter). A
logistic regression on them is fitted only on training material: training voices'
command clips (half with training's noise recordings at 0-25 dB), their right best
command counted as a hit; and long-form audio of training voices' other words and of
training's noise recordings (`../shared/data/noise`, music included), cut by the stream
engine, every segment a false accept. It is then tested as the benchmarks test the
confidence: false accepts per hour on the false-alarm benchmark's command-free hour
(held-out voices, synthesized music and noise) against misses on its clean command
clips of held-out voices. Both scores are computed on the same pieces, so the
comparison is like for like (the engine's own segments can score a little differently).
Writes benchmarks/results/verifier.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_false_alarms import (  # noqa: E402
    FR_SETS,
    Hour,
    command_free_audio,
    pools,
    speech_only,
)
from benchmarks.common import machine  # noqa: E402
from benchmarks.scoring import long_form_segments  # noqa: E402
from benchmarks.testsets import says_a_command  # noqa: E402
from speechrnn.audio import SAMPLE_RATE, read_audio  # noqa: E402
from speechrnn.decoding import edit_distance, greedy_text  # noqa: E402
from speechrnn.recognizer import Recognizer, _is_silent, frame_power, speech_piece, speech_regions  # noqa: E402
from speechrnn.text import normalize_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FEATURES = ("confidence (log odds)", "peak letter probability", "speech-frame entropy",
            "greedy spelling's distance")
TARGETS = (80, 57, 40, 30, 20, 10, 5)  # false accepts an hour


def piece_features(recognizer: Recognizer, piece: np.ndarray) -> tuple[str, list[float]]:
    """(best command, the four numbers) of one piece of audio."""
    log_probs = recognizer.session.log_probs(piece)
    result = recognizer.decode(log_probs)
    blank = recognizer.info.blank_index
    probs = np.exp(log_probs)
    letters = np.delete(probs, blank, axis=1)
    peak = float(letters.max()) if letters.size else 0.0
    entropy = -(probs * log_probs).sum(axis=1)
    speech = probs[:, blank] < 0.5
    mean_entropy = float(entropy[speech].mean() if speech.any() else entropy.mean())
    candidate = result.candidate or ""
    spelling = greedy_text(log_probs, recognizer.info.tokens, blank).strip()
    distance = edit_distance(spelling, candidate) / max(1, len(candidate))
    return candidate, [result.confidence, peak, mean_entropy, distance]


def design(rows: Sequence[Sequence[float]]) -> np.ndarray:
    """The regression's inputs: the confidence as log odds, the rest as they are."""
    a = np.asarray(rows, dtype=float).reshape(-1, len(FEATURES))
    c = np.clip(a[:, 0], 1e-6, 1 - 1e-6)
    return np.column_stack([np.log(c / (1 - c)), a[:, 1:]])


class Logistic:
    """L2-regularised logistic regression fitted by Newton's method (no scikit-learn)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50):
        self.mean, self.std = x.mean(axis=0), x.std(axis=0) + 1e-9
        z = self._z(x)
        self.w = np.zeros(z.shape[1])
        for _ in range(steps):
            p = 1 / (1 + np.exp(-z @ self.w))
            grad = z.T @ (p - y) + l2 * self.w
            hess = (z * (p * (1 - p))[:, None]).T @ z + l2 * np.eye(len(self.w))
            self.w -= np.linalg.solve(hess, grad)

    def _z(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.ones(len(x)), (x - self.mean) / self.std])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-self._z(x) @ self.w))


def misses_at(hits: np.ndarray, clip_scores: np.ndarray, hour_scores: np.ndarray,
              hours: float, targets: Sequence[float] = TARGETS) -> list[float | None]:
    """The fewest misses (share of command clips not accepted as the right command) at
    each target of false accepts an hour, over every threshold; None where no
    threshold gets there."""
    thresholds = np.unique(np.concatenate([clip_scores, hour_scores]))
    hour_sorted = np.sort(hour_scores)
    fa = (len(hour_sorted) - np.searchsorted(hour_sorted, thresholds)) / hours
    miss = np.array([1 - np.mean(hits & (clip_scores >= t)) for t in thresholds])
    out = []
    for target in targets:
        ok = fa <= target
        out.append(float(miss[ok].min()) if ok.any() else None)
    return out


def _piece(audio: np.ndarray) -> np.ndarray | None:
    power = frame_power(audio)
    if _is_silent(audio, power):
        return None
    return speech_piece(audio, regions=speech_regions(audio, power))[2]


def held_out_material(recognizer: Recognizer, minutes: float):
    """(set names, hits, clip rows, hour rows, hours) from the benchmarks' held-out audio."""
    from benchmarks.bench_accuracy import FULL, load_sets

    sets, voices = load_sets(FULL, [], None, recognizer.commands)
    names, hits, rows = [], [], []
    for s in sets:
        if s.name not in FR_SETS:
            continue
        ours = Recognizer(recognizer.session, s.commands, threshold=0.0)
        for clip in s.clips:
            if not clip.expected:
                continue
            piece = _piece(clip.audio())
            best, feats = piece_features(ours, piece) if piece is not None else ("", [0, 0, 0, 1])
            names.append(s.name)
            hits.append(best == clip.expected)
            rows.append(feats)
    hour = Hour()
    pieces: list[np.ndarray] = []
    long_form_segments(recognizer, command_free_audio(pools(recognizer.commands), minutes * 60,
                                                      voices, hour), on_piece=pieces.append)
    hour_rows = [piece_features(recognizer, p)[1] for p in pieces if len(p)]
    return np.array(names), np.array(hits), rows, hour_rows, sum(hour.seconds.values()) / 3600


def _noise_recordings() -> list[np.ndarray]:
    return [read_audio(p) for p in sorted((ROOT.parent / "shared/data/noise").glob("*.flac"))]


def _stretch(noise: np.ndarray, n: int, rng: random.Random) -> np.ndarray:
    if len(noise) <= n:
        noise = np.tile(noise, n // len(noise) + 1)
    start = rng.randrange(0, len(noise) - n + 1)
    return noise[start:start + n]


def training_material(recognizer: Recognizer, clips: int, minutes: float, seed: int = 5):
    """(hits of the command clips, their rows, rows of the command-free segments) from
    training voices and training noise only."""
    from training.train import load_config, split_synthetic

    cfg = load_config(ROOT / "training/configs/default.json").data
    train, _ = split_synthetic(ROOT / cfg.synth_manifest, cfg)
    commands = recognizer.commands
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    noises = _noise_recordings()
    held = cfg.real[0]
    real_other = []
    manifest = ROOT / cfg.real[0]["manifest"]
    for line in manifest.read_text().splitlines():
        row = json.loads(line) if line.strip() else None
        if not row or row.get("source") in held.get("held_out_sources", []):
            continue
        text = normalize_text(row.get("text") or "")
        if text not in held.get("held_out_words", []) and not says_a_command(text, commands):
            real_other.append(str(manifest.parent / row["path"]))
    synth_other = [u.path for u in train if u.text and not says_a_command(u.text, commands)]
    hits, rows = [], []
    for u in rng.sample([u for u in train if u.text in commands], clips):
        audio = read_audio(u.path)
        if rng.random() < 0.5:
            noise = _stretch(noises[rng.randrange(len(noises))], len(audio), rng)
            gain = np.sqrt(np.mean(audio ** 2) / (np.mean(noise ** 2) + 1e-12)
                           / 10 ** (rng.uniform(0, 25) / 10))
            audio = (audio + noise * gain).astype(np.float32)
        piece = _piece(audio)
        if piece is not None:
            best, feats = piece_features(recognizer, piece)
            hits.append(best == u.text)
            rows.append(feats)

    def blocks() -> Iterator[np.ndarray]:
        """Like the false-alarm hour: runs of other words (60 %) and noise recordings."""
        step, buffer, written = 10 * SAMPLE_RATE, np.zeros(0, np.float32), 0
        while written < minutes * 60 * SAMPLE_RATE:
            if rng.random() < 0.6:
                pool = synth_other if rng.random() < 0.6 or not real_other else real_other
                gain = 10 ** (rng.uniform(-30, -16) / 20)
                parts = []
                for _ in range(rng.randint(5, 15)):
                    a = speech_only(read_audio(rng.choice(pool)))
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

    pieces: list[np.ndarray] = []
    long_form_segments(recognizer, blocks(), on_piece=pieces.append)
    return np.array(hits), rows, [piece_features(recognizer, p)[1] for p in pieces if len(p)]


def _cells(values: Sequence[float | None]) -> str:
    return " | ".join("–" if v is None else f"{100 * v:.1f} %" for v in values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: bundled)")
    p.add_argument("--minutes", type=float, default=60.0, help="the held-out hour's length")
    p.add_argument("--train-minutes", type=float, default=40.0,
                   help="command-free training audio to fit on")
    p.add_argument("--train-clips", type=int, default=2500,
                   help="training voices' command clips to fit on")
    p.add_argument("--out", type=Path, default=RESULTS / "verifier.md")
    args = p.parse_args(argv)
    start = time.perf_counter()
    header = machine()
    recognizer = Recognizer(args.model, threshold=0.0)
    train_hits, train_rows, train_free = training_material(
        recognizer, args.train_clips, args.train_minutes)
    x = np.vstack([design(train_rows), design(train_free)])
    y = np.concatenate([train_hits.astype(float), np.zeros(len(train_free))])
    verifier = Logistic(x, y)
    names, hits, rows, hour_rows, hours = held_out_material(recognizer, args.minutes)
    clips, hour = design(rows), design(hour_rows)
    lines = [
        "# Study: a second-stage verifier fitted away from the benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {header}, by `python "
        f"benchmarks/study_verifier.py` in {time.perf_counter() - start:.0f} s; model "
        f"version {recognizer.info.model_version}. What it is: the module docstring.",
        "",
        f"Fitted on {len(train_rows)} training-voice command clips ({int(train_hits.sum())} "
        f"with the right best command) and {len(train_free)} segments of "
        f"{args.train_minutes:.0f} minutes of command-free training audio. Weights "
        "(standardized inputs, intercept first): "
        + ", ".join(f"{w:+.2f}" for w in verifier.w) + f" for {', '.join(FEATURES)}.",
        "",
        f"Tested on {len(rows)} clean command clips of held-out voices and {len(hour_rows)} "
        f"segments of {hours * 60:.0f} minutes of command-free audio: misses at each "
        "number of false accepts an hour (each row at its own best threshold for that score).",
        "",
        "| clips | score | " + " | ".join(f"{t}/h" for t in TARGETS) + " |",
        "|---|---|" + "---:|" * len(TARGETS),
    ]
    for label, mask in [("all", np.ones(len(names), bool))] + [
            (n, names == n) for n in FR_SETS]:
        for score, f in (("confidence", lambda a: a[:, 0]), ("verifier", verifier)):
            lines.append(f"| {label} | {score} | "
                         + _cells(misses_at(hits[mask], f(clips)[mask], f(hour), hours)) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
