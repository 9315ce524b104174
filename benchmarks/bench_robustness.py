"""The robustness report: fuzzing, soak and simulated faults in one table.

    python benchmarks/bench_robustness.py [--faults] [--fuzz-seconds N] [--soak-hours H]

Writes benchmarks/results/robustness.md from benchmarks/results/fuzz.json (written by
bench_fuzz.py), soak.json (bench_soak.py) and faults.json. --faults runs the fault tests
(pytest) and records each one's outcome in faults.json; --fuzz-seconds and --soak-hours
run those two scripts first. With no option it only rewrites the report from the files.
Everything at once (what the figures in the report came from):

    nice -n 10 python benchmarks/bench_robustness.py --fuzz-seconds 600 --soak-hours 2 --faults
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
REPORT = RESULTS / "robustness.md"

# (issue item, fault simulated, test node id (a function: all its parameters))
FAULTS = [
    ("audio input", "random bytes, WAV/FLAC/AU headers with absurd fields, truncated and "
     "extended files, odd arrays (hypothesis)", "tests/test_fuzz_audio.py"),
    ("audio input", "damaged, empty, NaN, missing files: one sentence each",
     "tests/test_audio.py::test_bad_file_gives_one_sentence_naming_it"),
    ("audio input", "bad inputs in a batch: the batch goes on, exit 1",
     "tests/test_cli_transcribe.py::test_every_bad_input_gives_its_sentence_and_the_batch_goes_on"),
    ("decoders", "CTC likelihood against all alignments",
     "tests/test_decoding.py::test_ctc_likelihood_equals_brute_force"),
    ("decoders", "prefix beam search against all alignments",
     "tests/test_decoding.py::test_prefix_beam_search_matches_brute_force"),
    ("decoders", "optional edge spaces against enumeration",
     "tests/test_decoding.py::test_optional_edge_space_sums_the_four_variants"),
    ("model file", "missing model, a folder", "tests/test_session.py::test_missing_model"),
    ("model file", "random bytes, truncated, text", "tests/test_session.py::test_corrupt_model"),
    ("model file", "no metadata, missing keys, unknown format, malformed or inconsistent "
     "metadata, token list not matching the output size",
     "tests/test_session.py::test_bad_metadata_is_refused"),
    ("model file", "unusable model through the command: exit 2",
     "tests/test_cli_transcribe.py::test_unusable_model_exits_2_with_a_sentence"),
    ("training", "SIGKILL mid-epoch, resume", "tests/test_training.py::"
     "test_sigkill_mid_training_then_resume"),
    ("training", "SIGKILL mid-epoch, resume: same weights as an uninterrupted run",
     "tests/test_training_faults.py::test_killed_and_resumed_run_equals_an_uninterrupted_one"),
    ("training", "killed while writing a checkpoint: the half-written file is never loaded",
     "tests/test_training_faults.py::test_checkpoint_cut_short_by_a_kill_is_never_loaded"),
    ("training", "truncated last checkpoint: refused with a sentence",
     "tests/test_training_faults.py::test_truncated_last_checkpoint_is_refused_not_loaded"),
    ("training", "NaN batch skipped and counted",
     "tests/test_training.py::test_training_runs_resumes_and_skips_nan"),
    ("microphone", "input overflows: counted, not fatal",
     "tests/test_mic.py::test_overflows_are_counted_not_fatal"),
    ("microphone", "reader falling behind: blocks dropped and counted",
     "tests/test_mic.py::test_reader_falling_behind_drops_and_counts"),
    ("microphone", "device vanishing mid-stream: exit 1 with a sentence",
     "tests/test_mic.py::test_listen_device_lost_exits_1"),
    ("microphone", "device stalling / sending nothing",
     "tests/test_mic.py::test_device_going_silent"),
    ("microphone", "device delivering digital silence or a DC offset: no events",
     "tests/test_mic.py::test_listen_device_delivering_silence_or_dc_gives_no_events"),
    ("microphone", "Ctrl-C during start-up: stream released, exit 0",
     "tests/test_mic.py::test_listen_ctrl_c_during_start_up"),
    ("microphone", "device busy at open: exit 2 with a sentence",
     "tests/test_mic.py::test_open_failure_is_one_sentence"),
    ("microphone (PulseAudio)", "real audio server: tones through a virtual microphone",
     "tests/test_listen_e2e.py::test_listen_through_pulseaudio_tiny_model"),
    ("microphone (PulseAudio)", "audio server killed mid-stream: exit 1",
     "tests/test_listen_e2e.py::test_audio_server_vanishing_mid_stream"),
    ("concurrency", "4 threads sharing one Recognizer (files, long file, arrays)",
     "tests/test_concurrency.py::test_shared_recognizer_transcribes_like_one_thread"),
    ("concurrency", "4 stream engines on one Recognizer",
     "tests/test_concurrency.py::test_one_engine_per_thread_on_a_shared_recognizer"),
]


def run_faults() -> None:
    """Run the fault tests and record each one's outcome in faults.json."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        ids = sorted({node for _, _, node in FAULTS})
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *ids], cwd=ROOT)
        cases = ET.parse(xml).getroot().iter("testcase")
        outcomes = []
        for case in cases:
            kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")),
                        "passed")
            reason = next((c.get("message", "") for c in case if c.tag == "skipped"), "")
            file = case.get("classname", "").replace(".", "/") + ".py"
            outcomes.append({"file": file, "name": case.get("name", ""), "outcome": kind,
                             "seconds": float(case.get("time", 0)), "reason": reason})
    (RESULTS / "faults.json").write_text(json.dumps({
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "tests": outcomes},
        indent=1) + "\n")


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _fuzz_section(fuzz: dict | None) -> list[str]:
    from fuzz.regressions import ARRAY_REGRESSIONS, REGRESSIONS, RUN_FINDINGS

    lines = ["## Fuzzing the audio reader and `transcribe`", ""]
    if fuzz is None:
        lines += ["Not run yet: `nice -n 10 python benchmarks/bench_fuzz.py`.", ""]
    else:
        status = ("no finding" if not fuzz["findings"] else
                  f"{len(fuzz['findings'])} finding(s): " + ", ".join(
                      Path(f).name for f in fuzz["findings"]))
        lines += [
            f"`{fuzz['command']}` on {fuzz['date']} ({fuzz['machine']}).", "",
            f"- target: {fuzz['target']}",
            f"- **{fuzz['inputs']:,} inputs in {fuzz['seconds'] / 60:.1f} minutes** "
            f"({fuzz['exec_per_s']:.0f} a second), {status}",
            f"- limits: {fuzz['timeout_s']} s and {fuzz['rss_limit_mb']} MB per input; peak "
            f"resident memory {fuzz['peak_rss_mb']:.0f} MB; slowest input "
            f"{_seconds(fuzz['slowest_input_s'])}; corpus grew to {fuzz['corpus_files']} files",
            "- in the test suite (`tests/test_fuzz_audio.py`): six hypothesis properties "
            "over the same contract (60 examples each, with the peak resident set checked "
            "per input), the regressions below and a 600-input run of the atheris target",
            *[f"- earlier: {f}" for f in RUN_FINDINGS], ""]
    lines += ["Inputs that failed before the fixes, found while building the structured "
              "inputs (WAV, FLAC and AU headers from chosen field values) before the long "
              "run; each is now a regression test:", "",
              "| input | before | now |", "|---|---|---|"]
    for r in REGRESSIONS:
        lines.append(f"| {r.name} | {r.before} | AudioError: \"…{r.expect}…\" |")
    for r in ARRAY_REGRESSIONS:
        now = (f"ValueError: \"…{r.expect}…\"" if r.expect else
               f"transcript with error \"…{r.error}…\"" if r.error else "empty transcript")
        lines.append(f"| `transcribe` on {r.name} | {r.before} | {now} |")
    lines += ["", "Each file failure reaches the user as one sentence naming the file "
              "(`Transcript.error`; `speechrnn transcribe` prints it and exits with 1); an "
              "array that is not audio raises ValueError with one sentence.", ""]
    return lines


def _soak_section(soak: dict | None) -> list[str]:
    lines = ["## Soak: hours of audio through the stream engine", ""]
    if soak is None:
        return lines + ["Not run yet: `python benchmarks/bench_soak.py`.", ""]
    d = soak["drift"]
    rtf = soak["audio_hours"] * 3600 / soak["stream_s"]
    lines += [
        f"`{soak['command']}` on {soak['date']} ({soak['machine']}).", "",
        f"- model `{soak['model_version']}`, {soak['commands']} commands; {soak['material']}",
        f"- **{soak['audio_hours']:.2f} h of audio** ({soak['scenes']} one-minute scenes, "
        f"{soak['distinct_scenes']} distinct ones repeated: commands over a quiet room, over "
        f"noise, over music; music alone; near-silence), {soak['utterances']} utterances "
        f"({soak['utterances_of_commands']} of listed commands)",
        f"- streamed in {soak['stream_s'] / 60:.1f} min ({rtf:.0f}× real time, "
        f"{soak['stream_cpu_s'] / 60:.1f} CPU-min); batch `transcribe` of the same file "
        f"{soak['batch_s']:.0f} s", "",
        "| | figure | goal |", "|---|---|---|",
        f"| resident memory growth after minute {soak['memory_settle_minute']:g} (end / "
        f"largest) | {soak['memory_growth_mb']:+.1f} MB / {soak['memory_max_growth_mb']:+.1f} MB"
        " | < 10 MB |",
        *([f"| its anonymous part (heap), the same | {soak['anon_memory_growth_mb']:+.1f} MB / "
           f"{soak['anon_memory_max_growth_mb']:+.1f} MB | < 10 MB |"]
          if "anon_memory_growth_mb" in soak else []),
        f"| batch commands also found by streaming | {soak['batch_found_by_stream']} of "
        f"{soak['batch_commands']} | all |",
        f"| streamed commands right (utterances of listed commands) | {soak['stream_right']} "
        f"of {soak['utterances_of_commands']} | |",
        f"| streamed commands outside any utterance (false alarms) | {soak['stream_stray']}"
        + (" (" + ", ".join(f"{k} {n} in {soak['scene_minutes'][k]} min" for k, n in
                            soak["stream_stray_by_scene"].items()) + ")"
           if "stream_stray_by_scene" in soak else "") + " | |",
        f"| event time drift: same utterance and scene, later playing against the first "
        f"({d['pairs']} pairs) | start at most {_ms(d['max_abs_start_s'])}, end at most "
        f"{_ms(d['max_abs_end_s'])}; {d['identical']} identical to 1 µs | 0 |",
        f"| mean start shift, first half of pairs / second half | "
        f"{_ms(d['mean_start_s_early'])} / {_ms(d['mean_start_s_late'])} | equal |", ""]
    lines += ["Long files go through the same stream engine in `transcribe` (since "
              "commit 520c562), so batch and streaming agree by construction on the same "
              "audio; the comparison guards the file path (block reading, resampling) and any "
              "future divergence.", ""]
    if soak["batch_missed_by_stream"]:
        lines += ["Batch commands streaming did not find (text, start, end): " + "; ".join(
            f"{t} {a:.1f}-{b:.1f} s" for t, a, b in soak["batch_missed_by_stream"]), ""]
    lines += ["Resident memory (MB) by minute of audio (anonymous: the heap, without mapped "
              "files):", "",
              "| minute | " + " | ".join(_curve_points(soak, 0)) + " |",
              "|---|" + "---|" * len(_curve_points(soak, 0)),
              "| resident | " + " | ".join(_curve_points(soak, 1)) + " |"]
    if len(soak["memory_curve"][0]) > 2:
        lines.append("| anonymous | " + " | ".join(_curve_points(soak, 2)) + " |")
    lines.append("")
    return lines


def _curve_points(soak: dict, col: int) -> list[str]:
    curve = soak["memory_curve"]
    step = max(1, len(curve) // 13)
    picked = curve[:3] + curve[3:-1:step] + curve[-1:]
    return [f"{p[col]:g}" if col == 0 else f"{p[col]:.1f}" for p in picked]


def _seconds(x: float | None) -> str:
    return "–" if x is None else "under 1 s" if x < 1 else f"{x:.0f} s"  # libFuzzer: whole s


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{abs(x) * 1000:.0f} ms" if abs(x) < 5e-4 else \
        f"{x * 1000:.0f} ms"


# Faults that failed before a fix, outside the audio reader.
OTHER_FINDINGS = [
    ("training", "a run killed with SIGKILL and resumed ended with other weights than an "
     "uninterrupted run: SpecAugment draws from Python's `random`, whose state the "
     "checkpoint did not keep", "checkpoints keep Python's and numpy's RNG state; resumed "
     "and uninterrupted runs end with the same weights and validation figures"),
]


def _faults_section(faults: dict | None) -> list[str]:
    lines = ["## Faults simulated and their outcomes", ""]
    if faults is None:
        return lines + ["Not run yet: `python benchmarks/bench_robustness.py --faults`.",
                        ""] + _findings()
    lines += [f"The fault tests as run on {faults['date']} "
              "(`python benchmarks/bench_robustness.py --faults`):", "",
              "| area | fault | test | outcome |", "|---|---|---|---|"]
    for area, what, node in FAULTS:
        file, _, name = node.partition("::")
        runs = [t for t in faults["tests"] if t["file"] == file
                and (not name or t["name"] == name or t["name"].startswith(name + "["))]
        counts: dict[str, int] = {}
        for t in runs:
            counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
        outcome = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "not run"
        skipped = next((t["reason"] for t in runs if t["outcome"] == "skipped"), "")
        if skipped:
            outcome += f" ({skipped[:80]})"
        lines.append(f"| {area} | {what} | `{name or file}` | {outcome} |")
    return lines + [""] + _findings()


def _findings() -> list[str]:
    lines = ["Faults that failed before a fix:", "", "| area | before | now |", "|---|---|---|"]
    lines += [f"| {area} | {before} | {now} |" for area, before, now in OTHER_FINDINGS]
    return lines + [""]


def write_report() -> Path:
    from benchmarks.common import machine

    lines = ["# Robustness: bad input, faults, long runs", "",
             f"Written by `benchmarks/bench_robustness.py` on "
             f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} from the results of "
             "`bench_fuzz.py`, `bench_soak.py` and the fault tests; this machine: "
             f"{machine()}.", ""]
    lines += _fuzz_section(_load("fuzz.json"))
    lines += _soak_section(_load("soak.json"))
    lines += _faults_section(_load("faults.json"))
    REPORT.write_text("\n".join(lines))
    print(f"wrote {REPORT}", file=sys.stderr)
    return REPORT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", action="store_true", help="run the fault tests first")
    p.add_argument("--fuzz-seconds", type=int, help="run bench_fuzz.py this long first")
    p.add_argument("--soak-hours", type=float, help="run bench_soak.py on this much audio")
    args = p.parse_args(argv)
    here = Path(__file__).resolve().parent
    if args.fuzz_seconds:
        subprocess.run([sys.executable, str(here / "bench_fuzz.py"), "--seconds",
                        str(args.fuzz_seconds)], check=True)
    if args.soak_hours:
        subprocess.run([sys.executable, str(here / "bench_soak.py"), "--hours",
                        str(args.soak_hours), "--no-report"], check=True)
    if args.faults:
        run_faults()
    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
