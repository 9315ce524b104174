"""The peer: PocketSphinx (PyPI `pocketsphinx`, its bundled US English model) restricted
to the same command list by a JSGF grammar.

The grammar allows exactly one command per clip, so PocketSphinx always answers with a
command (or nothing, when it finds no speech); its confidence is the posterior of that
answer in its lattice (`Decoder.hyp().prob`), which the benchmark thresholds to reject.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.scoring import Verdict
from speechrnn.audio import SAMPLE_RATE, to_16k_mono


class PeerUnavailable(Exception):
    """PocketSphinx is not installed (pip install pocketsphinx, or the bench extra)."""


def dictionary_words() -> set[str]:
    from pocketsphinx import get_model_path

    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    return {line.split(" ", 1)[0] for line in path.read_text().splitlines() if line}


def grammar(commands: list[str], known: set[str] | None = None) -> tuple[str, list[str]]:
    """(JSGF text allowing exactly one of the commands, commands left out because a word
    of theirs is not in the dictionary)."""
    usable = [c for c in commands if known is None or all(w in known for w in c.split())]
    missing = [c for c in commands if c not in usable]
    if not usable:
        raise ValueError("no command of the list is in PocketSphinx's dictionary")
    rule = " | ".join(usable)
    return f"#JSGF V1.0;\ngrammar commands;\npublic <command> = {rule} ;\n", missing


class PocketSphinx:
    """A PocketSphinx decoder for one command list; `verdict(audio)` as for speechrnn."""

    def __init__(self, commands: list[str]):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise PeerUnavailable("PocketSphinx is not installed: pip install pocketsphinx "
                                  "(or pip install -e '.[bench]')") from None
        text, self.missing = grammar(commands, dictionary_words())
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "commands.gram")
            Path(path).write_text(text)
            self.decoder = Decoder(jsgf=path, loglevel="FATAL", bestpath=True)

    def verdict(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Verdict:
        audio = to_16k_mono(audio, sample_rate)
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        start = time.perf_counter()
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        compute = time.perf_counter() - start
        best = hyp.hypstr.strip() if hyp is not None else ""
        confidence = float(hyp.prob) if hyp is not None and best else 0.0
        return Verdict(best, confidence, [], len(audio) / SAMPLE_RATE, compute)


def version() -> str:
    try:
        from importlib.metadata import version as v

        return v("pocketsphinx")
    except Exception:
        return "?"
