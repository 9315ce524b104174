"""Speed, size and memory of the exported model: torch vs onnxruntime fp32 vs int8.

    python benchmarks/bench_export.py [--checkpoint training/checkpoints/default.pt] [--quick]

Writes benchmarks/results/export.md. Each clip is one call with batch 1 (what the runtime
does per speech segment); the real-time factor is model compute time / audio duration.
Peak memory is measured in child processes, so the onnxruntime figure excludes torch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import DEFAULT_MANIFEST, cpu_name  # noqa: E402

SAMPLE_RATE = 16000
DEFAULT_CHECKPOINT = ROOT / "training" / "checkpoints" / "default.pt"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "export.md"
MEMORY_CLIPS = 50  # peak memory depends on the longest clips, not on how many run


@dataclass
class Timing:
    engine: str
    threads: int
    seconds: list[float]  # compute time per clip

    def rtf(self, audio_seconds: float) -> float:
        return sum(self.seconds) / audio_seconds


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio
    try:
        import soxr

        return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    except ImportError:
        n = round(len(audio) * SAMPLE_RATE / rate)
        return np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(audio)),
                         audio).astype(np.float32)


def load_clips(manifest: Path, count: int, seed: int) -> tuple[list[np.ndarray], str]:
    """`count` clips sampled from a manifest (JSONL: path, text), or noise if there is none."""
    if not manifest.is_file():
        rng = np.random.default_rng(seed)
        clips = [(0.05 * rng.standard_normal(int(SAMPLE_RATE * rng.uniform(0.5, 3.0))))
                 .astype(np.float32) for _ in range(count)]
        return clips, f"{count} synthetic noise clips, 0.5-3 s (no manifest at {manifest})"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    clips, bad = [], 0
    for row in rows:
        if len(clips) == count:
            break
        try:
            audio, rate = sf.read(str(manifest.parent / row["path"]), dtype="float32",
                                  always_2d=True)
        except (OSError, sf.LibsndfileError):
            bad += 1
            continue
        clips.append(resample(audio.mean(axis=1), rate))
    note = f"{len(clips)} clips sampled (seed {seed}) from {manifest}"
    return clips, note + (f"; {bad} unreadable skipped" if bad else "")


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_onnx(path: Path, clips: list[np.ndarray], threads: int, keep: list | None = None):
    sess = session(path, threads)

    def run(clip):
        return sess.run(None, {"audio": clip[None],
                               "audio_lengths": np.array([len(clip)], np.int64)})

    for clip in clips[:3]:
        run(clip)
    seconds = []
    for clip in clips:
        start = time.perf_counter()
        log_probs, _ = run(clip)
        seconds.append(time.perf_counter() - start)
        if keep is not None:
            keep.append(log_probs[0].argmax(-1))
    return seconds


def time_torch(model, clips: list[np.ndarray], threads: int) -> list[float]:
    import torch

    torch.set_num_threads(threads)
    seconds = []
    with torch.inference_mode():
        for clip in clips[:3]:
            model(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
        for clip in clips:
            start = time.perf_counter()
            model(torch.from_numpy(clip)[None], torch.tensor([len(clip)]))
            seconds.append(time.perf_counter() - start)
    return seconds


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc (Linux), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(engine: str, model_path: str, clips_path: str) -> None:
    """Child process: run the clips on one engine, print baseline and peak RSS as JSON."""
    clips = list(np.load(clips_path).values())
    if engine == "torch":
        import torch

        sys.path.insert(0, str(ROOT))
        from training.checkpoint import load_model

        baseline = status_mb("VmRSS")
        model = load_model(model_path)
        time_torch(model, clips, threads=1)
        del torch
    else:
        baseline = status_mb("VmRSS")
        time_onnx(Path(model_path), clips, threads=1)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent's image.
    peak = status_mb("VmHWM")
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak}))


def measure_memory(engine: str, model_path: Path, clips: list[np.ndarray], tmp: Path) -> dict:
    longest = sorted(clips, key=len)[-MEMORY_CLIPS:]
    clips_path = tmp / "memory_clips.npz"
    np.savez(clips_path, *longest)
    done = subprocess.run(
        [sys.executable, __file__, "--memory-child", engine, str(model_path), str(clips_path)],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"memory probe for {engine} failed: {done.stderr[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def greedy(ids: np.ndarray) -> tuple[int, ...]:
    collapsed = ids[np.r_[True, ids[1:] != ids[:-1]]]
    return tuple(int(i) for i in collapsed if i != 0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark torch vs onnxruntime fp32 vs int8: "
                                "real-time factor, file sizes, peak memory.")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="training checkpoint (default: training/checkpoints/default.pt)")
    p.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST,
                   help="JSONL manifest of clips (path, text); synthetic noise if missing "
                        "(default: ../shared/data/speech/manifest.jsonl)")
    p.add_argument("--clips", type=int, default=None, help="clips to time (default 500)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                   help="thread counts to measure (default: 1 2)")
    p.add_argument("--quick", action="store_true", help="20 clips: proves the benchmark runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report to write")
    p.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.clips is None:
        args.clips = 20 if args.quick else 500
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist; train one or pass "
              "--checkpoint", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import torch

    from export.onnx_export import CheckpointError, ExportError, export_checkpoint
    from training.checkpoint import load_model

    load_avg = os.getloadavg()
    clips, clip_note = load_clips(args.manifest, args.clips, args.seed)
    if not clips:
        print(f"error: no readable clips in {args.manifest}", file=sys.stderr)
        return 2
    audio_seconds = sum(len(c) for c in clips) / SAMPLE_RATE
    print(f"{clip_note}: {audio_seconds:.0f} s of audio", flush=True)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        try:
            start = time.perf_counter()
            fp32 = export_checkpoint(args.checkpoint, tmp / "model.onnx")
            export_seconds = time.perf_counter() - start
            int8 = export_checkpoint(args.checkpoint, tmp / "model-int8.onnx", int8=True)
        except (CheckpointError, ExportError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        model = load_model(args.checkpoint)
        sizes = {"checkpoint (.pt)": args.checkpoint.stat().st_size,
                 "ONNX fp32": fp32.path.stat().st_size, "ONNX int8": int8.path.stat().st_size}

        timings: list[Timing] = []
        argmax: dict[str, list[np.ndarray]] = {"fp32": [], "int8": []}
        for threads in args.threads:
            first = threads == args.threads[0]
            print(f"timing with {threads} thread(s)", flush=True)
            timings.append(Timing("torch", threads, time_torch(model, clips, threads)))
            timings.append(Timing("onnxruntime fp32", threads, time_onnx(
                fp32.path, clips, threads, argmax["fp32"] if first else None)))
            timings.append(Timing("onnxruntime int8", threads, time_onnx(
                int8.path, clips, threads, argmax["int8"] if first else None)))

        print("measuring peak memory", flush=True)
        memory = {"torch": measure_memory("torch", args.checkpoint, clips, tmp),
                  "onnxruntime fp32": measure_memory("onnx", fp32.path, clips, tmp),
                  "onnxruntime int8": measure_memory("onnx", int8.path, clips, tmp)}

    frames_agree = np.mean(np.concatenate(
        [a == b for a, b in zip(argmax["fp32"], argmax["int8"], strict=True)]))
    greedy_agree = np.mean([greedy(a) == greedy(b)
                            for a, b in zip(argmax["fp32"], argmax["int8"], strict=True)])
    lines = report(args, clip_note, audio_seconds, load_avg, fp32, int8, export_seconds,
                   model.num_parameters(), timings, sizes, memory, frames_agree, greedy_agree,
                   torch.__version__)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {args.out}")
    return 0


def report(args, clip_note, audio_seconds, load_avg, fp32, int8, export_seconds, n_params,
           timings, sizes, memory, frames_agree, greedy_agree, torch_version) -> list[str]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = fp32.metadata
    lines = [
        "# Export benchmark: torch vs onnxruntime fp32 vs int8",
        "",
        f"- date: {now}{'  (QUICK run: too few clips for real figures)' if args.quick else ''}",
        f"- machine: {platform.platform()}, {cpu_name()}, {os.cpu_count()} CPUs, "
        f"load average at start {load_avg[0]:.2f}",
        f"- software: Python {platform.python_version()}, torch {torch_version}, "
        f"onnxruntime {ort.__version__}",
        f"- model: {args.checkpoint} (model_version {meta['model_version']}, "
        f"{n_params:,} parameters)",
        f"- clips: {clip_note}; {audio_seconds:.1f} s of audio, batch 1, one call per clip, "
        "3 warm-up calls per engine, reading and resampling not timed",
        f"- command: `{' '.join(['python benchmarks/bench_export.py', *sys.argv[1:]])}`",
        "",
        "## Real-time factor (compute time / audio time; lower is faster)",
        "",
        "| engine | threads | RTF | × real time | median ms / clip | p95 ms / clip |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in timings:
        rtf = t.rtf(audio_seconds)
        ms = np.array(t.seconds) * 1000
        lines.append(f"| {t.engine} | {t.threads} | {rtf:.5f} | {1 / rtf:,.0f} | "
                     f"{np.median(ms):.2f} | {np.percentile(ms, 95):.2f} |")
    one_core = {t.engine: t.rtf(audio_seconds) for t in timings if t.threads == 1}
    if one_core:
        speed = 1 / one_core["onnxruntime fp32"]
        met = speed >= 200 and one_core["onnxruntime fp32"] < one_core["torch"]
        lines += ["", f"Goal (onnxruntime fp32 at least 200× real time on one thread and faster "
                      f"than torch): {'met' if met else 'NOT met'} ({speed:,.0f}×, torch "
                      f"{1 / one_core['torch']:,.0f}×)."]
    lines += ["", "## Model files", "", "| file | MB |", "|---|---:|"]
    lines += [f"| {name} | {size / 1e6:.2f} |" for name, size in sizes.items()]
    lines += ["", f"Export (fp32, including checks) took {export_seconds:.1f} s; onnxruntime vs "
                  f"torch max |log-prob difference| {fp32.max_abs_diff:.1e} on a length not "
                  "used at export time.",
              "", f"## Peak memory (child process, 1 thread, "
                  f"{min(MEMORY_CLIPS, args.clips)} longest clips)", "",
              "| engine | RSS after imports MB | peak RSS MB | added by model and inference MB |",
              "|---|---:|---:|---:|"]
    for engine, m in memory.items():
        lines.append(f"| {engine} | {m['baseline_mb']:.0f} | {m['peak_mb']:.0f} | "
                     f"{m['peak_mb'] - m['baseline_mb']:.0f} |")
    lines += ["", "## int8 vs fp32 (agreement only; accuracy is measured by the evaluation "
                  "benchmark)", "",
              f"- frames with the same best token: {100 * frames_agree:.1f}%",
              f"- clips with the same greedy transcript: {100 * greedy_agree:.1f}%"]
    return lines


if __name__ == "__main__":
    sys.exit(main())
