"""Soak: hours of audio (commands, pauses, noise, music) through the stream engine as fast
as it goes; resident memory over time, streaming against batch, and event-time drift.

    python benchmarks/bench_soak.py [--hours 2] [--model M] [--manifest PATH]
                                    [--noise-dir DIR] [--seed N]

The audio is a chain of one-minute scenes: commands over a quiet room, commands over noise,
commands over music, music alone, near-silence. There are SCENES distinct scenes (each
made from its own seed), played again and again in a shuffled order, so the same
utterance over the same background comes back at many times: without drift its events
have the same times relative to the utterance whether it plays at minute 3 or minute 117.
Utterances are held-out real clips (the unseen speaker's commands and other words, as the
training recipe keeps out) mixed onto the scene's background; without ../shared, the
recordings of samples/ and generated noise and "music" (for checking the script).

The whole is written to a temporary 16-bit FLAC (never into the repository) and read back
the way `speechrnn listen --input` reads a file: 50 ms blocks into one StreamEngine, with
the process's resident memory recorded each minute of audio. Then `Recognizer.transcribe`
reads the same file, and every command it finds is looked for among the streamed ones
(same text, overlapping times). Writes benchmarks/results/soak.json and rewrites
benchmarks/results/robustness.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MANIFEST, DEFAULT_NOISE, held_out_real, machine  # noqa: E402
from speechrnn.audio import SAMPLE_RATE, read_audio  # noqa: E402
from speechrnn.recognizer import Recognizer  # noqa: E402
from speechrnn.stream import StreamEngine, file_blocks  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "soak.json"
HELD_OUT_SOURCES, HELD_OUT_WORDS = held_out_real()  # as training/configs/default.json
SCENE_SECONDS = 60.0
SCENES = 20  # distinct scenes; the soak repeats them
KINDS = ["quiet", "noise", "music+speech", "music", "pause"]
NOISES = ["rain.flac", "air_conditioner.flac", "water.flac", "wind.flac", "sb-noise1.flac"]
ROOMS = ["room-tone-jarbas.flac", "forest_1.flac"]
BLOCK = 0.05
POOL = 60  # clips drawn from the held-out set
MATCH_SLACK = 0.3  # seconds two events may be apart and still be the same command


@dataclass
class Clip:
    name: str
    expected: str  # the command, or "" for a word that is not one
    audio: np.ndarray


@dataclass
class Placed:
    scene: int  # which distinct scene
    index: int  # which utterance of that scene
    clip: int
    start: float  # seconds in the soak
    end: float


# -- material ---------------------------------------------------------------------------


def load_clips(manifest: Path, commands: list[str], rng: np.random.Generator) -> list[Clip]:
    if not manifest.is_file():
        out = []
        for path in sorted((ROOT / "samples").glob("*.wav")):
            text = path.stem.replace("_", " ")
            out.append(Clip(path.name, text if text in commands else "", read_audio(path)))
        return out
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["source"] in HELD_OUT_SOURCES or r["text"] in HELD_OUT_WORDS]
    chosen = rng.choice(len(rows), size=min(POOL, len(rows)), replace=False)
    return [Clip(rows[i]["path"], rows[i]["text"] if rows[i]["text"] in commands else "",
                 read_audio(manifest.parent / rows[i]["path"])) for i in sorted(chosen)]


def load_backgrounds(noise_dir: Path, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    def read(names):
        return [read_audio(noise_dir / n) for n in names if (noise_dir / n).is_file()]

    music = read(["music.flac"])
    noises = read(NOISES)
    rooms = read(ROOMS)
    n = int(20 * SAMPLE_RATE)
    if not noises:  # generated stand-ins: coloured noise
        white = rng.standard_normal(n)
        noises = [np.cumsum(white) * 0.01 % 1.0 - 0.5, white]
        noises = [(x / np.std(x)).astype(np.float32) for x in noises]
    if not rooms:
        rooms = [(rng.standard_normal(n) * 0.3).astype(np.float32)]
    if not music:  # chords changing each half second
        t = np.arange(n) / SAMPLE_RATE
        notes = rng.choice([220, 247, 262, 294, 330, 349, 392], size=(int(n / 8000) + 1, 3))
        chord = notes[(t * 2).astype(int)]
        music = [np.sin(2 * np.pi * chord * t[:, None]).sum(axis=1).astype(np.float32)]
    return {"noise": noises, "room": rooms, "music": music}


def at_level(x: np.ndarray, db: float) -> np.ndarray:
    return (x * (10 ** (db / 20) / max(float(np.sqrt(np.mean(np.square(x)))), 1e-9))
            ).astype(np.float32)


def looped(x: np.ndarray, n: int, start: int) -> np.ndarray:
    return np.take(x, np.arange(start, start + n) % len(x))


def render_scene(scene: int, clips: list[Clip], backs: dict, seed: int
                 ) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """One minute of audio and its utterances as (clip, start sample, end sample)."""
    rng = np.random.default_rng([seed, scene])
    kind = KINDS[scene % len(KINDS)]
    n = int(SCENE_SECONDS * SAMPLE_RATE)
    if kind in ("music", "music+speech"):
        source, level = backs["music"], (-30.0 if kind == "music" else -38.0)
    elif kind == "noise":
        source, level = backs["noise"], -40.0
    else:
        source, level = backs["room"], (-65.0 if kind == "pause" else -55.0)
    bed = source[int(rng.integers(len(source)))]
    audio = at_level(looped(bed, n, int(rng.integers(len(bed)))), level)
    placed = []
    if kind in ("quiet", "noise", "music+speech"):
        at = int(3.0 * SAMPLE_RATE)  # the VAD gets 3 s of the background first
        while True:
            c = int(rng.integers(len(clips)))
            clip = clips[c].audio
            if at + len(clip) > n - int(2.0 * SAMPLE_RATE):
                break
            audio[at:at + len(clip)] += at_level(clip, -22.0 + float(rng.uniform(-4, 4)))
            placed.append((c, at, at + len(clip)))
            at += len(clip) + int(rng.uniform(1.5, 4.0) * SAMPLE_RATE)
    return np.clip(audio, -1.0, 1.0), placed


def write_soak(path: Path, scenes: int, clips, backs, seed: int,
               distinct: int = SCENES) -> tuple[list[int], list[Placed]]:
    """The soak audio to `path`, scene by scene (bounded memory); the scene played in
    each minute, and the utterances."""
    rng = np.random.default_rng(seed)
    order = list(range(min(distinct, scenes)))
    while len(order) < scenes:
        order += list(rng.permutation(distinct))
    placed = []
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, "PCM_16", format="FLAC") as f:
        for i, scene in enumerate(order[:scenes]):
            audio, utts = render_scene(scene, clips, backs, seed)
            t0 = i * SCENE_SECONDS
            placed += [Placed(scene, k, c, t0 + a / SAMPLE_RATE, t0 + b / SAMPLE_RATE)
                       for k, (c, a, b) in enumerate(utts)]
            f.write(audio)
    return order[:scenes], placed


# -- measuring ------------------------------------------------------------------------------


def rss_mb() -> tuple[float, float]:
    """Resident memory of this process and its anonymous part (heap: where a leak
    grows), in MB; file-backed pages (mapped libraries) come and go with the page cache."""
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["RssAnon"].split()[0]) / 1024)


def stream(recognizer: Recognizer, path: Path, total_s: float):
    """Events (type, text, start, end), the memory curve [(minute, MB)], partials, time."""
    from tqdm import tqdm

    engine = StreamEngine(recognizer)
    events, curve, partials = [], [(0.0, *rss_mb())], 0
    next_mark = 60.0
    t0 = time.time()
    cpu0 = time.process_time()
    with tqdm(total=int(total_s), unit="s audio", file=sys.stderr, disable=None) as bar:
        for block, arrival in file_blocks(path, BLOCK):
            for e in engine.process(block, arrival):
                if e.type == "partial":
                    partials += 1
                else:
                    events.append((e.type, e.text, e.start, e.end))
            if engine.position >= next_mark:
                curve.append((engine.position / 60, *rss_mb()))
                bar.update(60)
                next_mark += 60.0
        events += [(e.type, e.text, e.start, e.end) for e in engine.flush()
                   if e.type != "partial"]
    if curve[-1][0] < engine.position / 60:
        curve.append((engine.position / 60, *rss_mb()))
    return events, curve, partials, time.time() - t0, time.process_time() - cpu0


def overlaps(a0, a1, b0, b1, slack=0.0) -> bool:
    return a0 < b1 + slack and b0 < a1 + slack


def drift(placed: list[Placed], commands: list[tuple]) -> dict:
    """Each utterance's first overlapping command event, relative to the utterance start;
    compared with the same utterance of the same scene at its first playing."""
    first: dict[tuple[int, int], tuple[float, float, float]] = {}
    deltas = []  # (time of the later playing, d start, d end)
    for p in placed:
        hit = next(((s, e) for _, _, s, e in commands if overlaps(s, e, p.start, p.end)), None)
        if hit is None:
            continue
        rel = (hit[0] - p.start, hit[1] - p.start)
        key = (p.scene, p.index)
        if key not in first:
            first[key] = (p.start, *rel)
        else:
            deltas.append((p.start, rel[0] - first[key][1], rel[1] - first[key][2]))
    d = np.array(deltas) if deltas else np.zeros((0, 3))
    half = len(d) // 2
    return {
        "pairs": len(d),
        "utterances_with_event": len(first),
        "max_abs_start_s": float(np.abs(d[:, 1]).max()) if len(d) else None,
        "max_abs_end_s": float(np.abs(d[:, 2]).max()) if len(d) else None,
        "mean_start_s_early": float(d[:half, 1].mean()) if half else None,
        "mean_start_s_late": float(d[half:, 1].mean()) if half else None,
        "identical": int(np.sum((np.abs(d[:, 1]) < 1e-6) & (np.abs(d[:, 2]) < 1e-6))),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=2.0, help="audio length (default 2)")
    p.add_argument("--model", type=Path, help="ONNX model (default: the bundled one)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--noise-dir", type=Path, default=DEFAULT_NOISE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distinct", type=int, default=SCENES,
                   help=f"distinct scenes, repeated to fill the time (default {SCENES})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--no-report", action="store_true", help="do not rewrite robustness.md")
    args = p.parse_args(argv)

    recognizer = Recognizer(args.model)
    rng = np.random.default_rng(args.seed)
    clips = load_clips(args.manifest, list(recognizer.commands), rng)
    backs = load_backgrounds(args.noise_dir, rng)
    scenes = max(1, round(args.hours * 3600 / SCENE_SECONDS))
    with tempfile.TemporaryDirectory(prefix="speechrnn-soak-") as tmp:
        path = Path(tmp) / "soak.flac"
        t = time.time()
        order, placed = write_soak(path, scenes, clips, backs, args.seed, args.distinct)
        build_s = time.time() - t
        total_s = scenes * SCENE_SECONDS
        print(f"soak audio: {total_s / 3600:.2f} h, {len(placed)} utterances, "
              f"built in {build_s:.0f} s", file=sys.stderr, flush=True)
        events, curve, partials, stream_s, stream_cpu = stream(recognizer, path, total_s)
        t = time.time()
        batch = recognizer.transcribe(path)
        batch_s = time.time() - t
    if batch.error:
        raise SystemExit(f"batch transcription failed: {batch.error}")

    commands = [e for e in events if e[0] == "command"]
    found = [s for s in batch.segments
             if any(text == s.text and overlaps(a, b, s.start, s.end, MATCH_SLACK)
                    for _, text, a, b in commands)]
    expected = [q for q in placed if clips[q.clip].expected]
    right = [q for q in expected
             if any(text == clips[q.clip].expected and overlaps(a, b, q.start, q.end)
                    for _, text, a, b in commands)]
    stray = [c for c in commands
             if not any(overlaps(c[2], c[3], q.start, q.end) for q in placed)]
    settle = min(10.0, curve[-1][0] / 2)
    after = [point for point in curve if point[0] >= settle]
    result = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "python benchmarks/bench_soak.py" + (
            f" --hours {args.hours:g}" if args.hours != 2.0 else ""),
        "model": str(recognizer.session.path),
        "model_version": recognizer.info.model_version,
        "commands": len(recognizer.commands),
        "material": (f"{len(clips)} held-out real clips of {args.manifest}" if
                     args.manifest.is_file() else f"{len(clips)} recordings of samples/")
                    + (f"; backgrounds from {args.noise_dir}" if args.noise_dir.is_dir()
                       else "; generated backgrounds"),
        "audio_hours": total_s / 3600,
        "scenes": scenes,
        "distinct_scenes": min(args.distinct, scenes),
        "utterances": len(placed),
        "utterances_of_commands": len(expected),
        "build_s": build_s,
        "stream_s": stream_s,
        "stream_cpu_s": stream_cpu,
        "batch_s": batch_s,
        "memory_curve": [[round(m, 1), round(mb, 1), round(anon, 1)] for m, mb, anon in curve],
        "memory_settle_minute": settle,
        "memory_growth_mb": after[-1][1] - after[0][1],
        "memory_max_growth_mb": max(p[1] for p in after) - after[0][1],
        "anon_memory_growth_mb": after[-1][2] - after[0][2],
        "anon_memory_max_growth_mb": max(p[2] for p in after) - after[0][2],
        "partials": partials,
        "stream_commands": len(commands),
        "stream_rejected": sum(e[0] == "rejected" for e in events),
        "batch_commands": len(batch.segments),
        "batch_found_by_stream": len(found),
        "batch_missed_by_stream": [[s.text, s.start, s.end] for s in batch.segments
                                   if s not in found][:20],
        "stream_right": len(right),
        "stream_stray": len(stray),
        "stream_stray_by_scene": {kind: sum(KINDS[order[min(int(c[2] // SCENE_SECONDS),
                                                            len(order) - 1)] % len(KINDS)]
                                            == kind for c in stray) for kind in KINDS},
        "scene_minutes": {kind: sum(KINDS[o % len(KINDS)] == kind for o in order)
                          for kind in KINDS},
        "drift": drift(placed, commands),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "memory_curve"}, indent=1))
    if not args.no_report:
        from benchmarks.bench_robustness import write_report

        write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
