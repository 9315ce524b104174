"""Figures for `speechrnn listen`: latency from the end of speech to the command event,
streaming against batch accuracy on the same audio, CPU while listening, and memory.

    python benchmarks/bench_stream.py [--model M] [--commands FILE] [--manifest PATH]
                                      [--noise-dir DIR] [--utterances N] [--quick]

Held-out real clips (by default the source and words training keeps out) are strung into
sessions of about ten utterances with 0.5-1.2 s pauses, the gaps filled with a noise bed at
each clip's own background (its quietest 0.3 s, looped); a third of the sessions also have
a noise or music recording playing under them at 10 dB below the speech. A session holds
clips of one source (one recording setup), as a user speaks in one room. Every session is
played through the stream engine in simulated real time: block k (50 ms) arrives at the
stream time of its last sample, and the engine's clock advances by the real time it
spends, so a latency is the silence the engine waits for plus its computing time,
including any backlog.
Streaming is scored against batch, `Recognizer.transcribe` of the same whole session (the
goal's comparison: a session is longer than 10 s, so transcribe plays it through the same
engine), and, for reference, each utterance cut from its session (with 0.25 s either side)
and transcribed alone, which needs no segmentation of continuous speech. CPU is process time per
second of audio through the microphone path (48 kHz blocks resampled, then the engine);
memory is the peak resident set of `speechrnn listen --input` in a child process.
Writes benchmarks/results/stream.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MANIFEST, DEFAULT_NOISE, held_out_real, machine  # noqa: E402
from speechrnn.audio import SAMPLE_RATE, read_audio  # noqa: E402
from speechrnn.recognizer import Recognizer  # noqa: E402
from speechrnn.session import bundled_model_path  # noqa: E402
from speechrnn.stream import EARLY_CONFIDENCE, SegmentDecoder, StreamEngine  # noqa: E402
from speechrnn.vad import VadConfig  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "stream.md"
HELD_OUT_SOURCES, HELD_OUT_WORDS = held_out_real()  # as training/configs/default.json
BLOCK = 0.05  # seconds per block, as the microphone delivers them
MIC_RATE = 48000
PER_SESSION = 10
MARGIN = 0.25  # seconds kept around an utterance when it is transcribed alone
GOAL_LATENCY = 0.25
BACKGROUNDS = ["music.flac", "rain.flac", "air_conditioner.flac", "water.flac"]


@dataclass
class Utterance:
    name: str
    expected: str  # the command, or "" for a word that is not one
    source: str = ""
    path: Path | None = None
    audio: np.ndarray | None = None  # read when chosen
    start: float = 0.0  # place in its session, seconds
    end: float = 0.0


@dataclass
class Session:
    audio: np.ndarray
    utterances: list[Utterance]
    background: str = ""
    events: list = field(default_factory=list)


# -- material ---------------------------------------------------------------------------


def held_out(manifest: Path, commands: list[str], sources, words) -> list[Utterance]:
    out = []
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        if not row["text"] or not (row["source"] in sources or row["text"] in words):
            continue
        expected = row["text"] if row["text"] in commands else ""
        out.append(Utterance(row["path"], expected, row["source"],
                             manifest.parent / row["path"]))
    return out


def generated(count: int, commands: list[str]) -> list[Utterance]:
    """Stand-ins without a manifest: harmonic bursts, for checking the benchmark only."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        t = np.arange(int(rng.uniform(0.4, 0.8) * SAMPLE_RATE)) / SAMPLE_RATE
        f0 = rng.uniform(100, 220)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 15))
        x = 0.2 * x / np.abs(x).max() * np.sin(np.pi * t / t[-1])
        out.append(Utterance(f"generated-{i}", commands[i % len(commands)],
                             audio=x.astype(np.float32)))
    return out


def room_of(audio: np.ndarray, seconds: float = 0.3) -> np.ndarray:
    """A clip's own background: its quietest `seconds`."""
    n = int(seconds * SAMPLE_RATE)
    if len(audio) <= n:
        return audio.copy()
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(n), mode="valid")
    at = int(np.argmin(power[::160])) * 160
    return audio[at:at + n].copy()


def bed(before: np.ndarray, after: np.ndarray, seconds: float) -> np.ndarray:
    """`seconds` of room sound between two clips, fading from the first one's background
    to the second one's. Each is looped forwards and backwards, so the loop has no jumps."""
    n = int(seconds * SAMPLE_RATE)

    def loop(room: np.ndarray) -> np.ndarray:
        return np.resize(np.concatenate([room, room[::-1]]), n)

    fade = np.linspace(0.0, 1.0, n, dtype=np.float32)
    return ((1 - fade) * loop(before) + fade * loop(after)).astype(np.float32)


def build_sessions(utterances: list[Utterance], noises: dict[str, np.ndarray],
                   seed: int = 0) -> list[Session]:
    rng = random.Random(seed)
    sessions = []
    by_source: dict[str, list[Utterance]] = {}
    for u in utterances:
        by_source.setdefault(u.source, []).append(u)
    groups = [same[k:k + PER_SESSION] for same in by_source.values()
              for k in range(0, len(same), PER_SESSION)]
    for group in groups:
        parts, at = [], 0
        rooms = [room_of(u.audio) for u in group]
        for i, u in enumerate(group):
            gap = bed(rooms[max(0, i - 1)], rooms[i], rng.uniform(0.5, 1.2) if i else 1.0)
            parts.append(gap)
            at += len(gap)
            u.start, u.end = at / SAMPLE_RATE, (at + len(u.audio)) / SAMPLE_RATE
            parts.append(u.audio)
            at += len(u.audio)
        parts.append(bed(rooms[-1], rooms[-1], 1.0))
        audio = np.concatenate(parts)
        name = ""
        usable = [b for b in BACKGROUNDS if b in noises]
        if usable and len(sessions) % 3 == 2:
            name = usable[(len(sessions) // 3) % len(usable)]
            speech_rms = np.sqrt(np.mean(np.concatenate([u.audio for u in group]) ** 2))
            under = np.resize(noises[name], len(audio)).astype(np.float64)
            under *= speech_rms * 10 ** (-10 / 20) / (np.sqrt(np.mean(under**2)) + 1e-12)
            audio = (audio + under).astype(np.float32)
        sessions.append(Session(audio, group, name))
    return sessions


# -- playing and scoring ------------------------------------------------------------------


class SimulatedClock:
    """Stream time that advances with the audio, plus the real time spent processing."""

    def __init__(self):
        self.virtual = 0.0
        self._began = 0.0

    def begin(self, arrival: float) -> None:
        self.virtual = max(self.virtual, arrival)
        self._began = time.perf_counter()

    def end(self) -> None:
        self.virtual += time.perf_counter() - self._began
        self._began = time.perf_counter()

    def now(self) -> float:
        return self.virtual + (time.perf_counter() - self._began)


def stream(decoder: SegmentDecoder, audio: np.ndarray) -> list:
    clock = SimulatedClock()
    engine = StreamEngine(decoder=decoder, clock=clock.now)
    size = int(BLOCK * SAMPLE_RATE)
    events = []
    for i in range(0, len(audio), size):
        arrival = min(i + size, len(audio)) / SAMPLE_RATE
        clock.begin(arrival)
        events += engine.process(audio[i:i + size], arrival=arrival)
        clock.end()
    clock.begin(len(audio) / SAMPLE_RATE)
    return events + engine.flush()


def overlapping(items, u: Utterance):
    """Found commands (text, start, end) overlapping an utterance."""
    return [text for text, start, end in items if start < u.end and end > u.start]


def right(found: list[str], u: Utterance) -> bool:
    return found == ([u.expected] if u.expected else [])


def score_session(recognizer: Recognizer, decoder: SegmentDecoder, s: Session) -> dict:
    s.events = stream(decoder, s.audio)
    streamed = [(e.text, e.start, e.end) for e in s.events if e.type == "command"]
    whole = recognizer.transcribe(s.audio)
    batch_whole = [(g.text, g.start, g.end) for g in whole.segments]
    result = Counter()
    for u in s.utterances:
        a = int(max(0.0, u.start - MARGIN) * SAMPLE_RATE)
        b = int((u.end + MARGIN) * SAMPLE_RATE)
        alone = recognizer.transcribe(s.audio[a:b])
        found_alone = [g.text for g in alone.segments]
        kind = "command" if u.expected else "other"
        result[f"{kind}"] += 1
        result[f"{kind} stream"] += right(overlapping(streamed, u), u)
        result[f"{kind} whole"] += right(overlapping(batch_whole, u), u)
        result[f"{kind} alone"] += right(found_alone, u)
        result[f"{kind} agree"] += (overlapping(streamed, u) == overlapping(batch_whole, u))
        result[f"{kind} agree alone"] += (overlapping(streamed, u) == found_alone)
    hit = lambda t, st, en: any(st < u.end and en > u.start for u in s.utterances)  # noqa: E731
    result["stray stream"] += sum(not hit(*x) for x in streamed)
    result["stray whole"] += sum(not hit(*x) for x in batch_whole)
    return result


def latencies(sessions: list[Session]) -> tuple[np.ndarray, np.ndarray]:
    """Latencies of the command events that got their utterance right, and of partials."""
    good, partial = [], []
    for s in sessions:
        for e in s.events:
            if e.type == "partial":
                partial.append(e.latency)
            elif e.type == "command":
                owners = [u for u in s.utterances if e.start < u.end and e.end > u.start]
                if any(u.expected == e.text for u in owners):
                    good.append(e.latency)
    return np.array(good), np.array(partial)


# -- CPU and memory -------------------------------------------------------------------


def cpu_percent(decoder: SegmentDecoder, audio: np.ndarray) -> float:
    """Process time per second of audio through the microphone path, as % of one core."""
    mic = soxr.resample(audio, SAMPLE_RATE, MIC_RATE).astype(np.float32)
    size = int(BLOCK * MIC_RATE)
    t0 = time.process_time()
    resampler = soxr.ResampleStream(MIC_RATE, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    engine = StreamEngine(decoder=decoder)
    for i in range(0, len(mic), size):
        block = resampler.resample_chunk(mic[i:i + size])
        engine.process(block)
    engine.flush()
    return 100 * (time.process_time() - t0) / (len(audio) / SAMPLE_RATE)


MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                      ).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_memory(args: list[str]) -> tuple[int, float]:
    """(exit status, peak MB) of `python -m speechrnn ARGS` in a child process."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "speechrnn",
                          *args], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True)
    code, rss_kb = res.stdout.split()
    return int(code), int(rss_kb) / 1024


# -- report ---------------------------------------------------------------------------


def pct(part: float, whole: float) -> str:
    return "–" if not whole else f"{100 * part / whole:.1f}%"


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def ms(x: np.ndarray, q: float) -> str:
    return "–" if len(x) == 0 else f"{1000 * np.percentile(x, q):.0f} ms"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: the bundled speechrnn/models/speechrnn.int8.onnx)")
    p.add_argument("--commands", type=Path, default=None,
                   help="command list (default: the model's own)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                   help=f"JSONL manifest of real clips (default: {DEFAULT_MANIFEST})")
    p.add_argument("--noise-dir", type=Path, default=DEFAULT_NOISE,
                   help=f"noise and music recordings (default: {DEFAULT_NOISE})")
    p.add_argument("--threshold", type=float, default=None,
                   help="rejection threshold (default: the recognizer's)")
    p.add_argument("--early-confidence", type=float, default=EARLY_CONFIDENCE,
                   help="confidence at which a command is final before the hangover "
                        f"(default: {EARLY_CONFIDENCE}; never below the threshold)")
    p.add_argument("--utterances", type=int, default=300,
                   help="utterances played (default: 300)")
    p.add_argument("--cpu-seconds", type=float, default=60.0,
                   help="seconds of silence and of speech for the CPU figures")
    p.add_argument("--quick", action="store_true",
                   help="a small run to check the benchmark itself: 30 utterances, 10 s "
                        "CPU runs")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    if args.quick:
        args.utterances, args.cpu_seconds = 30, 10.0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_at_start = machine()

    model = args.model or bundled_model_path()
    recognizer = Recognizer(model, args.commands, args.threshold)
    decoder = SegmentDecoder(recognizer, early_confidence=args.early_confidence)
    commands = recognizer.commands
    print(f"model {model} ({recognizer.info.model_version}), {len(commands)} commands",
          file=sys.stderr)
    noises = {}
    if args.noise_dir.is_dir():
        noises = {f.name: read_audio(f) for f in sorted(args.noise_dir.glob("*.flac"))}
    if args.manifest.exists():
        pool = held_out(args.manifest, commands, HELD_OUT_SOURCES, HELD_OUT_WORDS)
        source = f"held-out real clips of `{args.manifest}`"
    else:
        print(f"no manifest at {args.manifest}: generated sounds only", file=sys.stderr)
        pool = generated(args.utterances, commands)
        source = "generated harmonic bursts (no manifest: checks the benchmark only)"
    rng = random.Random(0)
    listed = [u for u in pool if u.expected]
    others = [u for u in pool if not u.expected]
    n_other = min(len(others), args.utterances // 6)
    chosen = rng.sample(listed, min(len(listed), args.utterances - n_other))
    chosen += rng.sample(others, n_other)
    rng.shuffle(chosen)
    for u in chosen:
        if u.audio is None:
            u.audio = read_audio(u.path)
    sessions = build_sessions(chosen, noises)
    seconds = sum(len(s.audio) for s in sessions) / SAMPLE_RATE
    print(f"{len(chosen)} utterances in {len(sessions)} sessions, {seconds:.0f} s",
          file=sys.stderr)

    totals, by_background = Counter(), {}
    t0 = time.perf_counter()
    for i, s in enumerate(sessions):
        r = score_session(recognizer, decoder, s)
        totals.update(r)
        by_background.setdefault(s.background or "none", Counter()).update(r)
        print(f"session {i + 1}/{len(sessions)}", file=sys.stderr, end="\r")
    scoring_seconds = time.perf_counter() - t0
    good, partial = latencies(sessions)
    all_commands = np.array([e.latency for s in sessions for e in s.events
                             if e.type == "command"])
    in_goal = sum(1 for x in good if x <= GOAL_LATENCY)

    n_cpu = int(args.cpu_seconds * SAMPLE_RATE)

    def at_level(noise: np.ndarray, db: float) -> np.ndarray:
        x = np.resize(noise, n_cpu).astype(np.float64)
        return (x / (np.sqrt(np.mean(x**2)) + 1e-12) * 10 ** (db / 20)).astype(np.float32)

    white = np.random.default_rng(0).standard_normal(SAMPLE_RATE * 5)
    room = noises.get("room-tone-jarbas.flac", white)
    cpu = {
        "silence (room tone, or white noise without --noise-dir, -60 dB)":
            cpu_percent(decoder, at_level(room, -60.0)),
        "steady noise (air conditioner, or the same, -35 dB)":
            cpu_percent(decoder, at_level(noises.get("air_conditioner.flac", room), -35.0)),
        "continuous speech (clips back to back)":
            cpu_percent(decoder, np.resize(np.concatenate([u.audio for u in chosen]), n_cpu)),
    }

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "session.wav"
        longest = max(sessions, key=lambda s: len(s.audio))
        sf.write(wav, longest.audio, SAMPLE_RATE)
        model_args = ["--model", str(model)] if args.model else []
        if args.commands:
            model_args += ["--commands", str(args.commands)]
        code, peak = peak_memory(["listen", "--jsonl", "--input", str(wav), *model_args])
    own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    idle = next(iter(cpu.values()))

    c, o = totals["command"], totals["other"]
    stream_acc = totals["command stream"] / c if c else float("nan")
    alone_acc = totals["command alone"] / c if c else float("nan")
    whole_acc = totals["command whole"] / c if c else float("nan")
    vad = VadConfig()
    lines = [
        "# speechrnn listen: latency, streaming against batch, CPU, memory",
        "",
        f"Written by `benchmarks/bench_stream.py{' --quick' if args.quick else ''}` on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        "",
        f"- machine: {load_at_start}",
        f"- model: `{model}`, version `{recognizer.info.model_version}`",
        f"- commands: {len(commands)} ({args.commands or 'the model’s default list'}), "
        f"threshold {recognizer.threshold}, early confidence {decoder.early_confidence}",
        f"- audio: {len(chosen)} utterances ({c} of listed commands, {o} of other words), "
        f"{source}, in {len(sessions)} sessions ({seconds:.0f} s); "
        f"{sum(1 for s in sessions if s.background)} sessions with a recording playing "
        "under the speech at 10 dB below it",
        f"- engine: {BLOCK * 1000:.0f} ms blocks in simulated real time (see the script's "
        "docstring)",
        "",
        "## Latency: end of speech to the event",
        "",
        "| events | count | p50 | p95 | max |",
        "|---|---|---|---|---|",
        f"| `command`, right | {len(good)} | {ms(good, 50)} | {ms(good, 95)} | "
        f"{ms(good, 100)} |",
        f"| `command`, all | {len(all_commands)} | {ms(all_commands, 50)} | "
        f"{ms(all_commands, 95)} | {ms(all_commands, 100)} |",
        f"| `partial` | {len(partial)} | {ms(partial, 50)} | {ms(partial, 95)} | "
        f"{ms(partial, 100)} |",
        "",
        f"{in_goal} of {len(good)} right commands ({pct(in_goal, len(good))}) came within "
        f"{GOAL_LATENCY * 1000:.0f} ms. A command is emitted {vad.post_roll:g} s after the "
        "VAD's end of its speech when it is already certain, else after the "
        f"{vad.hangover:g} s hangover; the VAD ends a word {vad.end_db:g} dB above the "
        f"sound before it and {vad.peak_drop_db:g} dB below its loudest frame. The end of "
        "speech is the end of the decoded speech region (what `transcribe` reports); the "
        "block holding it arrives up to 50 ms after it. A partial's latency counts from the "
        "block holding the last audio it decoded.",
        "",
        "## Accuracy: streaming against batch on the same audio",
        "",
        "An utterance is right when the command events overlapping it are exactly its "
        "command (for other words: none).",
        "",
        "| | listed commands right | other words rejected | stray commands |",
        "|---|---|---|---|",
        f"| streaming (`listen`) | {pct(totals['command stream'], c)} | "
        f"{pct(totals['other stream'], o)} | {totals['stray stream']} |",
        f"| batch: `transcribe` of the whole session | {pct(totals['command whole'], c)} | "
        f"{pct(totals['other whole'], o)} | {totals['stray whole']} |",
        f"| reference: each utterance cut out and transcribed alone | "
        f"{pct(totals['command alone'], c)} | {pct(totals['other alone'], o)} | – |",
        "",
        f"Streaming minus batch on the same audio: {100 * (stream_acc - whole_acc):+.1f} "
        f"points (goal: within 1); they gave the same commands on "
        f"{pct(totals['command agree'] + totals['other agree'], c + o)} of utterances. "
        f"Streaming minus each-utterance-alone: {100 * (stream_acc - alone_acc):+.1f} points "
        f"(what segmenting continuous speech costs or gains; same commands on "
        f"{pct(totals['command agree alone'] + totals['other agree alone'], c + o)}).",
        "",
        "| background | utterances | streaming right | batch (whole session) right | "
        "alone right |",
        "|---|---|---|---|---|",
    ]
    for name, r in sorted(by_background.items()):
        n = r["command"] + r["other"]
        lines.append(f"| {name} | {n} | {pct(r['command stream'] + r['other stream'], n)} | "
                     f"{pct(r['command whole'] + r['other whole'], n)} | "
                     f"{pct(r['command alone'] + r['other alone'], n)} |")
    lines += [
        "",
        "## CPU while listening (% of one core)",
        "",
        "| input | CPU |",
        "|---|---|",
        *[f"| {name} | {value:.1f}% |" for name, value in cpu.items()],
        "",
        f"Process time per second of audio, {args.cpu_seconds:g} s each, through the "
        f"microphone path ({MIC_RATE} Hz blocks resampled to 16 kHz, then the engine).",
        "",
        "## Memory",
        "",
        f"Peak resident memory of `speechrnn listen --jsonl --input` on a "
        f"{len(longest.audio) / SAMPLE_RATE:.0f}-second session: {peak:.0f} MB (exit "
        f"{code}). This benchmark's own process peaked at {own_peak:.0f} MB with all its "
        "audio in memory.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        f"| p95 latency of right commands at most {GOAL_LATENCY * 1000:.0f} ms | "
        f"{ms(good, 95)} | {met(len(good) > 0 and np.percentile(good, 95) <= GOAL_LATENCY)} |",
        f"| streaming accuracy within 1 point of batch | "
        f"{100 * (stream_acc - whole_acc):+.1f} points | "
        f"{met(abs(stream_acc - whole_acc) <= 0.01)} |",
        f"| idle CPU at most 5% of a core | {idle:.1f}% | {met(idle <= 5.0)} |",
        f"| memory at most 250 MB | {peak:.0f} MB | {met(peak <= 250)} |",
        "",
        f"Scoring took {scoring_seconds:.1f} s.",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
