"""The test sets: voices the default model never heard, and users' own manifests.

- ``synthetic``: held-out synthetic voices (the very split training makes, by
  training.datasets.split_by_speaker with the settings of training/configs/default.json)
  saying the 35 Speech Commands words, plus some of their clips of other words.
- ``real-speaker``: the real speaker training holds out (the ros-commands recordings):
  its command words, the words that are not commands ("back", "front") and no-word clips,
  against the model's 35 commands.
- ``real-word``: the real word training holds out ("jarvis") among the other wake words
  of its source ("alexa", "computer", "jarvis").
- ``--manifest NAME=FILE``: a user's JSONL manifest (`path`, `text`; paths relative to the
  manifest; `text` "" for a clip with no word), scored against its own texts.
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, TRAINING_CONFIG, real_held_out_specs
from speechrnn.audio import read_audio
from speechrnn.text import normalize_text


class ManifestError(Exception):
    """A --manifest argument or file that cannot be used; the message says why."""


@dataclass
class Clip:
    name: str
    said: str  # what the clip says ("" for no word)
    expected: str  # the command to recognize, "" when nothing should be
    kind: str  # "command", "other word" or "no word"
    path: str

    def audio(self) -> np.ndarray:
        return read_audio(self.path)


@dataclass
class TestSet:
    name: str
    description: str
    commands: list[str]
    clips: list[Clip] = field(default_factory=list)


def make_clip(name: str, path: str, said: str, commands: list[str]) -> Clip:
    said = normalize_text(said or "")
    kind = "no word" if not said else "command" if said in commands else "other word"
    return Clip(name, said, said if kind == "command" else "", kind, path)


def says_a_command(text: str, commands: list[str]) -> bool:
    """`text` holds one of the commands as whole words ("scroll down" holds "down")."""
    padded = f" {text} "
    return any(f" {c} " in padded for c in commands)


def sample(items: list, n: int | None, seed: int = 0) -> list:
    """A deterministic sample of n items (all when n is None or larger), in a stable order."""
    if n is None or len(items) <= n:
        return list(items)
    return random.Random(seed).sample(items, n)


# -- the default model's held-out data ------------------------------------------------


def training_config():
    """training/configs/default.json as training reads it (needs the train extra)."""
    from training.train import load_config

    return load_config(TRAINING_CONFIG)


def held_out_synthetic(manifest: Path | None = None) -> list:
    """Held-out utterances of the synthetic corpus, split by voice as training does (it
    reads the whole manifest: a few seconds, so load it once for several sets)."""
    from training.train import split_synthetic

    data = training_config().data
    _, held = split_synthetic(Path(manifest or ROOT / data.synth_manifest), data)
    return sorted(held, key=lambda u: u.path)


def synthetic_set(n: int | None, other_share: float = 0.25,
                  held: list | None = None) -> TestSet:
    """Held-out synthetic voices (`held`, default: held_out_synthetic()) saying the 35
    Speech Commands words, and other words."""
    from training.train import VOCAB_DIR, read_list

    commands = read_list(VOCAB_DIR / "speech_commands.txt")
    return _held_out_set("synthetic", "the 35 Speech Commands words and other words",
                         held, commands, n, other_share)


def phrase_set(n: int | None, other_share: float = 0.25, held: list | None = None) -> TestSet:
    """Held-out synthetic voices (`held`, default: held_out_synthetic()) saying the device
    commands and phrases (training/vocab/device_commands.txt), against that list, and
    other words."""
    from training.train import VOCAB_DIR, read_list

    commands = read_list(VOCAB_DIR / "device_commands.txt")
    phrases = sum(" " in c for c in commands)
    return _held_out_set("phrases", f"the {len(commands)} device commands of training's "
                         f"vocabulary ({phrases} of them phrases: \"turn on the light\", "
                         "\"go back\") and other words", held, commands, n, other_share)


def _held_out_set(name: str, what: str, held: list | None, commands: list[str],
                  n: int | None, other_share: float) -> TestSet:
    if held is None:
        held = held_out_synthetic()
    said = [u for u in held if u.text in commands]
    others = [u for u in held if u.text and not says_a_command(u.text, commands)]
    n_other = None if n is None else int(n * other_share)
    chosen = sample(said, None if n is None else n - n_other) + sample(others, n_other, 1)
    voices = len({u.speaker for u in held})
    return TestSet(name, f"held-out synthetic voices ({voices} voices training never "
                   f"heard): {what}", commands,
                   [make_clip(Path(u.path).name, u.path, u.text, commands) for u in chosen])


def synthetic_other_words(commands: list[str], held: list | None = None) -> list[Clip]:
    """Every held-out synthetic clip (`held`, default: held_out_synthetic()) that says no
    command (for the false-alarm hour)."""
    if held is None:
        held = held_out_synthetic()
    return [make_clip(Path(u.path).name, u.path, u.text, commands)
            for u in held if u.text and not says_a_command(u.text, commands)]


def real_rows(manifest: Path) -> list[dict]:
    rows = []
    for line in manifest.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            row["path"] = str(manifest.parent / row["path"])
            row["text"] = normalize_text(row.get("text") or "")
            rows.append(row)
    return rows


def real_held_out(default_commands: list[str]) -> tuple[TestSet | None, TestSet | None]:
    """The held-out real speaker and the held-out real word, per training's config."""
    speaker = word = None
    for spec in real_held_out_specs():
        manifest, sources, words = spec.manifest, spec.sources, spec.words
        if not manifest.is_file():
            continue
        rows = real_rows(manifest)
        mine = [r for r in rows if r["source"] in sources]
        if mine:
            speaker = TestSet(
                "real-speaker", f"the real speaker training holds out ({spec.speaker_names}): "
                "its words against the model's 35 commands; other words and no-word clips "
                "must be rejected",
                default_commands,
                [make_clip(Path(r["path"]).name, r["path"], r["text"], default_commands)
                 for r in mine])
        unseen = [r for r in rows if r["text"] in words]
        if unseen:
            source = unseen[0]["source"]
            vocab = sorted({r["text"] for r in rows if r["text"] and r["source"] == source})
            word = TestSet(
                "real-word", f"the real word training holds out ({spec.word_names}) "
                f"among the words of its source ({', '.join(vocab)})", vocab,
                [make_clip(Path(r["path"]).name, r["path"], r["text"], vocab) for r in unseen])
    return speaker, word


# -- users' manifests -------------------------------------------------------------------


def parse_manifest_arg(arg: str) -> tuple[str, Path]:
    """`NAME=FILE` -> (name, path); a clear sentence when it is malformed."""
    name, sep, file = arg.partition("=")
    name, file = name.strip(), file.strip()
    if not sep or not name or not file:
        raise ManifestError(f"--manifest takes NAME=FILE (for example mine=clips.jsonl), "
                            f"not {arg!r}")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise ManifestError(f"--manifest name {name!r} may hold only letters, digits, "
                            "'-', '_' and '.'")
    return name, Path(file)


def manifest_set(name: str, path: Path, commands: list[str] | None = None) -> TestSet:
    """A user's JSONL manifest as a test set; commands default to its own texts."""
    if not path.is_file():
        raise ManifestError(f"manifest {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = Path(row["path"])
            text = normalize_text(row.get("text") or "")
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ManifestError(f"{path} line {number} is not a JSON object with 'path' and "
                                "'text'") from None
        if not audio.is_absolute():
            audio = path.parent / audio
        if not audio.is_file():
            raise ManifestError(f"{path} line {number}: audio file {audio} does not exist")
        rows.append((str(audio), text))
    if not rows:
        raise ManifestError(f"manifest {path} has no clips")
    commands = commands or sorted({t for _, t in rows if t})
    if not commands:
        raise ManifestError(f"manifest {path} has no clip with text, so no command list; "
                            "give --commands")
    return TestSet(name, f"`{path}` ({len(rows)} clips) against "
                   f"{len(commands)} commands", commands,
                   [make_clip(Path(a).name, a, t, commands) for a, t in rows])


def skip(what: str, why: str) -> None:
    print(f"skipping {what}: {why}", file=sys.stderr)
