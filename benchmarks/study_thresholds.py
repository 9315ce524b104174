"""Study: what a command's own low threshold ("jarvis /0.02/" in a commands list) buys
and costs, for the word training holds out, which the model never heard a real voice say.

    python benchmarks/study_thresholds.py [--model M] [--minutes 60]

Not part of `python -m benchmarks`. Bought: the share of the held-out word's real
recordings recognized as it when decoded against their own list (the real-word set of
accuracy.md, clean), at each threshold. Cost: how often the word fires in the
false-alarm benchmark's command-free audio when it is added to the model's commands,
at each threshold, beside the false accepts of the rest of the list at the default
threshold. Writes benchmarks/results/thresholds.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import testsets  # noqa: E402
from benchmarks.bench_accuracy import FULL, load_sets  # noqa: E402
from benchmarks.bench_false_alarms import Hour, command_free_audio, pools  # noqa: E402
from benchmarks.common import machine, write_results  # noqa: E402
from benchmarks.scoring import long_form_segments, speechrnn_verdict  # noqa: E402
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
THRESHOLDS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, DEFAULT_THRESHOLD)


def recognized(recognizer: Recognizer, word_set: testsets.TestSet,
               thresholds=THRESHOLDS) -> tuple[str, int, list[float]]:
    """(the held-out word, its clips, the share recognized as it at each threshold)."""
    ours = Recognizer(recognizer.session, word_set.commands, threshold=0.0)
    said = [c for c in word_set.clips if c.expected]
    verdicts = [speechrnn_verdict(ours, c.audio()) for c in said]
    words = {c.expected for c in said}
    if len(words) != 1:
        raise ValueError(f"the real-word set says {sorted(words)}, not one word")
    right = np.array([v.best == c.expected for v, c in zip(verdicts, said, strict=True)])
    confidence = np.array([v.confidence for v in verdicts])
    return words.pop(), len(said), [float(np.mean(right & (confidence >= t)))
                                    for t in thresholds]


def false_accepts(recognizer: Recognizer, word: str, voices: list, minutes: float,
                  thresholds=THRESHOLDS) -> tuple[float, list[float], float]:
    """(hours of command-free audio, the word's false accepts an hour at each threshold,
    the rest of the list's at the default threshold), the word added to the model's
    commands at the lowest threshold so that the stream engine cuts as it would."""
    commands = list(recognizer.commands)
    listening = Recognizer(recognizer.session, commands + [f"{word} /{min(thresholds)!r}/"])
    hour = Hour()
    segments = long_form_segments(listening, command_free_audio(pools(commands),
                                                                minutes * 60, voices, hour))
    hours = sum(hour.seconds.values()) / 3600
    fired = np.array([s.confidence for s in segments if s.best == word])
    rest = sum(s.best != word and s.confidence >= DEFAULT_THRESHOLD for s in segments)
    return hours, [float(np.sum(fired >= t)) / hours for t in thresholds], rest / hours


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: bundled)")
    p.add_argument("--minutes", type=float, default=60.0,
                   help="command-free audio to listen to (default 60)")
    p.add_argument("--out", type=Path, default=RESULTS / "thresholds.md")
    args = p.parse_args(argv)
    start = time.perf_counter()
    header = machine()
    recognizer = Recognizer(args.model)
    _, word_set = testsets.real_held_out(recognizer.commands)
    if word_set is None:
        print("error: no held-out real word (../shared/data/speech is not there)",
              file=sys.stderr)
        return 2
    word, clips, shares = recognized(recognizer, word_set)
    _, voices = load_sets(FULL, [], None, recognizer.commands)
    hours, fired, rest = false_accepts(recognizer, word, voices, args.minutes)
    lines = [
        "# Study: a command's own low threshold, for a word the model hears poorly",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {header}, by `python "
        f"benchmarks/study_thresholds.py` in {time.perf_counter() - start:.0f} s; model "
        f"version {recognizer.info.model_version}. What it is: the module docstring.",
        "",
        f"\"{word}\": {clips} held-out real recordings, decoded against "
        f"{', '.join(word_set.commands)}; {hours * 60:.0f} minutes of command-free audio "
        f"decoded with the model's {len(recognizer.commands)} commands and \"{word}\" "
        f"(the rest of the list gave {rest:.0f} false accepts an hour at the default "
        f"{DEFAULT_THRESHOLD}).",
        "",
        f"| \"{word}\" /threshold/ | its recordings recognized | it fired, per hour of "
        "command-free audio |",
        "|---:|---:|---:|",
    ]
    for t, share, per_hour in zip(THRESHOLDS, shares, fired, strict=True):
        lines.append(f"| {t:g} | {100 * share:.1f} % | {per_hour:.0f} |")
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
