"""Scoring: each clip through the model once, every threshold decided from stored scores.

`Verdict` keeps what Recognizer.transcribe computes for a short clip before it applies
the threshold, so `Verdict.text(t)` is what `Recognizer(threshold=t).transcribe(clip)`
returns, for any t, from one run of the model. The false-reject / false-accept sweep
works on these stored scores.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from speechrnn.audio import SAMPLE_RATE, to_16k_mono
from speechrnn.recognizer import (
    DEFAULT_THRESHOLD,
    Recognizer,
    _is_silent,
    frame_power,
    speech_piece,
    speech_regions,
)

REJECTED = "(rejected)"
THRESHOLDS = tuple(np.round(np.concatenate([np.arange(0.0, 0.9, 0.05),
                                            np.arange(0.9, 1.0, 0.01), [0.995, 0.999]]), 3))


@dataclass
class Verdict:
    """Best command and confidence of a clip, whole and (if it has several speech regions)
    region by region; `seconds` is the audio's length, `compute` the time it took."""

    best: str = ""
    confidence: float = 0.0
    regions: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    compute: float = 0.0

    def text(self, threshold: float) -> str:
        """What the recognizer outputs at this threshold ("" when it rejects)."""
        if self.best and self.confidence >= threshold:
            return self.best
        return " ".join(c for c, p in self.regions if c and p >= threshold)


def speechrnn_verdict(recognizer: Recognizer, audio: np.ndarray,
                      sample_rate: int = SAMPLE_RATE,
                      threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """The recognizer's view of one short clip (as Recognizer._short decides it).

    A clip with several speech regions has them decoded one by one too, so that any
    threshold can be scored; `compute` counts them only where `Recognizer.transcribe` at
    `threshold` decodes them, when the whole speech piece is rejected, so it is the time
    the runtime spends on the clip.
    """
    audio = to_16k_mono(audio, sample_rate)
    start = time.perf_counter()
    verdict = Verdict(seconds=len(audio) / SAMPLE_RATE)
    power = frame_power(audio)
    if _is_silent(audio, power):
        verdict.compute = time.perf_counter() - start
        return verdict
    regions = speech_regions(audio, power)
    whole = recognizer.decode(recognizer.session.log_probs(
        speech_piece(audio, regions=regions)[2]))
    verdict.best, verdict.confidence = whole.candidate, whole.confidence
    verdict.compute = time.perf_counter() - start
    if len(regions) >= 2:
        start = time.perf_counter()
        pieces = [speech_piece(audio, regions=[r])[2] for r in regions]
        results = [recognizer.decode(lp) for lp in recognizer.session.log_probs_batch(pieces)]
        verdict.regions = [(r.candidate, r.confidence) for r in results]
        if whole.confidence < threshold:
            verdict.compute += time.perf_counter() - start
    return verdict


@dataclass
class StreamSegment:
    start: float
    end: float
    best: str
    confidence: float


def long_form_segments(recognizer: Recognizer, blocks: Iterable[np.ndarray],
                       on_piece=None, keep_seconds: float = 60.0) -> list[StreamSegment]:
    """Every decided segment of a long recording, as `speechrnn transcribe` and `listen`
    decide them (the stream engine, at the recognizer's threshold): accepted commands and
    rejected segments, each with its best command and confidence.

    Thresholds at or above the recognizer's are exact on these scores; lower ones are
    read from the rejected segments' confidences (the engine could have cut a little
    differently there). `on_piece(audio)` gets each segment's audio, with the context the
    decoder saw, for the peer to decode the same sound.
    """
    from speechrnn.recognizer import CONTEXT
    from speechrnn.stream import StreamEngine

    engine = StreamEngine(recognizer, partials=False)
    out: list[StreamSegment] = []
    recent = np.zeros(0, np.float32)  # the last keep_seconds of audio
    recent_start = 0  # stream sample of recent[0]
    keep = int(keep_seconds * SAMPLE_RATE)

    def take(events):
        for e in events:
            if e.type not in ("command", "rejected"):
                continue
            out.append(StreamSegment(e.start, e.end, e.text, e.confidence))
            if on_piece:
                a = max(0, int((e.start - CONTEXT) * SAMPLE_RATE) - recent_start)
                b = max(a, int((e.end + CONTEXT) * SAMPLE_RATE) - recent_start)
                on_piece(recent[a:b])

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        recent = np.concatenate([recent, block])
        if len(recent) > keep:
            recent_start += len(recent) - keep
            recent = recent[-keep:]
        take(engine.process(block))
    take(engine.flush())
    return out


# -- rates and the threshold sweep -----------------------------------------------------


def outcome(said_expected: str, output: str) -> str:
    """"right", "wrong" or "rejected" for a command clip; "rejected"/"accepted" otherwise."""
    if said_expected:
        return "right" if output == said_expected else "rejected" if not output else "wrong"
    return "rejected" if not output else "accepted"


def false_reject_rate(expected: Sequence[str], verdicts: Sequence[Verdict],
                      threshold: float) -> float:
    """Share of command clips not recognized as their command (rejected or another)."""
    pairs = [(e, v) for e, v in zip(expected, verdicts, strict=True) if e]
    if not pairs:
        return float("nan")
    return sum(v.text(threshold) != e for e, v in pairs) / len(pairs)


def false_accepts_per_hour(confidences: Sequence[float], hours: float,
                           threshold: float) -> float:
    """Segments of command-free audio accepted as a command at this threshold, per hour."""
    if hours <= 0:
        raise ValueError("hours must be positive")
    return float(np.sum(np.asarray(confidences) >= threshold)) / hours


def sweep(expected: Sequence[str], verdicts: Sequence[Verdict], fa_confidences: Sequence[float],
          hours: float, thresholds: Sequence[float] = THRESHOLDS) -> list[dict]:
    """(threshold, false-reject rate, false accepts per hour) for each threshold."""
    return [{"threshold": float(t), "fr": false_reject_rate(expected, verdicts, t),
             "fa_per_hour": false_accepts_per_hour(fa_confidences, hours, t)}
            for t in thresholds]


def recommended_threshold(curve: list[dict], max_fa_per_hour: float = 1.0) -> dict | None:
    """The lowest threshold (fewest false rejects) with under `max_fa_per_hour` false
    accepts an hour; None when no threshold gets there."""
    ok = [p for p in curve if p["fa_per_hour"] < max_fa_per_hour]
    return min(ok, key=lambda p: (p["fr"], p["threshold"])) if ok else None


def confusion(expected: Sequence[str], outputs: Sequence[str]) -> dict[str, Counter]:
    """For each expected command, how often each output came (REJECTED for nothing)."""
    table: dict[str, Counter] = {}
    for e, o in zip(expected, outputs, strict=True):
        if e:
            table.setdefault(e, Counter())[o or REJECTED] += 1
    return table


def pct(x: float, digits: int = 1) -> str:
    return "–" if x != x else f"{100 * x:.{digits}f} %"
