"""What the benchmark scripts share: where the real recordings are, what training holds
out of them, and the description of the machine a figure came from."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_MANIFEST = SHARED_DATA / "speech" / "manifest.jsonl"
DEFAULT_NOISE = SHARED_DATA / "noise"
TRAINING_CONFIG = ROOT / "training" / "configs" / "default.json"


def held_out_real() -> tuple[list[str], list[str]]:
    """(sources, words) of the real recordings the default training config keeps out of
    training, read from the config itself (plain JSON: no torch needed)."""
    specs = json.loads(TRAINING_CONFIG.read_text()).get("data", {}).get("real", [])
    sources = sorted({s for spec in specs for s in spec.get("held_out_sources", [])})
    words = sorted({w for spec in specs for w in spec.get("held_out_words", [])})
    return sources, words


def machine() -> str:
    """CPU model, cores, Python, OS and the load at start, for a results header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; load average {load:.1f} at start")
