"""What the benchmark scripts share: where the real recordings are, what training holds
out of them, and the description of the machine a figure came from."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEFAULT_MANIFEST = SHARED_DATA / "speech" / "manifest.jsonl"
DEFAULT_NOISE = SHARED_DATA / "noise"
TRAINING_CONFIG = ROOT / "training" / "configs" / "default.json"


@dataclass(frozen=True)
class RealHeldOut:
    """One real-recordings entry of the default training config: its manifest and what
    training keeps out of it (whole sources/speakers, and words)."""

    manifest: Path
    sources: frozenset[str]
    words: frozenset[str]

    @property
    def speaker_names(self) -> str:
        """The held-out sources by their last path part ("owner/ros_speech" -> "ros_speech")."""
        return ", ".join(sorted(s.split("/")[-1] for s in self.sources))

    @property
    def word_names(self) -> str:
        return ", ".join(sorted(self.words))


def real_held_out_specs(config: Path = TRAINING_CONFIG) -> list[RealHeldOut]:
    """The real-recordings entries of a training config, read as plain JSON (no torch
    needed); relative manifest paths count from the repository root, as in training."""
    specs = json.loads(config.read_text()).get("data", {}).get("real", [])
    found = []
    for spec in specs:
        manifest = Path(spec["manifest"])
        found.append(RealHeldOut(manifest if manifest.is_absolute() else ROOT / manifest,
                                 frozenset(spec.get("held_out_sources", [])),
                                 frozenset(spec.get("held_out_words", []))))
    return found


def held_out_real() -> tuple[list[str], list[str]]:
    """(sources, words) the default training config keeps out of training."""
    specs = real_held_out_specs()
    return (sorted({s for spec in specs for s in spec.sources}),
            sorted({w for spec in specs for w in spec.words}))


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name with its family, model and widest vector instructions.

    Virtual machines often report only a brand ("AMD EPYC"): two machines of that name
    ran the network more than 3x apart, so the name alone does not say which CPU a
    speed figure came from.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine()
    details = []
    if "cpu family" in fields and "model" in fields:
        details.append(f"family {fields['cpu family']} model {fields['model']}")
    flags = set(fields.get("flags", "").split())
    if flags:
        details.append("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
                       else "no AVX2")
    return f"{name} ({', '.join(details)})" if details else name


def machine() -> str:
    """CPU, cores, Python, OS and the load at start, for a results header."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}; load average {load:.1f} at start")


def write_results(path: Path, lines: list[str]) -> None:
    """A results file of these lines (its folder made first), and a line saying where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")
