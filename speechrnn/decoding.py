"""CTC decoding of per-frame log-probabilities: greedy, prefix beam search, and scoring
against a command list with a "none of these" alternative and a confidence in [0, 1].
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Prefix beam search width. Command scoring sums the beam's hypotheses that are not
# commands into "none of these", so a wider beam rejects more of what is not a command:
# on half an hour of command-free audio and the held-out command clips, 16 against 8 gave
# the same misses at 50-100 false accepts an hour and fewer below (40 against 42 % at
# 20 an hour), for about 15 % more decoding time.
DEFAULT_BEAM_WIDTH = 16
# Tokens at or below this probability in a frame are not tried as extensions. On the
# same audio, 0.01 against 0.001 gave the same false rejects at 100, 50 and 20 false
# accepts an hour, and scoring took 25 % less time (0.05 began to cost misses).
DEFAULT_PRUNE = 0.01
# Log-probability taken off the blank in every frame before commands are scored. Where
# a CTC model is unsure (noise, a voice unlike training's) it leans to blank, and then
# the commands with the fewest letters win ("on" for "off", "bed" for "bird"). On every
# held-out clip of `benchmarks/bench_model.py` and five models of the shipped recipe,
# 1.0 against 0 gave synthetic voices +0.3-0.8 points clean, +0.9-1.5 at 10 dB and
# +1.3-2.0 at 0 dB, the unseen real speaker +0-1.1 (at 8 kHz +0.8-1.8) and the unseen
# word "jarvis" -0.3-0.6; 1.5 began to cost at 8 kHz. False accepts against false
# rejects did not move. See README, "How it decides".
DEFAULT_BLANK_PENALTY = 1.0
TINY = np.finfo(np.float64).smallest_subnormal

# The frame loops of the beam search and the command graph in C (speechrnn/_ctc.c): the
# same results to the bit, several times faster. Built by `pip install` where a C
# compiler is found; otherwise, or with SPEECHRNN_PURE_PYTHON=1 in the environment, the
# Python loops below run.
if os.environ.get("SPEECHRNN_PURE_PYTHON", "") not in ("", "0"):
    _ctc = None
else:
    try:
        from speechrnn import _ctc
    except ImportError:
        _ctc = None


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


def prefix_beam_search(log_probs: np.ndarray, beam_width: int = DEFAULT_BEAM_WIDTH,
                       blank: int = 0,
                       prune: float = DEFAULT_PRUNE) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search: [(token ids, log probability)], best first.

    Per frame only the `beam_width` likeliest tokens with probability above `prune` are
    tried (blank always is). With a wide enough beam and prune=0 the scores are exact
    label-sequence log-probabilities.
    """
    return _beam_search(np.exp(np.asarray(log_probs, dtype=np.float64)), beam_width, blank,
                        prune)


def _beam_search(probs: np.ndarray, beam_width: int, blank: int,
                 prune: float) -> list[tuple[tuple[int, ...], float]]:
    """prefix_beam_search on probabilities [frames, tokens] (float64)."""
    if probs.shape[0] == 0:
        return [((), 0.0)]
    if beam_width < 1:
        return [((), -math.inf)]
    if _ctc is not None:
        return _ctc.beam_search(np.ascontiguousarray(probs), probs.shape[1], blank,
                                beam_width, prune)
    # Candidates of every frame at once; Python floats and lists are much faster than
    # numpy scalars in the loop below. Only frames where some token but blank passes
    # `prune` have any (most frames are blank-only), so only those are sorted.
    others = probs.copy()
    others[:, blank] = 0.0
    active = np.flatnonzero(others.max(axis=1) > prune)
    # Equal probabilities in token order (a stable sort), as the C loop orders them.
    top = np.argsort(-probs[active], axis=1, kind="stable")[:, : beam_width + 1]
    top_probs = np.take_along_axis(probs[active], top, axis=1)
    chosen = (top != blank) & (top_probs > prune)
    cand_ids, cand_probs = top[chosen].tolist(), top_probs[chosen].tolist()
    counts = np.zeros(len(probs), dtype=np.int64)
    counts[active] = chosen.sum(axis=1)
    # beam: (prefix, p ending in blank, p ending in non-blank), scaled per frame
    beams: list[tuple[tuple[int, ...], float, float]] = [((), 1.0, 0.0)]
    log_scale = 0.0
    settled = False  # every prefix ends in blank and they sum to 1
    i = 0
    for p_blank, count in zip(probs[:, blank].tolist(), counts.tolist(), strict=True):
        if not count:
            if settled and p_blank > 0.0:
                # Another blank-only frame scales every prefix alike: only the scale moves.
                log_scale += math.log(p_blank)
                continue
            # Blank only: every prefix keeps its total, now ending in blank.
            totals = [(pb + pnb) * p_blank for _, pb, pnb in beams]
            norm = sum(totals)
            if norm <= 0.0:
                return [((), -math.inf)]
            log_scale += math.log(norm)
            beams = [(beam[0], total / norm, 0.0) for beam, total in zip(beams, totals)]
            settled = True
            continue
        settled = False
        scaled = list(zip(cand_ids[i:i + count], cand_probs[i:i + count]))
        i += count
        p_token = dict(scaled)
        # Prefixes that extend another one in the beam by a candidate merge with that
        # extension: merging[parent] = {token: child}, by position in the beam.
        position = {beam[0]: j for j, beam in enumerate(beams)}
        merging: dict[int, dict[int, int]] = {}
        for j, (prefix, _, _) in enumerate(beams):
            if prefix and prefix[-1] in p_token:
                parent = position.get(prefix[:-1])
                if parent is not None:
                    merging.setdefault(parent, {})[prefix[-1]] = j
        # Only the beam_width likeliest entries survive, so an extension that falls below
        # beam_width lower bounds of other entries need not be made at all. The bounds:
        # every prefix's blank term, and the first (likeliest) prefix's extensions.
        first, pb, pnb = beams[0]
        last = first[-1] if first else -1
        merges = merging.get(0, {})
        bounds = [(pb if k == last else pb + pnb) * pk for k, pk in scaled if k not in merges]
        bounds += [(pb + pnb) * p_blank for _, pb, pnb in beams]
        cutoff = sorted(bounds, reverse=True)[beam_width - 1] if beam_width <= len(bounds) else 0.0
        # Entries there would be with every extension made: over beam_width, they are
        # ranked (ties keep the order made in) and cut.
        made = len(beams) * (count + 1) - sum(map(len, merging.values()))
        # entries: [p ending in blank, p ending in non-blank, prefix, token appended or None]
        entries = []
        own: list[list | None] = [None] * len(beams)  # each prefix's entry, once made
        for j, (prefix, pb, pnb) in enumerate(beams):
            total = pb + pnb
            last = prefix[-1] if prefix else -1
            # A repeat only extends the prefix after a blank; otherwise it merges.
            p_own = total * p_blank
            p_rep = pnb * p_token[last] if last in p_token else 0.0
            entry = own[j]
            if entry is None:
                own[j] = entry = [p_own, p_rep, prefix, None]
                entries.append(entry)
            else:
                entry[0] += p_own
                entry[1] += p_rep
            merges = merging.get(j)
            for k, pk in scaled:
                p = (pb if k == last else total) * pk
                if merges and k in merges:
                    child = merges[k]
                    if own[child] is None:
                        own[child] = [0.0, p, beams[child][0], None]
                        entries.append(own[child])
                    else:
                        own[child][1] += p
                elif p >= cutoff:
                    entries.append([0.0, p, prefix, k])
                elif k != last and not merges:
                    break  # candidates come likeliest first: the rest fall below too
        if made > beam_width:
            entries.sort(key=lambda e: e[0] + e[1], reverse=True)
            del entries[beam_width:]
        norm = sum(pb + pnb for pb, pnb, _, _ in entries)
        if norm <= 0.0:
            return [((), -math.inf)]
        log_scale += math.log(norm)
        beams = [(prefix if k is None else prefix + (k,), pb / norm, pnb / norm)
                 for pb, pnb, prefix, k in entries]
    result = [(prefix, log_scale + math.log(pb + pnb)) for prefix, pb, pnb in beams
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
    scores, and each `space` inside it may be left out ("turn on" also as "turnon"): a
    character model is often unsure where words part. The result is the summed
    probability of the variants.
    """

    # Each sequence's forward variables are rescaled before their total may have changed
    # by more than e^MAX_CHANGE (about 1e43) since the last time: far from float64
    # underflow (1e-308) or overflow, and as exact as rescaling every frame, which takes
    # about 1.5 times as long. (At e^150, very peaky frames start to lose precision.)
    MAX_CHANGE = 100.0

    def __init__(self, sequences: Sequence[Sequence[int]], blank: int = 0,
                 space: int | None = None):
        if not sequences or any(len(s) == 0 for s in sequences):
            raise ValueError("every label sequence needs at least one token")
        # All sequences' states in one flat array, each sequence after two padding states
        # that never hold probability, so every state may come from s - 1 and s - 2
        # without crossing into the previous sequence.
        labels, skip, start, final, starts = [], [], [], [], []
        gaps, gap_letter = [], []  # a letter after an inner space; it may follow the letter
        for seq in sequences:
            ext = [blank]
            for token in seq:
                ext += [token, blank]
            if space is not None:
                ext = [blank, space] + ext + [space, blank]
            starts.append(len(labels))
            offset = len(labels) + 2
            labels += [-1, -1] + ext
            skip += [False, False] + [s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]
                                      for s in range(len(ext))]
            if space is not None:
                # [.. l1, b, sp, b, l2 ..]: l2 may come from the b before the space (s - 3)
                # and, unless it repeats l1, from l1 itself (s - 4).
                for s in range(5, len(ext) - 2):
                    if ext[s - 2] == space and ext[s] not in (blank, space):
                        gaps.append(offset + s)
                        gap_letter.append(ext[s] != ext[s - 4])
            if space is None:
                start += [offset, offset + 1]
                final.append(range(offset + len(ext) - 2, offset + len(ext)))
            else:
                # [b, sp, b, l1, ...] may start at b, sp or l1 and reach l1 from either b.
                # The second b holds the sum of both b's (it starts with the first one's
                # probability and has no s - 2 edge), so l1's s - 1 edge counts both and
                # no s - 3 edge is needed; the double count only changes the rescaling.
                start += [offset, offset + 1, offset + 2, offset + 3]
                final.append(range(offset + len(ext) - 4, offset + len(ext)))
        self.labels = np.array(labels)  # -1: padding
        self.used_labels = np.unique(self.labels[self.labels >= 0])
        # Edges as 0/1 masks over the states they lead to: state s may come from s - 2
        # (skip), s - 3 (after_gap) and s - 4 (after_letter). A mask times a shifted copy
        # of the state vector takes two array operations a frame, where gathering the
        # few gap states by index took seven.
        size = len(labels)
        self.skip = np.array(skip[2:], dtype=np.float64)
        self.has_gaps = bool(gaps)
        self.after_gap = np.zeros(size)
        self.after_gap[gaps] = 1.0
        self.after_gap = self.after_gap[3:]
        self.after_letter = np.zeros(size)
        self.after_letter[[g for g, letter in zip(gaps, gap_letter) if letter]] = 1.0
        self.after_letter = self.after_letter[4:]
        self.start = np.zeros(len(labels))
        self.start[start] = 1.0
        self.final = np.array(final)  # [sequences, final states]
        self.starts = np.array(starts)  # first (padding) state of each sequence
        self.sequence = np.repeat(np.arange(len(starts)), np.diff(starts + [len(labels)]))

    def log_likelihoods(self, log_probs: np.ndarray,
                        probs: np.ndarray | None = None) -> np.ndarray:
        """log P(sequence | frames) for every sequence; -inf when it cannot fit. `probs`,
        exp(log_probs), may be given where the caller has it already."""
        log_probs = np.asarray(log_probs, dtype=np.float64)
        n = len(self.starts)
        frames = log_probs.shape[0]
        if frames == 0:
            return np.full(n, -np.inf)
        # Probability domain with rescaling: exact, and much faster than logaddexp.
        if probs is None:
            probs = np.exp(log_probs)
        fan_in = 5 if self.has_gaps else 3
        if _ctc is not None:
            out = np.empty(n)
            no_gaps = np.empty(0)
            _ctc.forward(np.ascontiguousarray(probs), np.ascontiguousarray(log_probs),
                         log_probs.shape[1], self.labels, self.used_labels, math.log(fan_in),
                         self.start, self.skip, self.after_gap if self.has_gaps else no_gaps,
                         self.after_letter if self.has_gaps else no_gaps, self.MAX_CHANGE,
                         self.starts, self.final, out)
            return out
        padded = np.zeros((frames, log_probs.shape[1] + 1))  # last column: padding
        padded[:, :-1] = probs
        emit = padded.take(self.labels, axis=1)  # [frames, states]
        # A frame scales a sequence's total by at least its least likely label's
        # probability and at most (states a state may come from) times its likeliest one's.
        used = log_probs[:, self.used_labels]
        change = np.maximum(-used.min(axis=1), math.log(fan_in) + used.max(axis=1))
        change = change.tolist()
        rescale = []
        budget = 0.0
        for t in range(frames):
            budget += change[t]
            if t + 1 == frames or budget + change[t + 1] > self.MAX_CHANGE:
                rescale.append(t)
                budget = 0.0
        rescale.append(-1)  # past the end
        norms = np.ones((len(rescale) - 1, n))
        divisor = np.empty(n)
        # Two state vectors, this frame's and the next one's, in turn; each with its
        # views shifted by 0-4 states, made once rather than every frame.
        size = len(self.labels)
        vectors = [emit[0] * self.start, np.zeros(size)]
        shifted = [(v, v[2:], v[1:-1], v[:-2], v[3:], v[:-3], v[4:], v[:-4]) for v in vectors]
        skip, after_gap, after_letter = self.skip, self.after_gap, self.after_letter
        tmp2, tmp3, tmp4 = np.empty(size - 2), np.empty(size - 3), np.empty(size - 4)
        sequence, starts, has_gaps = self.sequence, self.starts, self.has_gaps
        now = 0
        i = 0
        for t in range(frames):
            if t:
                _, a2, a1, a0, _, a_3, _, a_4 = shifted[now]
                now = 1 - now
                b, b2, _, _, b3, _, b4, _ = shifted[now]
                np.add(a2, a1, out=b2)
                np.multiply(a0, skip, out=tmp2)
                np.add(b2, tmp2, out=b2)
                if has_gaps:
                    np.multiply(a_3, after_gap, out=tmp3)
                    np.add(b3, tmp3, out=b3)
                    np.multiply(a_4, after_letter, out=tmp4)
                    np.add(b4, tmp4, out=b4)
                np.multiply(b, emit[t], out=b)
            if t == rescale[i]:
                alpha = vectors[now]
                np.add.reduceat(alpha, starts, out=norms[i])
                # A sequence with no probability left keeps none (and log(0) = -inf).
                np.maximum(norms[i], TINY, out=divisor)
                alpha /= divisor[sequence]
                i += 1
        alpha = vectors[now]
        with np.errstate(divide="ignore"):
            return np.log(norms).sum(axis=0) + np.log(alpha[self.final].sum(axis=1))


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
    log_likelihood: float  # CTC log P(command | audio), less the blank penalty
    other_log_likelihood: float  # the same of the best hypotheses that are not commands
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
        left = i
        for j, cb in enumerate(b):
            # The cheapest of insert, delete and substitute; min() takes nearly twice as long.
            left += 1
            if prev[j + 1] + 1 < left:
                left = prev[j + 1] + 1
            if prev[j] + (ca != cb) < left:
                left = prev[j] + (ca != cb)
            cur.append(left)
        prev = cur
    return prev[-1]


def _letters_and_cuts(text: str) -> tuple[str, frozenset[int]]:
    """`text` without spaces, and where its spaces were ("go back": "goback", {2})."""
    words = text.split(" ")
    return "".join(words), frozenset(itertools.accumulate(len(w) for w in words[:-1]))


def is_variant(text: str, command: str, max_distance: float) -> bool:
    """`text` is within `max_distance` edits per character of `command`."""
    limit = max_distance * max(len(text), len(command), 1)
    # The length difference alone takes that many edits: most texts stop here.
    return abs(len(text) - len(command)) <= limit and edit_distance(text, command) <= limit


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
    leave the posterior as it is. `blank_penalty` is taken off the blank's
    log-probability in every frame before anything is scored (DEFAULT_BLANK_PENALTY
    says why).
    """

    def __init__(self, commands: Sequence[str], tokens: Sequence[str], blank: int = 0,
                 beam_width: int = DEFAULT_BEAM_WIDTH, variant_distance: float = 0.4,
                 scale: float = 1.0, other_bias: float = 0.0,
                 blank_penalty: float = DEFAULT_BLANK_PENALTY):
        if not commands:
            raise ValueError("the command list is empty")
        if not 0.0 <= blank_penalty < math.inf:
            raise ValueError(f"blank_penalty must be 0 or more, not {blank_penalty}")
        self.commands = list(commands)
        self.tokens = list(tokens)
        self.blank = blank
        self.beam_width = beam_width
        self.variant_distance = variant_distance
        self.scale = scale
        self.other_bias = other_bias
        self.blank_penalty = float(blank_penalty)
        index = {t: i for i, t in enumerate(self.tokens)}
        sequences = [[index[c] for c in command] for command in self.commands]
        self.graph = CTCGraph(sequences, blank=blank, space=index.get(" "))
        # The command graph sums each command with any of its spaces left out; the beam's
        # copies of those must not count again as variants.
        self._known = set(self.commands)
        self._cuts: dict[str, list[frozenset[int]]] = {}
        for command in self.commands:
            letters, cuts = _letters_and_cuts(command)
            self._cuts.setdefault(letters, []).append(cuts)
        self._variants: dict[tuple[str, str], bool] = {}  # is_variant, remembered
        self._texts: dict[tuple[int, ...], str] = {}  # ids_to_text, remembered

    def _is_variant(self, text: str, command: str) -> bool:
        # The same few spellings come back clip after clip, and edit distances in Python
        # were a tenth of the scoring time.
        key = (text, command)
        found = self._variants.get(key)
        if found is None:
            if len(self._variants) >= 50_000:  # bounded, for a long listening session
                self._variants.clear()
            found = self._variants[key] = is_variant(text, command, self.variant_distance)
        return found

    def _text(self, ids: tuple[int, ...]) -> str:
        # The same few hypotheses come back frame after frame and clip after clip.
        text = self._texts.get(ids)
        if text is None:
            if len(self._texts) >= 50_000:  # bounded, for a long listening session
                self._texts.clear()
            text = self._texts[ids] = ids_to_text(ids, self.tokens)
        return text

    def _is_command(self, text: str) -> bool:
        """`text` is a command, maybe with some of its spaces left out."""
        if text in self._known:
            return True
        commands_cuts = self._cuts.get(text.replace(" ", ""))
        if not commands_cuts:  # most texts: no command has these letters
            return False
        cuts = _letters_and_cuts(text)[1]
        return any(cuts <= known for known in commands_cuts)

    def penalized(self, log_probs: np.ndarray) -> np.ndarray:
        """`log_probs` [frames, tokens] with the blank penalty taken off the blank."""
        if not self.blank_penalty:
            return log_probs
        out = np.array(log_probs, dtype=np.float64)
        out[:, self.blank] -= self.blank_penalty
        return out

    def command_log_likelihoods(self, log_probs: np.ndarray) -> np.ndarray:
        """Each command's CTC log-likelihood, after the blank penalty."""
        return self.graph.log_likelihoods(self.penalized(log_probs))

    def score(self, log_probs: np.ndarray) -> CommandMatch:
        # The beam sees the same penalized frames, so that "none of these" and the
        # commands stay on one scale.
        log_probs = np.asarray(self.penalized(log_probs), dtype=np.float64)
        probs = np.exp(log_probs)
        scores = self.graph.log_likelihoods(log_probs, probs)
        best = int(np.argmax(scores))
        command = self.commands[best]
        beam = [(self._text(ids), lp) for ids, lp in
                _beam_search(probs, self.beam_width, self.blank, DEFAULT_PRUNE)]
        free_text = beam[0][0] if beam else ""
        other = log_sum_exp([lp for text, lp in beam if not self._is_command(text)
                             and not self._is_variant(text, command)])
        logits = np.append(scores, other + self.other_bias) * self.scale
        finite = logits[np.isfinite(logits)]
        if finite.size == 0 or not np.isfinite(scores[best]):
            confidence = 0.0
        else:
            top = finite.max()
            confidence = float(np.exp(logits[best] - top) / np.exp(finite - top).sum())
        return CommandMatch(command, confidence, float(scores[best]), other, free_text)


def free_decode(log_probs: np.ndarray, tokens: Sequence[str], blank: int = 0,
                beam_width: int = DEFAULT_BEAM_WIDTH) -> FreeResult:
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
