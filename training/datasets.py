"""Training data: JSONL manifests, the Speech Commands folder layout, speaker splits.

Rows whose audio is missing or unreadable are skipped and counted, never fatal.
Splits are made by speaker (or voice), so held-out voices are never heard in training.

    python -m training.datasets SPEECH_COMMANDS_DIR -o gsc_test.jsonl [--split test]

writes one split of a local Google Speech Commands folder as a JSONL manifest, which
`python -m benchmarks --manifest gsc=gsc_test.jsonl` measures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from speechrnn.audio import declip, read_audio
from speechrnn.text import TOKENS, encode, normalize_text

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Utterance:
    path: str
    text: str  # normalized; "" for a clip with no speech
    speaker: str  # voice or speaker id; the unit of train/validation splits
    source: str
    seconds: float = 0.0


def read_manifest(path: str | Path, source: str | None = None) -> list[Utterance]:
    """Rows of a JSONL manifest (`path`, `text`; optional `speaker`/`voice`, `seconds`).

    Relative audio paths are taken relative to the manifest's folder. Rows whose audio
    is missing are skipped with one log line giving the count.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    utts, missing, bad = [], 0, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio = Path(row["path"])
            text = normalize_text(row.get("text") or "")
        except (json.JSONDecodeError, KeyError, TypeError):
            bad += 1
            continue
        if not audio.is_absolute():
            audio = path.parent / audio
        if not audio.is_file():
            missing += 1
            continue
        src = source or row.get("source") or path.parent.name
        speaker = row.get("speaker") or row.get("voice") or f"{src}:{audio.parent.name}"
        utts.append(Utterance(str(audio), text, str(speaker), str(src),
                              float(row.get("seconds") or 0.0)))
    if missing or bad:
        log.warning("%s: skipped %d rows with missing audio and %d malformed rows",
                    path, missing, bad)
    return utts


def read_speech_commands(root: str | Path) -> dict[str, list[Utterance]]:
    """Google Speech Commands layout (`word/*.wav`, validation/testing lists) -> splits.

    The speaker is the file-name prefix before `_nohash_`; `_background_noise_` is skipped.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands folder {root} does not exist")

    def listed(name: str) -> set[str]:
        f = root / name
        return set(f.read_text().split()) if f.is_file() else set()

    val, test = listed("validation_list.txt"), listed("testing_list.txt")
    splits: dict[str, list[Utterance]] = {"train": [], "validation": [], "test": []}
    for wav in sorted(root.glob("*/*.wav")):
        word = wav.parent.name
        if word.startswith("_"):
            continue
        rel = f"{word}/{wav.name}"
        split = "validation" if rel in val else "test" if rel in test else "train"
        speaker = wav.name.split("_nohash_")[0]
        splits[split].append(Utterance(str(wav), normalize_text(word), speaker,
                                       "speech_commands"))
    return splits


def write_manifest(utts: Sequence[Utterance], path: str | Path) -> None:
    """Utterances -> a JSONL manifest (`path` absolute, `text`, `speaker`, `source`)."""
    with open(path, "w") as f:
        for u in utts:
            f.write(json.dumps({"path": str(Path(u.path).resolve()), "text": u.text,
                                "speaker": u.speaker, "source": u.source}) + "\n")


def in_held_out(key: str, fraction: float, salt: str = "speechrnn") -> bool:
    """Stable pseudo-random assignment of a speaker/voice to the held-out set."""
    h = int(hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def split_by_speaker(utts: Sequence[Utterance], fraction: float,
                     always_held_out: Sequence[str] = (),
                     hashed_prefix: str = "") -> tuple[list, list]:
    """(train, held_out): whole speakers go to one side, never single clips.

    `fraction` of the speakers whose id starts with `hashed_prefix` are held out, plus
    every speaker in `always_held_out`.
    """
    train, held = [], []
    for u in utts:
        out = u.speaker in always_held_out or (
            u.speaker.startswith(hashed_prefix) and in_held_out(u.speaker, fraction))
        (held if out else train).append(u)
    return train, held


def load_audio(path: str) -> np.ndarray:
    """Audio file -> 16 kHz mono float32."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        audio = soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)
    return audio


def load_audio_as_heard(path: str) -> np.ndarray:
    """Audio file -> 16 kHz mono float32 as the runtime feeds it to the model: read by
    `speechrnn.audio.read_audio` and its clipped peaks rebuilt (`ModelSession` does that)."""
    return declip(read_audio(path))


class SpeechDataset(torch.utils.data.Dataset):
    """Utterances -> (waveform, token ids); an optional augment(waveform, utt) hook.

    as_heard: load audio as the runtime hears it (load_audio_as_heard), for validation,
    so that its scores are the ones users get; training keeps the recordings as they are.
    """

    def __init__(self, utts: Sequence[Utterance],
                 augment: Callable[[np.ndarray, Utterance], np.ndarray] | None = None,
                 tokens: Sequence[str] = TOKENS, max_seconds: float = 6.0,
                 as_heard: bool = False, clean_copies: bool = False):
        self.utts = list(utts)
        self.augment = augment
        self.load = load_audio_as_heard if as_heard else load_audio
        self.tokens = tuple(tokens)
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        # Also return each clip before its noise (augment.pair), for a teacher model.
        self.clean_copies = clean_copies

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, key: int | tuple[int, int]):
        """key: an index, or (index, batch seed) from BucketBatchSampler for batch framing."""
        i, batch_seed = key if isinstance(key, tuple) else (key, None)
        utt = self.utts[i]
        try:
            audio = self.load(utt.path)
        except Exception as e:  # a damaged file must not stop training
            log.warning("skipping unreadable %s: %s", utt.path, e)
            return None
        clean = None
        if self.clean_copies:
            audio, clean = self.augment.pair(audio, utt, batch_seed=batch_seed)
        elif self.augment is not None:
            audio = (self.augment(audio, utt) if batch_seed is None
                     else self.augment(audio, utt, batch_seed=batch_seed))
        audio = audio[: self.max_samples]
        if not np.isfinite(audio).all():
            return None
        item = (torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
                torch.tensor(encode(utt.text, self.tokens), dtype=torch.long), i)
        if clean is not None:
            item += (torch.from_numpy(np.ascontiguousarray(clean[: self.max_samples],
                                                           dtype=np.float32)),)
        return item


def collate(items):
    """Pad waveforms into a batch; unreadable items (None) are dropped and counted."""
    good = [it for it in items if it is not None]
    dropped = len(items) - len(good)
    if not good:
        return None
    waves, targets, index, *clean = zip(*good)
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(list(waves), batch_first=True)
    target_lengths = torch.tensor([len(t) for t in targets])
    out = {"audio": batch, "audio_lengths": lengths, "targets": torch.cat(targets),
           "target_lengths": target_lengths, "index": torch.tensor(index),
           "dropped": dropped}
    if clean:
        out["clean_audio"] = torch.nn.utils.rnn.pad_sequence(list(clean[0]), batch_first=True)
    return out


def durations(utts: Sequence[Utterance]) -> list[Utterance]:
    """Fill in missing durations from file headers (cheap; used for length bucketing)."""
    out = []
    for u in utts:
        if u.seconds <= 0:
            try:
                u = replace(u, seconds=sf.info(u.path).duration)
            except Exception:
                u = replace(u, seconds=1.0)
        out.append(u)
    return out


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar duration (less padding), in random order, new each epoch.

    With tag_batches, each item is (index, batch seed), so the augmenter can frame all the
    clips of a batch alike (see Augmenter._pads)."""

    def __init__(self, seconds: Sequence[float], batch_size: int, seed: int = 0,
                 bucket_batches: int = 50, tag_batches: bool = False):
        self.seconds = list(seconds)
        self.tag_batches = tag_batches
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.bucket = batch_size * bucket_batches

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed * 1000003 + self.epoch)
        order = list(range(len(self.seconds)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.bucket):
            chunk = sorted(order[start:start + self.bucket], key=lambda i: self.seconds[i])
            batches += [chunk[i:i + self.batch_size]
                        for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        if self.tag_batches:
            seeds = [rng.getrandbits(32) for _ in batches]
            batches = [[(i, seed) for i in b] for b, seed in zip(batches, seeds)]
        return iter(batches)

    def __len__(self) -> int:
        return sum(-(-min(self.bucket, len(self.seconds) - s) // self.batch_size)
                   for s in range(0, len(self.seconds), self.bucket))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.datasets",
                                description="Write one split of a local Google Speech "
                                "Commands folder (word/*.wav with validation_list.txt and "
                                "testing_list.txt) as a JSONL manifest.")
    p.add_argument("folder", help="the Speech Commands folder")
    p.add_argument("-o", "--output", required=True, help="the manifest to write")
    p.add_argument("--split", choices=("train", "validation", "test"), default="test",
                   help="which split (default: test, the clips of speakers that neither "
                   "training nor validation hears)")
    args = p.parse_args(argv)
    try:
        utts = read_speech_commands(args.folder)[args.split]
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not utts:
        print(f"error: {args.folder} holds no clips of the {args.split} split (word/*.wav, "
              "listed in validation_list.txt or testing_list.txt)", file=sys.stderr)
        return 2
    write_manifest(utts, args.output)
    print(f"wrote {args.output}: {len(utts)} clips of {len({u.speaker for u in utts})} "
          f"speakers, {len({u.text for u in utts})} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
