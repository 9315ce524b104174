"""Make new voices from a synthetic corpus's recorded voices by moving their formants and
pitch apart (Praat's "Change gender", through the praat-parselmouth package).

A corpus has only a handful of recorded text-to-speech voices (flite's and festival's;
espeak-ng's are formant synthesis). Speed and pitch augmentation move formants and pitch
together, as a faster tape does; real talkers differ in both independently. Each clip of
the chosen engines gets one copy with its formants scaled by a random ratio, a new pitch
median and a new pitch range, drawn per clip (deterministic by seed). Copies keep their
source clip's voice name, so that training drops the copies of held-out voices.

    python -m training.new_voices data/synth/manifest.jsonl --out data/synth_voices
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from training.synth import write_manifest_rows

FORMANT_RATIO = (0.86, 1.2)  # 1.2: a man's vocal tract to a child's, roughly
PITCH_MEDIAN_HZ = (85.0, 270.0)
PITCH_RANGE = (0.6, 1.6)  # the new pitch contour's spread over the old one's
DEFAULT_ENGINES = ("flite", "festival")


@dataclass(frozen=True)
class Change:
    formant_ratio: float
    pitch_median_hz: float
    pitch_range: float


def draw_change(seed: int, key: str) -> Change:
    """The change for one clip: log-uniform ratio and pitch, uniform range."""
    rng = random.Random(hashlib.sha1(f"{seed}|{key}".encode()).hexdigest())

    def log_uniform(lo: float, hi: float) -> float:
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    return Change(round(log_uniform(*FORMANT_RATIO), 3), round(log_uniform(*PITCH_MEDIAN_HZ), 1),
                  round(rng.uniform(*PITCH_RANGE), 2))


def change_voice(audio: np.ndarray, sample_rate: int, change: Change) -> np.ndarray:
    """`audio` with the formants and pitch of `change`; same length and rate."""
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=sample_rate)
    with warnings.catch_warnings():  # "no voiced segments": a clip of /s/ alone, kept as is
        warnings.simplefilter("ignore", parselmouth.PraatWarning)
        # Pitch is tracked between 75 and 600 Hz; duration is left to training's speed
        # changes.
        out = call(sound, "Change gender", 75, 600, change.formant_ratio,
                   change.pitch_median_hz, change.pitch_range, 1.0).values[0]
    peak = float(np.abs(out).max()) if len(out) else 0.0
    if peak > 0.99:  # PSOLA can overshoot; keep the copy unclipped
        out = out * (0.99 / peak)
    return out.astype(np.float32)


def _convert(task: tuple[str, str, str, int]) -> str | None:
    """Write one copy atomically; returns an error message or None."""
    src, dst, rel, seed = task
    try:
        audio, rate = sf.read(src, dtype="float32", always_2d=True)
        out = change_voice(audio.mean(axis=1), rate, draw_change(seed, rel))
        tmp = dst + ".tmp.wav"
        sf.write(tmp, out, rate, subtype="PCM_16")
        os.replace(tmp, dst)
        return None
    except Exception as e:  # a bad clip is counted, never fatal
        return f"{src}: {e}"


def plan(manifest: Path, engines: tuple[str, ...]) -> list[tuple[dict, str, str]]:
    """(row, source path, relative output path) of each clip to copy; malformed rows are
    skipped with one line giving their count."""
    todo, bad = [], 0
    for line in manifest.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            engine = str(row.get("voice") or "").split(":")[0]
            src = Path(row["path"])
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            bad += 1
            continue
        if engine in engines:
            src = src if src.is_absolute() else manifest.parent / src
            todo.append((row, str(src), f"wavs/{engine}/{src.stem}.wav"))
    if bad:
        print(f"new_voices: {manifest}: skipped {bad} malformed rows", file=sys.stderr)
    return todo


def convert_corpus(manifest: Path, out: Path, seed: int = 0,
                   engines: tuple[str, ...] = DEFAULT_ENGINES, jobs: int | None = None) -> int:
    """Copy every clip of `engines` in `manifest` with a new voice into `out`; resumable."""
    if not manifest.is_file():
        raise SystemExit(f"new_voices: manifest {manifest} does not exist")
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        raise SystemExit("new_voices: needs the praat-parselmouth package "
                         "(pip install -e '.[train]')") from None
    todo = plan(manifest, engines)
    if not todo:
        raise SystemExit(f"new_voices: {manifest} has no clips of {', '.join(engines)}")
    for sub in {Path(rel).parent for _, _, rel in todo}:
        (out / sub).mkdir(parents=True, exist_ok=True)
    tasks = [(src, str(out / rel), rel, seed) for _, src, rel in todo if not (out / rel).exists()]
    print(f"new_voices: {len(todo) - len(tasks)} of {len(todo)} clips already made",
          file=sys.stderr)
    failures = 0
    with ProcessPoolExecutor(jobs or os.cpu_count()) as pool:
        for err in tqdm(pool.map(_convert, tasks, chunksize=32), total=len(tasks),
                        unit="clip", desc="new voices"):
            if err:
                failures += 1
                if failures <= 10:
                    tqdm.write(f"new_voices: {err}")
    n = write_manifest_rows(out, ({**row, "path": rel, **asdict(draw_change(seed, rel))}
                                  for row, _, rel in todo))
    print(f"new_voices: {n} clips in {out / 'manifest.jsonl'} ({failures} failed)",
          file=sys.stderr)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.new_voices", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="the synthetic corpus's manifest.jsonl")
    p.add_argument("--out", type=Path, default=Path("data/synth_voices"),
                   help="output folder for wavs/ and manifest.jsonl (default: data/synth_voices)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--engines", nargs="+", default=list(DEFAULT_ENGINES),
                   help="engines whose clips get new voices (default: flite festival, the "
                   "recorded voices)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    args = p.parse_args(argv)
    convert_corpus(args.manifest, args.out, args.seed, tuple(args.engines), args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
