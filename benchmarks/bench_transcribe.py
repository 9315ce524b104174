"""Figures for `speechrnn transcribe`: accuracy and rejection on held-out real voices, speed
of the whole command on 1,000 one-second clips, and time and peak memory on a one-hour file.

    python benchmarks/bench_transcribe.py [--model M] [--manifest PATH] [--noise-dir DIR]
                                          [--commands FILE] [--quick]

Accuracy uses the clips of the manifest that training keeps out (by default the sources and
words the default training config holds out): clips of a listed command must give that
command, clips of other words and clips without words must give nothing, and so must
stretches of the noise recordings. Throughput and memory run the real command in a child
process (start-up included); peak memory is the child's maximum resident set size.
Writes benchmarks/results/transcribe.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MANIFEST, DEFAULT_NOISE, held_out_real, machine  # noqa: E402
from speechrnn.audio import SAMPLE_RATE, read_audio  # noqa: E402
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer, speech_regions  # noqa: E402
from speechrnn.session import bundled_model_path  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "transcribe.md"
HELD_OUT_SOURCES, HELD_OUT_WORDS = held_out_real()  # as training/configs/default.json
THRESHOLDS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
NOISE_CHUNK = 2.0  # seconds of each noise recording scored as one clip


@dataclass
class Clip:
    name: str
    kind: str  # "command", "other word" or "no word"
    expected: str  # the command, or "" when nothing should be recognized
    path: str | None = None
    audio: np.ndarray | None = None


def held_out_clips(manifest: Path, sources: list[str], words: list[str], commands: list[str],
                   everything: bool) -> list[Clip]:
    clips = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if not (everything or row["source"] in sources or row["text"] in words):
            continue
        text = row["text"]
        kind = "no word" if not text else "command" if text in commands else "other word"
        clips.append(Clip(row["path"], kind, text if kind == "command" else "",
                          path=str(manifest.parent / row["path"])))
    return clips


def noise_clips(folder: Path) -> list[Clip]:
    clips = []
    for path in sorted(folder.glob("*.flac")) + sorted(folder.glob("*.wav")):
        audio = read_audio(path)
        step = int(NOISE_CHUNK * SAMPLE_RATE)
        for i in range(0, len(audio) - step + 1, step):
            clips.append(Clip(f"{path.name}@{i // SAMPLE_RATE}s", "noise", "",
                              audio=audio[i:i + step]))
    return clips


def generated_clips(count: int) -> list[Clip]:
    """Stand-ins when no manifest is at hand: tone bursts and noise, all to be rejected."""
    rng = np.random.default_rng(0)
    clips = []
    for i in range(count):
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        audio = 0.05 * rng.standard_normal(SAMPLE_RATE)
        audio[4000:12000] += 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t[4000:12000])
        clips.append(Clip(f"generated-{i}", "noise", "", audio=audio.astype(np.float32)))
    return clips


# -- accuracy -------------------------------------------------------------------------


def score(recognizer: Recognizer, clips: list[Clip]) -> list[tuple[Clip, str, float]]:
    """(clip, text, confidence) per clip; with threshold 0 the text is the best command."""
    out = []
    for clip in clips:
        t = recognizer.transcribe(clip.path if clip.path else clip.audio)
        conf = max((s.confidence for s in t.segments), default=0.0)
        out.append((clip, t.text, conf))
    return out


def rates(results, threshold: float) -> dict[str, float]:
    def recognized(text: str, conf: float) -> str:
        return text if text and conf >= threshold else ""

    by_kind = defaultdict(list)
    for clip, text, conf in results:
        by_kind[clip.kind].append(recognized(text, conf) == clip.expected)
    wrong = [recognized(text, conf) not in ("", clip.expected)
             for clip, text, conf in results if clip.kind == "command"]
    share = {k: float(np.mean(v)) if v else float("nan") for k, v in by_kind.items()}
    share["substituted"] = float(np.mean(wrong)) if wrong else float("nan")
    return share


def reliability(results, bins=(0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)) -> list[str]:
    """Table rows: for the best command of every clip, how often it is right at each level
    of confidence (a calibrated confidence is right that share of the time)."""
    rows = []
    conf = np.array([c for _, _, c in results])
    right = np.array([bool(text) and text == clip.expected for clip, text, _ in results])
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        inside = (conf >= lo) & ((conf < hi) if hi < 1.0 else (conf <= hi))
        if inside.any():
            rows.append(f"| {lo:.1f}-{hi:.1f} | {int(inside.sum())} | "
                        f"{conf[inside].mean():.2f} | {right[inside].mean():.2f} |")
    weights = [int(r.split("|")[2]) for r in rows]
    gaps = [abs(float(r.split("|")[3]) - float(r.split("|")[4])) for r in rows]
    ece = sum(w * g for w, g in zip(weights, gaps, strict=True)) / max(1, sum(weights))
    return rows + ["", f"Expected calibration error: {ece:.3f}."]


def pct(x: float) -> str:
    return "–" if x != x else f"{100 * x:.1f}%"


# -- throughput and memory: the real command in a child process -------------------------

MEASURE = """
import resource, subprocess, sys, time
start = time.perf_counter()
with open(sys.argv[1], "w") as out:
    code = subprocess.run(sys.argv[2:], stdout=out).returncode
wall = time.perf_counter() - start
print(code, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_command(args: list[str], output: Path) -> tuple[int, float, float]:
    """(exit status, wall seconds, peak MB) of `python -m speechrnn ARGS`."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", MEASURE, str(output), sys.executable, "-m",
                          "speechrnn", *args], capture_output=True, text=True, env=env,
                         cwd=ROOT, check=True)
    code, wall, rss_kb = res.stdout.split()
    return int(code), float(wall), int(rss_kb) / 1024


def one_second(audio: np.ndarray) -> np.ndarray:
    """The loudest second of a clip (zero-padded if shorter)."""
    n = SAMPLE_RATE
    if len(audio) <= n:
        return np.pad(audio, (0, n - len(audio)))
    energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(n // 10), mode="valid")
    centre = int(energy.argmax()) + n // 20
    start = min(max(0, centre - n // 2), len(audio) - n)
    return audio[start:start + n]


def write_throughput_set(clips: list[Clip], folder: Path, count: int) -> None:
    sources = [c for c in clips if c.path] or clips
    for i in range(count):
        clip = sources[i % len(sources)]
        audio = read_audio(clip.path) if clip.path else clip.audio
        sf.write(folder / f"clip{i:04d}.wav", one_second(audio), SAMPLE_RATE, subtype="PCM_16")


def speech_part(audio: np.ndarray, margin: float = 0.25, fade: float = 0.05) -> np.ndarray:
    """The spoken part of a clip with a little context, faded in and out, so that a long
    recording keeps one steady background instead of each clip's own room sound."""
    regions = speech_regions(audio)
    if regions:
        pad = int(margin * SAMPLE_RATE)
        audio = audio[max(0, regions[0][0] - pad):regions[-1][1] + pad]
    audio = audio.astype(np.float32, copy=True)
    n = min(int(fade * SAMPLE_RATE), len(audio) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        audio[:n] *= ramp
        audio[-n:] *= ramp[::-1]
    return audio


def write_long_file(path: Path, clips: list[Clip], noise: list[Clip], seconds: float,
                    seed: int = 0) -> list[tuple[float, float, str]]:
    """A long recording written block by block: one steady background (the noise
    recordings at about -50 dB, one after another) with a spoken clip every 4-8 s.
    Returns (start, end, expected text) of the inserted speech."""
    rng = random.Random(seed)
    speech = [c for c in clips if c.path] or clips
    bed = np.concatenate([c.audio for c in noise]) if noise else np.zeros(SAMPLE_RATE)
    bed = (bed / (np.sqrt(np.mean(bed ** 2)) + 1e-9) * 0.003).astype(np.float32)
    inserted = []
    written = 0

    def background(n: int) -> np.ndarray:
        return np.take(bed, np.arange(written, written + n), mode="wrap")

    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        while written < seconds * SAMPLE_RATE:
            gap = int(rng.uniform(4.0, 8.0) * SAMPLE_RATE)
            f.write(background(gap))
            written += gap
            clip = speech[rng.randrange(len(speech))]
            audio = speech_part(read_audio(clip.path) if clip.path else clip.audio)
            f.write(audio + background(len(audio)))
            inserted.append((written / SAMPLE_RATE, (written + len(audio)) / SAMPLE_RATE,
                             clip.expected))
            written += len(audio)
    return inserted


def long_file_accuracy(jsonl: Path, inserted) -> tuple[int, int, int]:
    """(commands found at their place, commands inserted, segments matching nothing)."""
    segments = json.loads(jsonl.read_text().splitlines()[0])["segments"]
    expected = [(s, e, t) for s, e, t in inserted if t]
    found = sum(any(seg["text"] == t and seg["start"] < e and seg["end"] > s
                    for seg in segments) for s, e, t in expected)
    stray = sum(not any(seg["text"] == t and seg["start"] < e and seg["end"] > s
                        for s, e, t in expected) for seg in segments)
    return found, len(expected), stray


# -- report ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: the bundled speechrnn/models/speechrnn.int8.onnx)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                   help=f"JSONL manifest of real clips (default: {DEFAULT_MANIFEST})")
    p.add_argument("--noise-dir", type=Path, default=DEFAULT_NOISE,
                   help=f"noise recordings to be rejected (default: {DEFAULT_NOISE})")
    p.add_argument("--commands", type=Path, default=None,
                   help="command list (default: the model's own, the 35 Speech Commands words)")
    p.add_argument("--held-out-source", action="append", default=None, metavar="SOURCE",
                   help="manifest source kept out of training (repeatable; default: "
                        f"{', '.join(HELD_OUT_SOURCES)})")
    p.add_argument("--held-out-word", action="append", default=None, metavar="WORD",
                   help=f"word kept out of training (repeatable; default: "
                        f"{', '.join(HELD_OUT_WORDS)})")
    p.add_argument("--all-clips", action="store_true",
                   help="score every clip of the manifest, not only held-out ones")
    p.add_argument("--clips", type=int, default=1000, help="one-second clips for throughput")
    p.add_argument("--hours", type=float, default=1.0, help="length of the long file")
    p.add_argument("--quick", action="store_true",
                   help="a small run to check the benchmark itself: 60 accuracy clips, "
                        "100 throughput clips, a 3-minute long file")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.clips, args.hours = 100, 0.05

    model = args.model or bundled_model_path()
    recognizer = Recognizer(model, args.commands, threshold=0.0)
    commands = recognizer.commands
    print(f"model {model} ({recognizer.info.model_version}), {len(commands)} commands",
          file=sys.stderr)

    if args.manifest.exists():
        clips = held_out_clips(args.manifest, args.held_out_source or HELD_OUT_SOURCES,
                               args.held_out_word or HELD_OUT_WORDS, commands, args.all_clips)
    else:
        print(f"no manifest at {args.manifest}: accuracy on generated sounds only",
              file=sys.stderr)
        clips = []
    noise = noise_clips(args.noise_dir) if args.noise_dir.is_dir() else []
    if not clips and not noise:
        noise = generated_clips(60)
    if args.quick:
        rng = random.Random(0)
        clips = rng.sample(clips, min(60, len(clips)))
        noise = noise[:: max(1, len(noise) // 20)]
    evaluated = clips + noise

    t0 = time.perf_counter()
    results = score(recognizer, evaluated)
    accuracy_seconds = time.perf_counter() - t0
    kinds = Counter(c.kind for c in evaluated)
    default = Recognizer(recognizer.session, args.commands)
    actual = score(default, evaluated)
    at_default = rates(actual, DEFAULT_THRESHOLD)

    per_word = defaultdict(lambda: [0, 0, 0])  # clips, recognized right, rejected
    for clip, text, _ in actual:
        key = clip.expected or (Path(clip.name).parent.name if clip.kind != "noise"
                                else "noise")
        per_word[(clip.kind, key)][0] += 1
        per_word[(clip.kind, key)][1] += text == clip.expected
        per_word[(clip.kind, key)][2] += text == ""

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_args = ["--model", str(model)] if args.model else []
        if args.commands:
            model_args += ["--commands", str(args.commands)]
        folder = tmp / "clips"
        folder.mkdir()
        write_throughput_set(clips or evaluated, folder, args.clips)
        runs = []
        for jobs in (1, 2):
            code, wall, peak = run_command(
                ["transcribe", "--format", "jsonl", "--jobs", str(jobs), *model_args,
                 str(folder)], tmp / "out.jsonl")
            runs.append((jobs, code, wall, peak))
            print(f"throughput jobs={jobs}: {wall:.1f} s", file=sys.stderr)
        code1, start_wall, start_peak = run_command(
            ["transcribe", *model_args, str(folder / "clip0000.wav")], tmp / "one.txt")

        long_path = tmp / "long.wav"
        inserted = write_long_file(long_path, clips or evaluated, noise,
                                   args.hours * 3600)
        long_seconds = sf.info(long_path).duration
        code2, long_wall, long_peak = run_command(
            ["transcribe", "--format", "jsonl", *model_args, str(long_path)],
            tmp / "long.jsonl")
        found, expected, stray = long_file_accuracy(tmp / "long.jsonl", inserted)
        print(f"long file: {long_wall:.1f} s, {long_peak:.0f} MB", file=sys.stderr)

    lines = [
        "# speechrnn transcribe: accuracy, rejection, speed, memory",
        "",
        f"Written by `benchmarks/bench_transcribe.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"- machine: {machine()}",
        f"- model: `{model}`, version `{recognizer.info.model_version}`, trained on "
        f"{recognizer.info.training_data}",
        f"- commands: {len(commands)} ({args.commands or 'the model’s default list'})",
        f"- clips: {kinds['command']} of listed commands, {kinds['other word']} of other "
        f"words, {kinds['no word']} without words (held-out real voices from "
        f"`{args.manifest}`), and {kinds['noise']} {NOISE_CHUNK:g}-second stretches of "
        f"`{args.noise_dir}`",
        "",
        f"## Accuracy and rejection at the default threshold ({DEFAULT_THRESHOLD})",
        "",
        "| listed command recognized | wrong command | other words rejected | "
        "no-word clips rejected | noise rejected |",
        "|---|---|---|---|---|",
        f"| {pct(at_default.get('command', float('nan')))} | "
        f"{pct(at_default['substituted'])} | {pct(at_default.get('other word', float('nan')))} "
        f"| {pct(at_default.get('no word', float('nan')))} | "
        f"{pct(at_default.get('noise', float('nan')))} |",
        "",
        "## Threshold sweep",
        "",
        "From each clip's best command and confidence (files decoded whole; the real command "
        "also tries speech regions one by one when a whole file is rejected, which the table "
        "above includes).",
        "",
        "| threshold | listed command recognized | wrong command | other words rejected | "
        "no-word clips rejected | noise rejected |",
        "|---|---|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        r = rates(results, t)
        lines.append(f"| {t} | {pct(r.get('command', float('nan')))} | "
                     f"{pct(r['substituted'])} | {pct(r.get('other word', float('nan')))} | "
                     f"{pct(r.get('no word', float('nan')))} | "
                     f"{pct(r.get('noise', float('nan')))} |")
    lines += ["", "## Calibration", "",
              "Every clip's best command (threshold 0), grouped by confidence: how often it "
              "is the right answer (clips of other words and noise never are).", "",
              "| confidence | clips | mean confidence | share right |", "|---|---|---|---|",
              *reliability(results)]
    lines += ["", "## Per word (default threshold)", "",
              "| kind | word | clips | right | rejected |", "|---|---|---|---|---|"]
    for (kind, word), (n, right, rejected) in sorted(per_word.items()):
        lines.append(f"| {kind} | {word} | {n} | {pct(right / n)} | {pct(rejected / n)} |")
    lines += [
        "",
        "## Speed and memory of the whole command (start-up included)",
        "",
        "| run | wall time | files/s | real-time factor | peak memory | exit |",
        "|---|---|---|---|---|---|",
        f"| one 1-second clip (start-up) | {start_wall:.2f} s | – | – | {start_peak:.0f} MB "
        f"| {code1} |",
    ]
    for jobs, code, wall, peak in runs:
        lines.append(f"| {args.clips} one-second clips, --jobs {jobs} | {wall:.1f} s | "
                     f"{args.clips / wall:.0f} | {wall / args.clips:.4f} | {peak:.0f} MB | "
                     f"{code} |")
    lines += [
        f"| one {long_seconds / 60:.0f}-minute file | {long_wall:.1f} s | – | "
        f"{long_wall / long_seconds:.4f} | {long_peak:.0f} MB | {code2} |",
        "",
        f"Goals: 1,000 one-second clips in under 20 s; a one-hour file in under 40 s and "
        f"300 MB. The long file is steady background noise (about -50 dB) with a spoken "
        f"clip every 4-8 s; {found} of its {expected} listed commands were found at their "
        f"place, and {stray} segments matched no inserted command.",
        "",
        f"Accuracy scoring took {accuracy_seconds:.1f} s in-process for {len(evaluated)} "
        "clips.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
