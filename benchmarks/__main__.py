"""The whole benchmark suite: accuracy with the peer, false alarms, streaming, transcribe,
export and cost; rewrites benchmarks/results/*.md and the README's summary table.

    python -m benchmarks [--quick] [--manifest NAME=FILE ...] [--commands FILE] [--no-peer]

--quick runs every part on a few clips (under 3 minutes) to check the suite itself; its
figures are not to be quoted, so it writes them to benchmarks/results/quick/ and leaves
the README alone. Sets that need the synthetic corpus (data/synth) or the real
recordings (../shared/data) are skipped with one line when those are absent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    bench_accuracy,
    bench_cost,
    bench_false_alarms,
    summary,
    testsets,
)
from benchmarks.common import machine  # noqa: E402
from benchmarks.scoring import pct  # noqa: E402
from benchmarks.stats import mcnemar_p  # noqa: E402
from speechrnn.recognizer import DEFAULT_THRESHOLD, Recognizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# The scripts kept from before the suite, each rewriting its own results file.
SCRIPTS = ["bench_stream", "bench_transcribe", "bench_model", "bench_export"]
QUICK_SCRIPTS = ["bench_stream"]  # enough to check latency parsing within 3 minutes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a few clips per part, 3 minutes of command-free audio (< 3 min)")
    p.add_argument("--manifest", action="append", default=[], metavar="NAME=FILE",
                   help="add your own JSONL manifest (path, text; paths relative to it) as a "
                        "test set; repeatable")
    p.add_argument("--commands", type=Path, default=None,
                   help="command list for --manifest sets (default: each manifest's texts)")
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: the bundled speechrnn/models/speechrnn.int8.onnx)")
    p.add_argument("--no-peer", action="store_true", help="leave PocketSphinx out")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md",
                   help="README whose marked table is rewritten (default: the repository's)")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.add_argument("--results", type=Path, default=None,
                   help="folder for the results (default benchmarks/results, "
                        "benchmarks/results/quick with --quick)")
    args = p.parse_args(argv)
    if args.results is None:
        args.results = RESULTS / "quick" if args.quick else RESULTS
    if args.quick:
        args.no_readme = True
    for m in args.manifest:  # fail before any work on a malformed argument
        try:
            testsets.parse_manifest_arg(m)
        except testsets.ManifestError as e:
            p.error(str(e))
    return args


def run_script(name: str, quick: bool, model: Path | None, out: Path) -> tuple[bool, float]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--out", str(out)]
    cmd += ["--quick"] if quick else []
    cmd += ["--model", str(model)] if model and name != "bench_export" else []
    print(f"== {name}", file=sys.stderr)
    # Spinning OpenMP threads stall when another process holds the cores: torch on two
    # threads ran 150x slower on this shared 2-core machine; waiting passively does not.
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=ROOT, env=env)
    return res.returncode == 0, time.perf_counter() - start


def command_line(args: argparse.Namespace) -> str:
    parts = ["python -m benchmarks"] + (["--quick"] if args.quick else [])
    parts += [f"--manifest {m}" for m in args.manifest]
    parts += [f"--commands {args.commands}"] if args.commands else []
    parts += ["--no-peer"] if args.no_peer else []
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M")
    command = command_line(args)
    try:
        recognizer = Recognizer(args.model, threshold=0.0)
        counts = bench_accuracy.QUICK if args.quick else bench_accuracy.FULL
        sets, voices = bench_accuracy.load_sets(counts, args.manifest, args.commands,
                                                recognizer.commands)
    except (testsets.ManifestError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not sets:
        print("error: no test set at hand: generate the synthetic corpus, put the real "
              "recordings at ../shared/data, or give --manifest NAME=FILE", file=sys.stderr)
        return 2

    args.results.mkdir(parents=True, exist_ok=True)
    print("== accuracy", file=sys.stderr)
    acc = bench_accuracy.run(sets, voices, recognizer, not args.no_peer)
    (args.results / "accuracy.md").write_text(bench_accuracy.report(acc, command))
    acc_summary = bench_accuracy.summary(acc)

    fa_summary = None
    fr_sets = [s for s in sets if s.name in bench_false_alarms.FR_SETS]
    if fr_sets:
        print("== false alarms", file=sys.stderr)
        clean = {s.name: [(x.clip.expected, x.ours, x.peer) for x in acc.of(s.name, "clean")]
                 for s in fr_sets}
        pools = bench_false_alarms.pools(recognizer.commands)
        fa = bench_false_alarms.run(recognizer, fr_sets, pools, voices,
                                    3.0 if args.quick else 60.0, clean=clean,
                                    use_peer=not args.no_peer,
                                    peer_threshold=acc.peer_threshold)
        fa_summary = bench_false_alarms.write(fa, command, args.results / "false_alarms.md")
    else:
        testsets.skip("false alarms", "no held-out command clips of the model's own list")

    ran = {}
    for name in QUICK_SCRIPTS if args.quick else SCRIPTS:
        out = args.results / f"{name.removeprefix('bench_')}.md"
        ran[name] = run_script(name, args.quick, args.model, out)

    print("== cost", file=sys.stderr)
    cost = bench_cost.measure(args.model, bench_cost.DEFAULT_CHECKPOINT)
    latency = summary.stream_latency(args.results / "stream.md")
    (args.results / "cost.md").write_text(
        bench_cost.report(cost, command, bench_cost.speed_rows(args.results)))

    minutes = (time.perf_counter() - start) / 60
    rows = summary_rows(acc, acc_summary, fa_summary, cost, latency, args.results)
    failed = [n for n, (ok, _) in ran.items() if not ok]
    header = (f"Measured {started} on {machine().split(';')[0]} by `{command}` in "
              f"{minutes:.0f} min" + (f" while another process used the CPU (load average "
                                      f"{load:.1f} at start; times are pessimistic)"
                                      if load > 1.5 else "")
              + f"; model `{Path(cost['model']).name}` version {cost['version']}."
              + (" QUICK RUN: a few clips each, figures not to be quoted." if args.quick
                 else "")
              + (f" Failed: {', '.join(failed)}." if failed else ""))
    body = summary.table(rows, header)
    (args.results / "summary.md").write_text(
        "# Benchmark summary\n\n" + summary.table(rows, header, link_prefix=""))
    if not args.no_readme:
        try:
            summary.update_readme(args.readme, body)
        except (summary.ReadmeError, OSError) as e:
            print(f"README not updated: {e}", file=sys.stderr)
    print(body)
    print(f"suite took {minutes:.1f} min" + "".join(
        f"; {n} {t:.0f} s" for n, (_, t) in ran.items()), file=sys.stderr)
    return 1 if failed else 0


def better_in(by: dict, conds: list[str], figure: str) -> str:
    """In how many conditions speechrnn's `figure` ("right" or "top1") beats the peer's,
    and in how many of those by more than chance (McNemar's exact test on the same clips,
    p < 0.05)."""
    wins = [c for c in conds if by[c]["ours"][figure] > by[c]["peer"][figure]]
    sure = sum(mcnemar_p(*by[c]["paired"][figure]) < 0.05 for c in wins)
    return f"speechrnn better in {len(wins)} of {len(conds)} ({sure} beyond chance)"


def summary_rows(acc, acc_summary: dict, fa: dict | None, cost: dict, latency,
                 results: Path = RESULTS) -> list:
    Row = summary.Row
    rows = []
    conds = acc.conditions
    for s in acc.sets:
        by = acc_summary["sets"][s.name]
        ours = " / ".join(pct(by[c]["ours"]["right"], 0).replace(" %", "") for c in conds)
        n = by["clean"]["ours"]["clips"]
        rows.append(Row(f"command accuracy, {s.name} ({n} clips, {len(s.commands)} commands): "
                        + " / ".join(conds), ours + " %",
                        "more accurate than PocketSphinx", "accuracy.md"))
        if by["clean"]["peer"]:
            theirs = " / ".join(pct(by[c]["peer"]["right"], 0).replace(" %", "")
                                for c in conds)
            rows.append(Row(f"PocketSphinx on the same clips, {s.name}, at its threshold "
                            f"{acc_summary['peer_threshold']:.2f} (as many command-free clips "
                            "rejected as speechrnn)", theirs + " %",
                            better_in(by, conds, "right"), "accuracy.md"))

            def top1(who, by=by):
                return " / ".join(pct(by[c][who]["top1"], 0).replace(" %", "") for c in conds)

            rows.append(Row(f"best command with no rejection (top-1), {s.name}: speechrnn; "
                            "PocketSphinx", f"{top1('ours')} %; {top1('peer')} %",
                            better_in(by, conds, "top1"), "accuracy.md"))
        rej = by["clean"]["ours"]["rejection"]
        if rej == rej:
            peer_rej = by["clean"]["peer"]["rejection"] if by["clean"]["peer"] else None
            rows.append(Row(f"clips without a command rejected, {s.name}, clean", pct(rej, 0)
                            + (f" (PocketSphinx {pct(peer_rej, 0)})" if peer_rej is not None
                               else ""), "", "accuracy.md"))
    if fa:
        rows.append(Row(f"false accepts per hour of command-free audio / false rejects, "
                        f"threshold {DEFAULT_THRESHOLD} ({fa['hours'] * 60:.0f} min)",
                        f"{fa['fa_per_hour']:.1f} ({fa['fa_interval'][0]:.0f}-"
                        f"{fa['fa_interval'][1]:.0f}) / {pct(fa['fr'], 0)} "
                        f"({100 * fa['fr_interval'][0]:.0f}-{100 * fa['fr_interval'][1]:.0f} %)",
                        "< 1 / < 5 %",
                        "false_alarms.md"))
        rec = fa["recommended"]
        rows.append(Row("recommended threshold (fewest misses under 1 false accept an hour)",
                        f"{rec['threshold']:g}: {rec['fa_per_hour']:.1f} / h, "
                        f"{pct(rec['fr'], 0)} false rejects" if rec else
                        f"none reaches it (fewest: {fa['fewest']['fa_per_hour']:.1f} / h at "
                        f"{fa['fewest']['threshold']:g}, {pct(fa['fewest']['fr'], 0)} false "
                        "rejects)",
                        "< 5 % false rejects", "false_alarms.md"))
    rtf, peer_rtf = acc_summary["rtf"], acc_summary["peer_rtf"]
    rows.append(Row("real-time factor, one thread" + (": speechrnn / PocketSphinx"
                                                      if peer_rtf else ""),
                    f"{rtf:.4f}" + (f" / {peer_rtf:.4f} ({peer_rtf / rtf:.1f}× faster)"
                                    if peer_rtf else ""),
                    "≥ 10× faster than PocketSphinx", "accuracy.md"))
    if latency:
        rows.append(Row("`listen` latency, end of speech to right command, p50 / p95",
                        f"{latency[0]} / {latency[1]}", "p95 ≤ 250 ms", "stream.md"))
    rows += summary.other_scripts_rows(results)
    params = cost["size"]["parameters"]
    rows.append(Row("model size", f"{cost['size']['mb']:.1f} MB" + (
        f", {params / 1e6:.2f} M parameters" if params else ""), "", "cost.md"))
    rows.append(Row("peak memory, `speechrnn transcribe` a one-minute file",
                    f"{cost['peak_mb']:.0f} MB", "", "cost.md"))
    t = cost["training"]
    if t["minutes"] is not None:
        stages = " + ".join(f"{m:.0f}" for _, m, _ in t["stages"])
        rows.append(Row("time to train the default model on this CPU",
                        f"{t['minutes']:.0f} min" + (f" ({stages})" if len(t["stages"]) > 1
                                                    else ""), "", "cost.md"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
