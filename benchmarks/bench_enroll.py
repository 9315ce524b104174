"""Benchmark: what `python -m training.enroll` does for one real speaker's own voice.

    python benchmarks/bench_enroll.py [--per-command 10] [--minutes 12]

Not part of `python -m benchmarks`: it trains (about --minutes plus two for the
measuring) and needs the `train` extra and the synthetic corpus. The real speaker that
training holds out (the ros-commands recordings, ten words) is split clip by clip at
random: --per-command recordings of each word enroll him, as a user would, and the
other half of his clips, never heard in training, measure him before and after, clean,
under training's noise recordings at 10 and 0 dB and at 8 kHz (the checks of
bench_model.py, against his ten words). Held-out synthetic voices and the real word
"jarvis" show what the enrolment costs the voices it was not for; the runtime's
answers at several thresholds (right, wrong, rejected) and its false accepts on an hour
of audio without his words show what `speechrnn transcribe` gives him. Writes
benchmarks/results/enroll.md. The recordings of both halves come from one session and
one microphone, so the "after" figures are what a user gets at the microphone he
enrolled with, not a new speaker's.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import bench_model as bm  # noqa: E402
from benchmarks.bench_false_alarms import Hour, command_free_audio, pools  # noqa: E402
from benchmarks.common import machine, real_held_out_specs, write_results  # noqa: E402
from benchmarks.scoring import (  # noqa: E402
    false_accepts_per_hour,
    long_form_segments,
    speechrnn_verdict,
)
from benchmarks.testsets import held_out_synthetic  # noqa: E402
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer  # noqa: E402
from speechrnn.session import ModelSession  # noqa: E402
from training.datasets import (  # noqa: E402
    Utterance,
    load_audio,
    read_manifest,
    write_manifest,
)
from training.enroll import CLIPS_PER_EPOCH, enrollment_config, export_models  # noqa: E402
from training.train import CONFIG_DIR, load_config, train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINT = "training/checkpoints/default.pt"


def held_out_speaker() -> list[Utterance]:
    """The clips of words of the real speaker that training holds out."""
    spec = real_held_out_specs()[0]
    return [u for u in read_manifest(spec.manifest) if u.source in spec.sources and u.text]


def split_clips(clips: list[Utterance], per_command: int, seed: int = 0):
    """(enrolment clips, test clips, words): the clips shuffled, half of them kept for
    testing, `per_command` of each word taken from the other half."""
    clips = list(clips)
    random.Random(seed).shuffle(clips)
    test, pool = clips[: len(clips) // 2], clips[len(clips) // 2:]
    words = sorted({u.text for u in clips})
    enrol = [u for w in words for u in [u for u in pool if u.text == w][:per_command]]
    return enrol, sorted(test, key=lambda u: u.path), words


def transform_for(condition: str, noises: list[np.ndarray]):
    """The clip transform of a condition; noise drawn from its own seeded generator, so
    every model hears the same noise."""
    if condition == "clean":
        return None
    if condition == "8 kHz":
        return bm.band_limited_8k
    snr = float(condition.split()[0])
    rng = np.random.default_rng(0)
    return lambda a: bm.noisy(a, noises[rng.integers(len(noises))], snr, rng)


def measure(models: list[str], sets) -> list[tuple[str, list[float]]]:
    """(row name, each model's accuracy in %) for each set and condition."""
    sessions = [ModelSession(m, threads=1) for m in models]
    noises = [load_audio(str(f)) for f in sorted((ROOT.parent / "shared/data/noise")
                                                   .glob("*.flac"))]
    rows = []
    for name, clips, words, conditions in sets:
        for condition in conditions:
            results = bm.outcomes(sessions, clips, words, transform_for(condition, noises),
                                  desc=condition)
            rows.append((f"{name}, {condition}", [100 * bm.figures(r)["accuracy"]
                                                  for r in results]))
    return rows


THRESHOLDS = (0.25, 0.5, DEFAULT_THRESHOLD, 0.9)


def through_runtime(model: str, clips, words: list[str]
                    ) -> dict[float, tuple[float, float, float]]:
    """What the runtime (`speechrnn transcribe --commands`, a short file each) gives at
    each of THRESHOLDS: % of command clips given their word, another word, or nothing."""
    recognizer = Recognizer(model, words)
    said = [(speechrnn_verdict(recognizer, audio), text) for audio, text in clips]
    shares = {}
    for threshold in THRESHOLDS:
        heard = [(v.text(threshold), text) for v, text in said]
        right = sum(got == text for got, text in heard)
        rejected = sum(got == "" for got, _ in heard)
        shares[threshold] = (100 * right / len(heard),
                             100 * (len(heard) - right - rejected) / len(heard),
                             100 * rejected / len(heard))
    return shares


def false_accepts(model: str, words: list[str], clip_pools, minutes: float
                  ) -> dict[float, float]:
    """False accepts an hour at each of THRESHOLDS on `minutes` of command-free audio
    (bench_false_alarms' mix of other words, music and noise; the same for every model),
    decoded against `words` as `speechrnn transcribe` decodes a long file."""
    hour = Hour()
    recognizer = Recognizer(model, words, threshold=min(THRESHOLDS))
    segments = long_form_segments(recognizer, command_free_audio(
        clip_pools, minutes * 60, [], hour))
    hours = sum(hour.seconds.values()) / 3600
    return {t: false_accepts_per_hour([s.confidence for s in segments], hours, t)
            for t in THRESHOLDS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-command", type=int, default=10,
                   help="recordings of each word that enroll the speaker (default 10)")
    p.add_argument("--minutes", type=float, default=12.0, help="training time (default 12)")
    p.add_argument("--alarm-minutes", type=float, default=60.0,
                   help="command-free audio for the false accepts (default 60)")
    p.add_argument("--out", type=Path, default=RESULTS / "enroll.md")
    args = p.parse_args(argv)
    start = time.time()
    header = f"Measured {date.today()} on {machine()}"
    enrol, test, words = split_clips(held_out_speaker(), args.per_command)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        write_manifest(enrol, out / "recordings.jsonl")
        cfg = enrollment_config(load_config(CONFIG_DIR / "finetune_again.json"),
                                out / "recordings.jsonl", len(enrol), out, args.minutes,
                                CHECKPOINT)
        checkpoint = train(cfg)
        (out / "commands.txt").write_text("\n".join(words) + "\n")
        if export_models(checkpoint, out, no_verifier=False):
            raise SystemExit("export or the verifier's fit failed")
        synth = [u for u in held_out_synthetic(ROOT / "data/synth/manifest.jsonl")
                 if u.text in bm.SC_WORDS]
        spec = real_held_out_specs()[0]
        real = read_manifest(spec.manifest)
        jarvis_source = next(u.source for u in real if u.text in spec.words)
        jarvis_words = sorted({u.text for u in real if u.source == jarvis_source and u.text})
        test_clips = bm.load_clips(test)
        sets = [
            ("the enrolled speaker's other clips", test_clips, words,
             ("clean", "10 dB", "0 dB", "8 kHz")),
            ("synthetic, held-out voices", bm.load_clips(synth), bm.SC_WORDS,
             ("clean", "10 dB")),
            ("real, unseen word 'jarvis'",
             bm.load_clips([u for u in real if u.text in spec.words]), jarvis_words,
             ("clean",)),
        ]
        models = ROOT / "speechrnn/models"
        rows = measure([str(models / "speechrnn.onnx"), str(out / "speechrnn.onnx")], sets)
        int8 = [str(models / "speechrnn.int8.onnx"), str(out / "speechrnn.int8.onnx")]
        runtime = [through_runtime(m, test_clips, words) for m in int8]
        clip_pools = pools(words)
        alarms = [false_accepts(m, words, clip_pools, args.alarm_minutes) for m in int8]
        rows.append(("the enrolled speaker's other clips, clean, through the runtime "
                     f"(int8, its verifier, threshold {DEFAULT_THRESHOLD:g})",
                     [shares[DEFAULT_THRESHOLD][0] for shares in runtime]))
    repeat = -(-CLIPS_PER_EPOCH // len(enrol))
    lines = [
        "# Enrolment: the model adapted to one real speaker's voice",
        "",
        f"{header}, by `python benchmarks/bench_enroll.py --per-command {args.per_command} "
        f"--minutes {args.minutes:g}` in {(time.time() - start) / 60:.0f} min.",
        "",
        f"The real speaker training holds out (ros-commands, {len(words)} words: "
        f"{', '.join(words)}) enrolled with {args.per_command} recordings of each word "
        f"({len(enrol)} clips, repeated {repeat} times an epoch) by `training.enroll`'s "
        f"settings: `finetune_again.json` continued from `{CHECKPOINT}` for "
        f"{args.minutes:g} minutes. Tested on the other half of his clips ({len(test)}, "
        "never heard in training; the same session and microphone), against his words; "
        "accuracy as in `model.md` (the right word scores highest, no rejection), both "
        "models fp32 on the same clips and noise; the last row is what `speechrnn "
        "transcribe --commands` (his words) gives: the word, accepted at the default "
        "threshold, each model int8 with its own verifier (the enrolled one's fitted by "
        "`training.enroll`).",
        "",
        "| set | before (the shipped model) | after enrolment |",
        "|---|---:|---:|",
        *[f"| {name} | {before:.1f} % | {after:.1f} % |" for name, (before, after) in rows],
        "",
        "Through the runtime at other thresholds (`--threshold`): of his test clips, the "
        "share given their word, another word, or nothing; and the false accepts an hour "
        f"on {args.alarm_minutes:g} minutes of audio holding none of his words "
        "(`bench_false_alarms.py`'s mix: held-out synthetic voices saying other words, "
        "the real clips of other words or none that training holds out, music, hum and "
        "typing), decoded against his words as `speechrnn transcribe` decodes a long file.",
        "",
        "| threshold | right, before / after | wrong word, before / after "
        "| rejected, before / after | false accepts an hour, before / after |",
        "|---:|---:|---:|---:|---:|",
        *[f"| {t:g} | " + " | ".join(f"{runtime[0][t][i]:.1f} / {runtime[1][t][i]:.1f} %"
                                     for i in range(3))
          + f" | {alarms[0][t]:.0f} / {alarms[1][t]:.0f} |" for t in THRESHOLDS],
    ]
    write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
