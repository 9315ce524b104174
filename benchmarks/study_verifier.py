"""Study: does the second-stage verifier (speechrnn.verifier) trade false accepts for
misses better than the decoder's confidence alone, when it is fitted on audio the
benchmarks never use?

    python benchmarks/study_verifier.py [--model M] [--minutes 60] [--train-minutes 40]

Not part of `python -m benchmarks`. It fits a verifier afresh with training.fit_verifier
(training voices and training noise only; see that module) and tests both scores as the
benchmarks test the confidence: false accepts per hour on the false-alarm benchmark's
command-free hour (held-out voices, synthesized music and noise) against misses on its
clean command clips of held-out voices. Both scores are computed on the same pieces,
cut by the stream engine with the decoder's own confidence at the default threshold,
so the comparison is like for like (the suite's own figures can differ a little).
Writes benchmarks/results/verifier.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_false_alarms import FR_SETS, Hour, command_free_audio, pools  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from benchmarks.scoring import long_form_segments  # noqa: E402
from speechrnn.recognizer import Recognizer  # noqa: E402
from speechrnn.verifier import FEATURES  # noqa: E402
from training.fit_verifier import clip_piece, fit_for, piece_inputs  # noqa: E402
from training.train import CONFIG_DIR  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = (80, 57, 40, 30, 20, 10, 5)  # false accepts an hour


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


def held_out_material(recognizer: Recognizer, minutes: float):
    """(set names, hits, clip inputs, hour inputs, hours) from the benchmarks' held-out
    audio; `recognizer` decodes without a verifier."""
    from benchmarks.bench_accuracy import FULL, load_sets

    sets, voices = load_sets(FULL, [], None, recognizer.commands)
    names, hits, rows = [], [], []
    for s in sets:
        if s.name not in FR_SETS:
            continue
        ours = Recognizer(recognizer.session, s.commands, threshold=0.0, verify=False)
        for clip in s.clips:
            if clip.expected:
                piece = clip_piece(clip.audio())
                best, inputs = piece_inputs(ours, piece) if piece is not None else ("", None)
                names.append(s.name)
                hits.append(best == clip.expected)
                rows.append(inputs if inputs is not None else np.array([-99.0, 0, 0, 1]))
    hour = Hour()
    pieces: list[np.ndarray] = []
    long_form_segments(recognizer, command_free_audio(pools(recognizer.commands), minutes * 60,
                                                      voices, hour), on_piece=pieces.append)
    hour_rows = [piece_inputs(recognizer, p)[1] for p in pieces if len(p)]
    return (np.array(names), np.array(hits), np.array(rows), np.array(hour_rows),
            sum(hour.seconds.values()) / 3600)


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
    p.add_argument("--config", type=Path, default=CONFIG_DIR / "default.json",
                   help="the training config whose data the verifier is fitted on")
    p.add_argument("--out", type=Path, default=RESULTS / "verifier.md")
    args = p.parse_args(argv)
    start = time.perf_counter()
    header = machine()
    recognizer = Recognizer(args.model, verify=False)  # the default threshold cuts the hour
    verifier = fit_for(recognizer.session.path, args.config, args.train_clips,
                       args.train_minutes)
    names, hits, clips, hour, hours = held_out_material(recognizer, args.minutes)
    lines = [
        "# Study: a second-stage verifier fitted away from the benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {header}, by `python "
        f"benchmarks/study_verifier.py` in {time.perf_counter() - start:.0f} s; model "
        f"version {recognizer.info.model_version}. What it is: the module docstring.",
        "",
        f"Fitted on {args.train_clips} training-voice command clips and "
        f"{args.train_minutes:.0f} minutes of command-free training audio. Weights "
        "(standardized inputs, intercept first): "
        + ", ".join(f"{w:+.2f}" for w in verifier.weights) + f" for {', '.join(FEATURES)}.",
        "",
        f"Tested on {len(clips)} clean command clips of held-out voices and {len(hour)} "
        f"segments of {hours * 60:.0f} minutes of command-free audio: misses at each "
        "number of false accepts an hour (each row at its own best threshold for that score).",
        "",
        "| clips | score | " + " | ".join(f"{t}/h" for t in TARGETS) + " |",
        "|---|---|" + "---:|" * len(TARGETS),
    ]
    for label, mask in [("all", np.ones(len(names), bool))] + [
            (n, names == n) for n in FR_SETS]:
        for score, f in (("confidence", lambda a: a[:, 0]),
                         ("verifier", verifier.probabilities)):
            lines.append(f"| {label} | {score} | "
                         + _cells(misses_at(hits[mask], f(clips)[mask], f(hour), hours)) + " |")
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
