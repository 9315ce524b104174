"""Words that sound like a command: examples of what a command is not.

In the default corpus each of the 35 command words is spoken about 470 times and each of
the 3,000 frequent words about 4 times, so the model hears little of "bad" beside "bed".
This lists the frequent words within one phoneme of a command word (espeak-ng's American
English phonemes, stress ignored); `python -m training.synth --words` renders them into a
corpus of their own, which a config's `data.extra_synth_manifests` adds to training. (The
default recipe does not: the README says what adding it did.)

    python -m training.confusables  # writes training/vocab/confusables.txt
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechrnn.decoding import edit_distance
from training.synth import VOCAB_DIR, read_list

OUT = VOCAB_DIR / "confusables.txt"


def espeak_phonemes(word: str) -> tuple[str, ...]:
    """espeak-ng's phonemes of `word` (American English), without stress marks."""
    out = subprocess.run(["espeak-ng", "-q", "-x", "-v", "en-us", "--sep=_", word],
                         check=True, capture_output=True, text=True).stdout
    return tuple(p for p in out.strip().replace("'", "").replace(",", "").split("_") if p)


def confusables(commands: Sequence[str], words: Sequence[str], exclude: Sequence[str] = (),
                max_distance: int = 1,
                phonemes: Callable[[str], tuple[str, ...]] = espeak_phonemes) -> list[str]:
    """The `words` within `max_distance` phoneme edits of a single-word command, other
    than the words of the commands and of `exclude` (phrases the corpus already speaks);
    sorted."""
    known = {w for c in [*commands, *exclude] for w in c.split()}
    targets = [c for c in commands if " " not in c]
    candidates = sorted({w for w in words if w not in known})
    with ThreadPoolExecutor(8) as pool:  # one espeak-ng process a word
        sounds = dict(zip(targets + candidates, pool.map(phonemes, targets + candidates),
                          strict=True))
    return [w for w in candidates
            if any(edit_distance(sounds[w], sounds[c]) <= max_distance for c in targets)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.confusables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commands", type=Path, default=VOCAB_DIR / "speech_commands.txt",
                   help="commands whose sound-alikes are wanted (default: the 35 words of "
                   "the default command list)")
    p.add_argument("--words", type=Path, default=VOCAB_DIR / "words.txt",
                   help="words to choose from (default: training/vocab/words.txt)")
    p.add_argument("--distance", type=int, default=1,
                   help="most phoneme edits from a command (default: 1)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output list (default: {OUT})")
    args = p.parse_args(argv)
    if not shutil.which("espeak-ng"):
        print("confusables: espeak-ng is not installed (see README)", file=sys.stderr)
        return 1
    # The corpus already speaks the device commands' words as commands.
    found = confusables(read_list(args.commands), read_list(args.words),
                        read_list(VOCAB_DIR / "device_commands.txt"), args.distance)
    args.out.write_text("# Words within one phoneme of a command word "
                        "(python -m training.confusables).\n" + "\n".join(found) + "\n")
    print(f"confusables: {len(found)} words in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
