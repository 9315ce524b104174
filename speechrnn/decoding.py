"""CTC decoding of per-frame log-probabilities: greedy, prefix beam search, and scoring
against a command list with a "none of these" alternative and a confidence in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def greedy_ids(log_probs: np.ndarray, blank: int = 0) -> list[int]:
    """Best token per frame, repeats collapsed, blanks removed."""
    best = np.asarray(log_probs).argmax(axis=-1)
    if best.size == 0:
        return []
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(i) for i in best[keep] if i != blank]


def ids_to_text(ids: Sequence[int], tokens: Sequence[str]) -> str:
    """Text of collapsed token ids, with spaces tidied (no edge or double spaces)."""
    return " ".join("".join(tokens[i] for i in ids).split())


def greedy_text(log_probs: np.ndarray, tokens: Sequence[str], blank: int = 0) -> str:
    return ids_to_text(greedy_ids(log_probs, blank), tokens)


def prefix_beam_search(log_probs: np.ndarray, beam_width: int = 8, blank: int = 0,
                       prune: float = 1e-3) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search: [(token ids, log probability)], best first.

    Per frame only the `beam_width` likeliest tokens with probability above `prune` are
    tried (blank always is). With a wide enough beam and prune=0 the scores are exact
    label-sequence log-probabilities.
    """
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    if probs.shape[0] == 0:
        return [((), 0.0)]
    # Candidates of every frame at once; Python floats and lists are much faster than
    # numpy scalars in the loop below.
    top = np.argsort(-probs, axis=1)[:, : beam_width + 1]
    rows = probs.tolist()
    frames = [[k for k in ks if k != blank and row[k] > prune]
              for ks, row in zip(top.tolist(), rows, strict=True)]
    # beam entries: prefix -> [p ending in blank, p ending in non-blank], scaled per frame
    beams: dict[tuple[int, ...], list[float]] = {(): [1.0, 0.0]}
    log_scale = 0.0
    for row, candidates in zip(rows, frames, strict=True):
        p_blank = row[blank]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = pb + pnb
            entry = nxt.get(prefix)
            if entry is None:
                entry = nxt[prefix] = [0.0, 0.0]
            entry[0] += total * p_blank
            last = prefix[-1] if prefix else -1
            for k in candidates:
                pk = row[k]
                key = prefix + (k,)
                ext = nxt.get(key)
                if ext is None:
                    ext = nxt[key] = [0.0, 0.0]
                if k == last:
                    # A repeat only extends the prefix after a blank; otherwise it merges.
                    ext[1] += pb * pk
                    entry[1] += pnb * pk
                else:
                    ext[1] += total * pk
        if len(nxt) > beam_width:
            ranked = sorted(nxt.items(), key=lambda kv: kv[1][0] + kv[1][1], reverse=True)
            nxt = dict(ranked[:beam_width])
        norm = sum(pb + pnb for pb, pnb in nxt.values())
        if norm <= 0.0:
            return [((), -math.inf)]
        log_scale += math.log(norm)
        for entry in nxt.values():
            entry[0] /= norm
            entry[1] /= norm
        beams = nxt
    result = [(prefix, log_scale + math.log(pb + pnb)) for prefix, (pb, pnb) in beams.items()
              if pb + pnb > 0]
    result.sort(key=lambda r: r[1], reverse=True)
    return result


def ctc_log_likelihood(log_probs: np.ndarray, labels: Sequence[int], blank: int = 0) -> float:
    """log P(labels | frames) summed over all CTC alignments."""
    return float(CTCGraph([labels], blank=blank).log_likelihoods(log_probs)[0])


class CTCGraph:
    """Several label sequences compiled for a vectorised CTC forward pass.

    With `space` given, each sequence may also start and/or end with one `space`
    token, so a segment framed with a little of a neighbouring word boundary still
    scores; the result is the summed probability of the variants.
    """

    def __init__(self, sequences: Sequence[Sequence[int]], blank: int = 0,
                 space: int | None = None):
        if not sequences or any(len(s) == 0 for s in sequences):
            raise ValueError("every label sequence needs at least one token")
        states = []
        for seq in sequences:
            ext = [blank]
            for token in seq:
                ext += [token, blank]
            if space is not None:
                ext = [blank, space] + ext + [space, blank]
            states.append(ext)
        width = max(len(s) for s in states)
        n = len(states)
        self.labels = np.zeros((n, width), dtype=np.int64)
        self.valid = np.zeros((n, width), dtype=bool)
        self.skip = np.zeros((n, width), dtype=bool)  # may come from s - 2
        self.jump = np.zeros((n, width), dtype=bool)  # may come from s - 3
        self.start = np.zeros((n, width), dtype=bool)
        self.final = np.zeros((n, width), dtype=bool)
        for i, ext in enumerate(states):
            size = len(ext)
            self.labels[i, :size] = ext
            self.valid[i, :size] = True
            for s in range(2, size):
                self.skip[i, s] = ext[s] != blank and ext[s] != ext[s - 2]
            if space is None:
                self.start[i, :2] = True
                self.final[i, size - 2:size] = True
            else:
                # [b, sp, b, l1, ...]: start at b, sp or l1 (never at the second b, which
                # would count "b l1" twice); b -> l1 skips the optional space.
                self.start[i, [0, 1, 3]] = True
                self.jump[i, 3] = True
                self.final[i, size - 4:size] = True

    def log_likelihoods(self, log_probs: np.ndarray) -> np.ndarray:
        """log P(sequence | frames) for every sequence; -inf when it cannot fit."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        n = self.labels.shape[0]
        if log_probs.shape[0] == 0:
            return np.full(n, -np.inf)
        # Probability domain with per-frame rescaling: exact, and much faster than
        # logaddexp over [commands, states].
        emit = np.exp(log_probs)[:, self.labels] * self.valid  # [T, n, S]
        alpha = emit[0] * self.start
        log_scale = np.zeros(n)
        skip, jump = self.skip, self.jump
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in range(len(emit)):
                if t:
                    prev = alpha
                    alpha = prev.copy()
                    alpha[:, 1:] += prev[:, :-1]
                    alpha[:, 2:] += prev[:, :-2] * skip[:, 2:]
                    alpha[:, 3:] += prev[:, :-3] * jump[:, 3:]
                    alpha *= emit[t]
                norm = alpha.sum(axis=1)
                ok = norm > 0
                alpha[ok] /= norm[ok, None]
                log_scale += np.log(norm)
            end = (alpha * self.final).sum(axis=1)
            return log_scale + np.log(end)


def log_sum_exp(values: Sequence[float]) -> float:
    values = [v for v in values if v > -math.inf]
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


@dataclass(frozen=True)
class CommandMatch:
    """The best command for a stretch of audio and how sure the decoder is of it."""

    command: str  # best-scoring command, whether or not it passes the threshold
    confidence: float  # posterior of `command` against the others and "none of these"
    log_likelihood: float  # CTC log P(command | audio)
    other_log_likelihood: float  # log P of the best hypotheses that are not commands
    free_text: str  # best unconstrained hypothesis (prefix beam search)


@dataclass(frozen=True)
class FreeResult:
    text: str
    confidence: float  # share of the beam's probability held by `text`
    log_likelihood: float


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between two strings."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def is_variant(text: str, command: str, max_distance: float) -> bool:
    """`text` is within `max_distance` edits per character of `command`."""
    return edit_distance(text, command) <= max_distance * max(len(text), len(command), 1)


class CommandScorer:
    """Scores audio against a fixed command list.

    Each command's CTC log-likelihood is compared with every other command and with
    "none of these": the probability of the best free (beam search) hypotheses that are
    not commands, the empty one included, so noise and other words lose to it. The
    confidence is the posterior of the best command among these alternatives.

    A character model spreads probability over spellings of what it heard ("stop",
    "stopp", "ston"), so free hypotheses within `variant_distance` edits per character of
    the best command count as variants of it, not as evidence for "none of these";
    0.4 keeps "back" (0.5 from "backward") an other word. `scale` (a temperature) and
    `other_bias` (log-odds added to "none of these") are there for calibration; 1 and 0
    leave the posterior as it is.
    """

    def __init__(self, commands: Sequence[str], tokens: Sequence[str], blank: int = 0,
                 beam_width: int = 8, variant_distance: float = 0.4, scale: float = 1.0,
                 other_bias: float = 0.0):
        if not commands:
            raise ValueError("the command list is empty")
        self.commands = list(commands)
        self.tokens = list(tokens)
        self.blank = blank
        self.beam_width = beam_width
        self.variant_distance = variant_distance
        self.scale = scale
        self.other_bias = other_bias
        index = {t: i for i, t in enumerate(self.tokens)}
        sequences = [[index[c] for c in command] for command in self.commands]
        self.graph = CTCGraph(sequences, blank=blank, space=index.get(" "))
        self._known = set(self.commands)

    def score(self, log_probs: np.ndarray) -> CommandMatch:
        scores = self.graph.log_likelihoods(log_probs)
        best = int(np.argmax(scores))
        command = self.commands[best]
        beam = [(ids_to_text(ids, self.tokens), lp)
                for ids, lp in prefix_beam_search(log_probs, self.beam_width, self.blank)]
        free_text = beam[0][0] if beam else ""
        other = log_sum_exp([lp for text, lp in beam if text not in self._known
                             and not is_variant(text, command, self.variant_distance)])
        logits = np.append(scores, other + self.other_bias) * self.scale
        finite = logits[np.isfinite(logits)]
        if finite.size == 0 or not np.isfinite(scores[best]):
            confidence = 0.0
        else:
            top = finite.max()
            confidence = float(np.exp(logits[best] - top) / np.exp(finite - top).sum())
        return CommandMatch(command, confidence, float(scores[best]), other, free_text)


def free_decode(log_probs: np.ndarray, tokens: Sequence[str], blank: int = 0,
                beam_width: int = 8) -> FreeResult:
    """Unconstrained transcription by prefix beam search, merging hypotheses that differ
    only in edge or double spaces."""
    beam = prefix_beam_search(log_probs, beam_width, blank)
    merged: dict[str, float] = {}
    for ids, lp in beam:
        text = ids_to_text(ids, tokens)
        merged[text] = log_sum_exp([merged.get(text, -math.inf), lp])
    if not merged:
        return FreeResult("", 0.0, -math.inf)
    text, lp = max(merged.items(), key=lambda kv: kv[1])
    total = log_sum_exp(list(merged.values()))
    confidence = math.exp(lp - total) if total > -math.inf else 0.0
    return FreeResult(text, confidence, lp)
