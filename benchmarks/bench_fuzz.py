"""A long run of the audio fuzz target (fuzz/fuzz_audio.py), with its figures.

    nice -n 10 python benchmarks/bench_fuzz.py [--seconds 600] [--corpus DIR]

Runs the atheris target for --seconds in a child process (per-input timeout 20 s, memory
limit 1500 MB) starting from the seed files, and writes benchmarks/results/fuzz.json:
inputs run, time, executions per second, corpus size, peak memory, slowest input and every
finding (crash-*, timeout-*, oom-* files kept under --artifacts). The robustness report
(benchmarks/bench_robustness.py, rerun at the end) turns it into a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fuzz.json"
TIMEOUT_S = 20
RSS_LIMIT_MB = 1500


def _stat(log: str, name: str) -> float | None:
    found = re.findall(rf"stat::{name}:\s+([0-9.]+)", log)
    return float(found[-1]) if found else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, default=600, help="fuzzing time (default 600)")
    p.add_argument("--corpus", type=Path, help="corpus folder (default: a fresh temp folder)")
    p.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()) /
                   "speechrnn-fuzz-findings", help="where findings are written")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)

    corpus = args.corpus or Path(tempfile.mkdtemp(prefix="speechrnn-fuzz-corpus-"))
    args.artifacts.mkdir(parents=True, exist_ok=True)
    before = set(args.artifacts.iterdir())
    cmd = [sys.executable, str(ROOT / "fuzz" / "fuzz_audio.py"),
           f"-max_total_time={args.seconds}", f"-timeout={TIMEOUT_S}",
           f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1", "-max_len=16384",
           f"-artifact_prefix={args.artifacts}/", str(corpus)]
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.time() - start
    log = proc.stderr
    (args.out.parent / "fuzz.log").write_text("\n".join(log.splitlines()[-60:]) + "\n")
    findings = sorted(str(f) for f in set(args.artifacts.iterdir()) - before)
    done = re.findall(r"Done (\d+) runs in (\d+) second", log)
    result = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "nice -n 10 python benchmarks/bench_fuzz.py --seconds "
                   f"{args.seconds}",
        "target": "fuzz/fuzz_audio.py (audio_info, read_audio, iter_blocks, "
                  "Recognizer.transcribe with the bundled model)",
        "seconds": round(wall, 1),
        "inputs": int(_stat(log, "number_of_executed_units") or (done[-1][0] if done else 0)),
        "exec_per_s": _stat(log, "average_exec_per_sec"),
        "new_units": _stat(log, "new_units_added"),
        "corpus_files": sum(1 for _ in corpus.iterdir()),
        "peak_rss_mb": _stat(log, "peak_rss_mb"),
        "slowest_input_s": _stat(log, "slowest_unit_time_sec"),
        "timeout_s": TIMEOUT_S,
        "rss_limit_mb": RSS_LIMIT_MB,
        "exit_status": proc.returncode,
        "findings": findings,
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    from benchmarks.bench_robustness import write_report

    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
