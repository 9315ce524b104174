"""What the model costs: size, memory of the real command, and the time it took to train.

    python benchmarks/bench_cost.py [--model M] [--checkpoint C]

Real-time factor and latency are read from the accuracy and stream benchmarks' results
(`accuracy.md`, `stream.md`) beside cost.md. Writes benchmarks/results/cost.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402
from benchmarks.summary import stream_latency, table_row  # noqa: E402
from speechrnn.audio import SAMPLE_RATE  # noqa: E402
from speechrnn.session import ModelSession, bundled_model_path  # noqa: E402

DEFAULT_CHECKPOINT = ROOT / "training" / "checkpoints" / "default.pt"


def model_size(path: Path) -> dict:
    """File size in MB and, when the onnx package is there, the parameter count."""
    out = {"mb": path.stat().st_size / 1e6, "parameters": None}
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        # Weights, float or quantized; not the scales and zero points quantization adds.
        kinds = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
        out["parameters"] = int(sum(int(np.prod(t.dims)) for t in model.graph.initializer
                                    if t.data_type in kinds and not
                                    t.name.endswith(("_scale", "_zero_point"))))
    except Exception:
        pass
    return out


def training_time(checkpoint: Path) -> dict:
    """Minutes of training behind a checkpoint, from its own record (`train_state`),
    following the checkpoints it was fine-tuned from: {"minutes", "stages", "cores"}, where
    each stage is (checkpoint name, minutes, epochs), first stage first, "cores" the CPU
    counts the stages record (training records them since model 0.3) and "gpus" the GPUs
    any stage ran on."""
    stages: list[tuple[str, float, int | None]] = []
    cores: set[int] = set()
    gpus: set[str] = set()
    path = checkpoint
    try:
        import torch
    except ImportError:
        return {"minutes": None, "stages": stages, "cores": [], "gpus": []}
    while path.is_file() and len(stages) < 10:  # a bound, should a chain loop back
        try:
            ts = torch.load(path, map_location="cpu", weights_only=False).get("train_state") or {}
        except Exception:
            break
        if "elapsed" not in ts:
            break
        if ts["elapsed"] or ts.get("epoch"):  # not a checkpoint only converted (restack)
            stages.insert(0, (path.name, ts["elapsed"] / 60, ts.get("epoch")))
        cores.update(ts.get("cpu_cores", []))
        gpus.update(ts.get("gpus", []))
        init = ts.get("init_checkpoint")
        if not init:
            break
        path = Path(init) if Path(init).is_absolute() else ROOT / init
        if not path.is_file() and ts.get("init_elapsed"):
            # The earlier stage's file is gone; its time is still on record.
            stages.insert(0, (Path(init).name, ts["init_elapsed"] / 60, None))
            break
    return {"minutes": sum(m for _, m, _ in stages) if stages else None, "stages": stages,
            "cores": sorted(cores), "gpus": sorted(gpus)}


def on_cores(cores: list[int], gpus: list[str] = ()) -> str:
    """Where a training time was spent, in words, from the CPU counts and GPUs on record."""
    gpu = " with " + " and ".join(gpus) if gpus else ""
    if not cores:
        return "(CPU count not recorded)" + gpu
    if len(cores) == 1:
        return f"on a {cores[0]}-core CPU" + gpu
    return "on " + " and ".join(f"{n}-core" for n in cores) + " CPUs" + gpu


def peak_memory(model: Path | None, seconds: float = 60.0) -> tuple[float, float]:
    """(peak MB, wall s) of `python -m speechrnn transcribe` on a minute of speech-like
    audio, start-up included, in a child process."""
    from benchmarks.bench_transcribe import run_command

    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    audio = 0.01 * rng.standard_normal(len(t))
    for start in np.arange(1.0, seconds - 1, 3.0):  # a voiced burst every 3 s
        i, j = int(start * SAMPLE_RATE), int((start + 0.6) * SAMPLE_RATE)
        audio[i:j] += 0.2 * np.sin(2 * np.pi * 150 * t[i:j]) * np.hanning(j - i)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "minute.wav"
        sf.write(wav, audio.astype(np.float32), SAMPLE_RATE)
        args = ["transcribe", *(["--model", str(model)] if model else []), str(wav)]
        _, wall, peak = run_command(args, Path(tmp) / "out.txt")
    return peak, wall


def measure(model: Path | None, checkpoint: Path) -> dict:
    path = Path(model or bundled_model_path())
    info = ModelSession(path, threads=1).info
    peak, wall = peak_memory(model)
    return {"model": str(path), "version": info.model_version, "size": model_size(path),
            "peak_mb": peak, "transcribe_wall": wall,
            "training": training_time(checkpoint)}


def speed_rows(results: Path) -> list[str]:
    """Real-time factor and latency rows, from the accuracy and stream benchmarks' results
    in `results` (rows whose file is missing are left out)."""
    rows = []
    speed = table_row(results / "accuracy.md", "all")  # all | ours | PocketSphinx | ratio
    if speed:
        rtf = float(speed[1])
        rows.append(f"| real-time factor, speechrnn | {rtf:.4f} ({1 / rtf:.0f}× real time) | "
                    "`accuracy.md`: compute over audio time on every clip and condition, "
                    "one thread |")
        if speed[2] != "–":
            rows.append(f"| real-time factor, PocketSphinx | {speed[2]} | the same clips |")
    latency = stream_latency(results / "stream.md")
    if latency:
        rows.append(f"| latency, end of speech to right command, p50 / p95 | {latency[0]} / "
                    f"{latency[1]} | `stream.md` (`benchmarks/bench_stream.py`) |")
    return rows


def report(c: dict, command: str, extra: list[str] | None = None) -> str:
    t = c["training"]
    params = c["size"]["parameters"]
    lines = [
        "# Cost: size, memory, training time",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine()}, by `{command}`.",
        "",
        "| what | figure | how |",
        "|---|---|---|",
        f"| model file | {c['size']['mb']:.2f} MB"
        + (f", {params:,} parameters" if params else "")
        + f" | `{Path(c['model']).name}`, version {c['version']} |",
        f"| peak memory of `speechrnn transcribe` | {c['peak_mb']:.0f} MB | a one-minute "
        f"file, start-up included ({c['transcribe_wall']:.1f} s), child process's maximum "
        "resident set |",
    ]
    if t["minutes"] is not None:
        steps = " + ".join(f"{name} {m:.0f} min" + (f" ({e} epochs)" if e else "")
                           for name, m, e in t["stages"])
        lines.append(f"| training, to the shipped checkpoint | {t['minutes']:.0f} min "
                     f"{on_cores(t['cores'], t['gpus'])} | the checkpoints' own records "
                     f"(`train_state`): {steps} |")
    lines += extra or []
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost.md")
    args = p.parse_args(argv)
    c = measure(args.model, args.checkpoint)
    args.out.write_text(report(c, "python benchmarks/bench_cost.py", speed_rows(args.out.parent)))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
