"""Render a synthetic speech corpus with the text-to-speech engines Debian packages.

Every English espeak-ng voice and variant, flite's voices and festival's voices speak
a word and phrase list at random rate, pitch and emphasis; output is 16 kHz WAV plus a
JSONL manifest (path, text, voice). Deterministic by seed, parallel and resumable.

    python -m training.synth --out data/synth --clips 36000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from speechrnn.text import normalize_text

VOCAB_DIR = Path(__file__).parent / "vocab"
SAMPLE_RATE = 16000
# Share of clips per text source: command words dominate, frequent words teach letters.
TEXT_MIX = {"speech_commands": 0.40, "device_commands": 0.15, "words": 0.30, "word_pairs": 0.15}
# A corpus of one word list (--words): its words alone and in pairs, as often as above.
WORDS_MIX = {"words": 0.85, "word_pairs": 0.15}
ENGINE_SHARE = {"espeak-ng": 0.5, "flite": 0.25, "festival": 0.25}
FLITE_SKIP = {"awb_time"}  # speaks only clock times


@dataclass(frozen=True)
class Job:
    engine: str
    voice: str
    text: str  # what the engine is asked to say (may carry punctuation)
    label: str  # normalized transcript
    rate: float  # 1.0 = engine default speed
    pitch: float  # semitones relative to the voice's default
    path: str  # relative to the output folder


def read_list(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _run(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def espeak_voices() -> list[str]:
    """Every English espeak-ng voice combined with every voice variant."""
    if not shutil.which("espeak-ng"):
        return []
    langs, variants = [], [""]
    for line in _run(["espeak-ng", "--voices=en"]).splitlines()[1:]:
        parts = line.split()
        # mbrola voices (mb/) need the separate mbrola program and its voices.
        if len(parts) >= 5 and parts[4].startswith("gmw/") and parts[1] not in langs:
            langs.append(parts[1])
    for line in _run(["espeak-ng", "--voices=variant"]).splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 5:
            variants.append(parts[4].split("/")[-1])
    return [lang + (f"+{v}" if v else "") for lang in langs for v in variants]


def flite_voices() -> list[str]:
    if not shutil.which("flite"):
        return []
    out = _run(["flite", "-lv"]).split(":", 1)[-1].split()
    return [v for v in out if v not in FLITE_SKIP]


def festival_voices() -> list[str]:
    if not shutil.which("festival"):
        return []
    voices = sorted(p.name for p in Path("/usr/share/festival/voices").glob("*/*") if p.is_dir())
    return voices


def available_voices(engines: list[str]) -> dict[str, list[str]]:
    finders = {"espeak-ng": espeak_voices, "flite": flite_voices, "festival": festival_voices}
    found = {}
    for engine in engines:
        voices = finders[engine]()
        if voices:
            found[engine] = voices
        else:
            print(f"synth: {engine} is not installed (or has no English voice); skipping it.",
                  file=sys.stderr)
    return found


def text_sources(vocab_dir: Path) -> dict[str, list[str]]:
    words = read_list(vocab_dir / "words.txt")
    return {
        "speech_commands": read_list(vocab_dir / "speech_commands.txt"),
        "device_commands": read_list(vocab_dir / "device_commands.txt"),
        "words": words,
        "word_pairs": words,  # combined at random below
    }


def word_sources(path: Path) -> dict[str, list[str]]:
    """The text sources of a corpus of one word list (see WORDS_MIX)."""
    words = read_list(path)
    if not words:
        raise SystemExit(f"synth: {path} lists no words")
    return {"words": words, "word_pairs": words}


def plan_jobs(clips: int, voices: dict[str, list[str]], sources: dict[str, list[str]],
              seed: int, mix: dict[str, float] = TEXT_MIX) -> list[Job]:
    """The whole corpus as a deterministic list of jobs."""
    rng = random.Random(seed)
    shares = {e: ENGINE_SHARE.get(e, 0.1) for e in voices}
    total = sum(shares.values())
    kinds, weights = zip(*mix.items())
    jobs = []
    for engine, share in shares.items():
        for _ in range(round(clips * share / total)):
            voice = rng.choice(voices[engine])
            kind = rng.choices(kinds, weights)[0]
            if kind == "word_pairs":
                text = " ".join(rng.choice(sources[kind]) for _ in range(rng.randint(2, 3)))
            else:
                text = rng.choice(sources[kind])
            label = normalize_text(text)
            spoken = text + rng.choice(["", "", ".", "!", "?"])  # punctuation moves intonation
            rate = round(rng.uniform(0.75, 1.35), 3)
            pitch = round(rng.uniform(-4.0, 4.0), 2)
            key = f"{engine}|{voice}|{spoken}|{rate}|{pitch}|{len(jobs)}"
            name = hashlib.sha1(key.encode()).hexdigest()[:16]
            path = f"wavs/{engine}/{name}.wav"
            jobs.append(Job(engine, voice, spoken, label, rate, pitch, path))
    rng.shuffle(jobs)
    return jobs


def _to_16k(src: str, dst: Path, pitch_semitones: float = 0.0) -> None:
    """Convert to 16 kHz mono 16-bit with sox, optionally shifting pitch; atomic."""
    tmp = dst.with_suffix(".tmp.wav")
    cmd = ["sox", "-q", src, "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(tmp)]
    if abs(pitch_semitones) > 0.05:
        cmd += ["pitch", str(round(pitch_semitones * 100))]
    cmd += ["rate", str(SAMPLE_RATE)]
    _run(cmd)
    os.replace(tmp, dst)


def _render_espeak(job: Job, raw: str) -> None:
    speed = int(175 * job.rate)
    pitch = int(min(99, max(0, 50 + job.pitch * 6)))
    emphasis = ["-k", "10"] if random.Random(job.path).random() < 0.2 else []
    _run(["espeak-ng", "-v", job.voice, "-s", str(speed), "-p", str(pitch), *emphasis,
          "-w", raw, job.text])


def _render_flite(job: Job, raw: str) -> None:
    f0 = 100 * 2 ** (job.pitch / 12)
    _run(["flite", "-voice", job.voice, "--setf", f"duration_stretch={1 / job.rate:.3f}",
          "--setf", f"int_f0_target_mean={f0:.0f}", "-t", job.text, "-o", raw])


def _festival_batch(jobs: list[Job], raws: list[str]) -> None:
    """One festival process renders a batch (its start-up costs ~0.4 s)."""
    lines = [f"(voice_{jobs[0].voice})"]
    for job, raw in zip(jobs, raws):
        text = job.text.replace("\\", "").replace('"', "")
        lines.append(f"(Parameter.set 'Duration_Stretch {1 / job.rate:.3f})")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{text}")) "{raw}" \'riff)')
    _run(["festival", "--pipe"], input="\n".join(lines) + "\n")


def render_batch(jobs: list[Job], out_dir: str) -> list[tuple[Job, str | None]]:
    """Render jobs (all of one engine and voice); returns (job, error or None)."""
    out = Path(out_dir)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        raws = [os.path.join(tmp, f"{i}.wav") for i in range(len(jobs))]
        if jobs[0].engine == "festival":
            try:
                _festival_batch(jobs, raws)
            except subprocess.CalledProcessError as e:
                return [(job, f"festival failed: {e.stderr.strip()[:200]}") for job in jobs]
        for job, raw in zip(jobs, raws):
            try:
                if job.engine == "espeak-ng":
                    _render_espeak(job, raw)
                elif job.engine == "flite":
                    _render_flite(job, raw)
                dst = out / job.path
                dst.parent.mkdir(parents=True, exist_ok=True)
                # espeak and flite shift pitch themselves; festival gets it from sox.
                _to_16k(raw, dst, job.pitch if job.engine == "festival" else 0.0)
                results.append((job, None))
            except (subprocess.CalledProcessError, OSError) as e:
                err = getattr(e, "stderr", "") or str(e)
                results.append((job, f"{job.engine} failed: {str(err).strip()[:200]}"))
    return results


def batches(jobs: list[Job], size: int) -> list[list[Job]]:
    """Group jobs by engine and voice into batches of at most `size`."""
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.engine, job.voice), []).append(job)
    return [g[i:i + size] for g in groups.values() for i in range(0, len(g), size)]


def write_manifest(out: Path, jobs: list[Job]) -> int:
    """Manifest of the rendered clips, in plan order; written atomically."""
    return write_manifest_rows(out, (
        {"path": job.path, "text": job.label, "voice": f"{job.engine}:{job.voice}",
         "engine": job.engine, "rate": job.rate, "pitch": job.pitch} for job in jobs))


def write_manifest_rows(out: Path, rows: Iterable[dict]) -> int:
    """`out`/manifest.jsonl of the rows whose audio (`path`, relative to `out`) exists, in
    order; written atomically. Returns the count written."""
    tmp = out / "manifest.jsonl.tmp"
    n = 0
    with open(tmp, "w") as f:
        for row in rows:
            if (out / row["path"]).exists():
                f.write(json.dumps(row) + "\n")
                n += 1
    os.replace(tmp, out / "manifest.jsonl")
    return n


def synthesize(out: Path, clips: int, seed: int = 0, engines: list[str] | None = None,
               jobs_n: int | None = None, vocab_dir: Path = VOCAB_DIR,
               words: Path | None = None) -> int:
    """Render the corpus of `vocab_dir` (or of the word list `words`) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    voices = available_voices(engines or list(ENGINE_SHARE))
    if not voices:
        raise SystemExit("synth: no text-to-speech engine found; install espeak-ng, flite "
                         "or festival (see README).")
    for engine, names in voices.items():
        print(f"synth: {engine}: {len(names)} voices", file=sys.stderr)
    if words:
        plan = plan_jobs(clips, voices, word_sources(words), seed, WORDS_MIX)
    else:
        plan = plan_jobs(clips, voices, text_sources(vocab_dir), seed)
    (out / "plan.json").write_text(json.dumps({"seed": seed, "clips": clips,
                                               "words": str(words) if words else None,
                                               "voices": voices}, indent=1))
    todo = [j for j in plan if not (out / j.path).exists()]
    print(f"synth: {len(plan) - len(todo)} of {len(plan)} clips already rendered",
          file=sys.stderr)
    failures = 0
    with ProcessPoolExecutor(jobs_n or os.cpu_count()) as pool:
        futures = [pool.submit(render_batch, b, str(out)) for b in batches(todo, 25)]
        with tqdm(total=len(todo), unit="clip", desc="synth") as bar:
            for fut in as_completed(futures):
                for job, err in fut.result():
                    if err:
                        failures += 1
                        if failures <= 10:
                            tqdm.write(f"synth: {job.path}: {err}")
                    bar.update(1)
    n = write_manifest(out, plan)
    print(f"synth: {n} clips in {out / 'manifest.jsonl'} ({failures} failed)", file=sys.stderr)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("data/synth"),
                   help="output folder for wavs/ and manifest.jsonl (default: data/synth)")
    p.add_argument("--clips", type=int, default=36000, help="clips to render (default: 36000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--engines", nargs="+", choices=list(ENGINE_SHARE),
                   help="engines to use (default: all installed)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--vocab", type=Path, default=VOCAB_DIR,
                   help="folder with words.txt, speech_commands.txt, device_commands.txt")
    p.add_argument("--words", type=Path, default=None, metavar="FILE",
                   help="render only the words of FILE (one a line), alone and in pairs, "
                   "instead of the vocabulary's mix (the commands' sound-alikes tried in the "
                   "README: --words training/vocab/confusables.txt --out data/confusables "
                   "--clips 8000 --seed 7)")
    args = p.parse_args(argv)
    synthesize(args.out, args.clips, args.seed, args.engines, args.jobs, args.vocab,
               args.words)
    return 0


if __name__ == "__main__":
    sys.exit(main())
