"""A short soak (3 minutes of audio, one scene played three times) through the stream
engine: every command batch `transcribe` finds in the same file is streamed too, and
the same utterance gives the same event times at each playing. The two-hour soak and its
memory curve are benchmarks/bench_soak.py's.
"""

from __future__ import annotations

import json

from benchmarks import bench_soak


def test_short_soak(tmp_path):
    out = tmp_path / "soak.json"
    # The samples and generated backgrounds: the same material as CI, with or without
    # ../shared.
    bench_soak.main(["--hours", "0.05", "--distinct", "1", "--manifest", str(tmp_path / "none"),
                     "--noise-dir", str(tmp_path / "none"), "--out", str(out), "--no-report"])
    soak = json.loads(out.read_text())
    assert soak["scenes"] == 3 and soak["utterances"] >= 9
    assert soak["batch_commands"] > 0, "batch found nothing: the test shows nothing"
    assert soak["batch_found_by_stream"] == soak["batch_commands"]
    drift = soak["drift"]
    assert drift["pairs"] > 0
    assert drift["identical"] == drift["pairs"]  # to well under one sample
    assert drift["max_abs_start_s"] < 1e-6 and drift["max_abs_end_s"] < 1e-6
