"""CTC decoding checked against brute-force enumeration of every alignment on tiny inputs.

Log-prob matrices are built by hand or drawn at random; no model is involved.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import defaultdict

import numpy as np
import pytest

from speechrnn import decoding
from speechrnn.decoding import (
    CommandScorer,
    CTCGraph,
    ctc_log_likelihood,
    edit_distance,
    free_decode,
    greedy_ids,
    greedy_text,
    is_variant,
    log_sum_exp,
    prefix_beam_search,
)

BLANK = 0
NOT_BUILT = "the C loops are not built (no C compiler at install)"


@pytest.fixture(params=["C", "Python"])
def loops(request, monkeypatch):
    """Runs a test with the decoder's C loops (speechrnn/_ctc.c) and again with its
    pure-Python ones."""
    if request.param == "C":
        if decoding._ctc is None:
            pytest.skip(NOT_BUILT)
    else:
        monkeypatch.setattr(decoding, "_ctc", None)
    return request.param


def random_log_probs(frames: int, tokens: int, seed: int, sharp: float = 1.0) -> np.ndarray:
    logits = np.random.default_rng(seed).standard_normal((frames, tokens)) * sharp
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def collapse(path) -> tuple[int, ...]:
    out = []
    prev = None
    for k in path:
        if k != prev and k != BLANK:
            out.append(k)
        prev = k
    return tuple(out)


def brute_force(log_probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Probability of every label sequence, by summing every alignment."""
    frames, tokens = log_probs.shape
    dist: dict[tuple[int, ...], float] = defaultdict(float)
    for path in itertools.product(range(tokens), repeat=frames):
        dist[collapse(path)] += math.exp(sum(log_probs[t, k] for t, k in enumerate(path)))
    return dist


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("labels", [(1,), (1, 2), (1, 1), (2, 1, 2), (1, 2, 2)])
def test_ctc_likelihood_equals_brute_force(seed, labels, loops):
    log_probs = random_log_probs(5, 3, seed)
    expected = brute_force(log_probs).get(labels, 0.0)
    got = ctc_log_likelihood(log_probs, labels, BLANK)
    if expected == 0.0:
        assert got == -math.inf
    else:
        assert got == pytest.approx(math.log(expected), abs=1e-9)


def test_ctc_likelihood_too_few_frames_is_minus_inf():
    # "aa" needs a blank between the two a's: three frames, and only two are given.
    assert ctc_log_likelihood(random_log_probs(2, 3, 0), (1, 1)) == -math.inf


def space_variants(labels, space):
    """Every label sequence the graph sums for `labels` with `space`: an optional space at
    each edge, and each inner space kept or left out."""
    labels = tuple(labels)
    inner = [i for i, token in enumerate(labels) if token == space]
    out = set()
    for keep in itertools.product((True, False), repeat=len(inner)):
        dropped = {i for i, k in zip(inner, keep) if not k}
        core = tuple(t for i, t in enumerate(labels) if i not in dropped)
        out |= {core, (space, *core), (*core, space), (space, *core, space)}
    return out


@pytest.mark.parametrize("seed", range(4))
def test_optional_spaces_sum_every_variant(seed, loops):
    space = 3
    log_probs = random_log_probs(6, 4, seed)
    dist = brute_force(log_probs)
    for labels in [(1,), (1, 2), (2, 2), (1, 3, 2), (1, 3, 1), (2, 3, 1, 3, 2)]:
        variants = space_variants(labels, space)
        expected = sum(dist.get(v, 0.0) for v in variants)
        got = CTCGraph([labels], blank=BLANK, space=space).log_likelihoods(log_probs)[0]
        assert got == pytest.approx(math.log(expected), abs=1e-9)


def test_graph_scores_many_sequences_of_different_lengths_at_once():
    log_probs = random_log_probs(7, 4, 3)
    sequences = [(1,), (2, 3, 1), (3, 3), (1, 2, 1, 2)]
    together = CTCGraph(sequences).log_likelihoods(log_probs)
    alone = [ctc_log_likelihood(log_probs, s) for s in sequences]
    np.testing.assert_allclose(together, alone, atol=1e-9)


def test_likelihood_is_stable_on_long_confident_input(loops):
    # 2,000 frames of near-certain blanks around one 'a': far beyond float underflow if
    # probabilities were multiplied without rescaling.
    frames = np.full((2000, 3), -30.0)
    frames[:, BLANK] = 0.0
    frames[1000] = [-30.0, 0.0, -30.0]
    assert ctc_log_likelihood(frames, (1,)) == pytest.approx(0.0, abs=1e-6)
    assert ctc_log_likelihood(frames, (2,)) < -25


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_matches_brute_force(seed, loops):
    log_probs = random_log_probs(4, 3, seed, sharp=2.0)
    dist = brute_force(log_probs)
    # 3 tokens over 4 frames give at most 1 + 2 + 4 + 8 + 16 prefixes: a beam of 64
    # keeps them all, so the scores are exact.
    beam = prefix_beam_search(log_probs, beam_width=64, blank=BLANK, prune=0.0)
    assert dict((k, math.exp(v)) for k, v in beam) == pytest.approx(
        {k: v for k, v in dist.items() if v > 0}, rel=1e-9)
    best = max(dist, key=dist.get)
    narrow = prefix_beam_search(log_probs, beam_width=4, blank=BLANK, prune=0.0)
    assert narrow[0][0] == best


def test_greedy_collapses_repeats_and_drops_blanks():
    tokens = ["<blank>", " ", "a", "b"]
    path = [0, 2, 2, 0, 2, 3, 3, 1, 1, 3, 0, 0]
    log_probs = np.full((len(path), 4), -10.0)
    log_probs[np.arange(len(path)), path] = 0.0
    assert greedy_ids(log_probs) == [2, 2, 3, 1, 3]
    assert greedy_text(log_probs, tokens) == "aab b"
    assert greedy_ids(np.zeros((0, 4))) == []


def one_hot_path(text: str, tokens: list[str], pad: int = 3, sure: float = 0.97):
    """Frames spelling `text` with blanks between and around, each `sure` of its token."""
    index = {t: i for i, t in enumerate(tokens)}
    path = [0] * pad
    for c in text:
        path += [index[c], 0]
    path += [0] * pad
    probs = np.full((len(path), len(tokens)), (1 - sure) / (len(tokens) - 1))
    probs[np.arange(len(path)), path] = sure
    return np.log(probs)


TOKENS = ["<blank>", " ", *"abcdefghijklmnopqrstuvwxyz", "'"]


def test_command_scorer_picks_the_spoken_command_with_high_confidence():
    scorer = CommandScorer(["yes", "no", "stop", "turn on the light"], TOKENS)
    match = scorer.score(one_hot_path("stop", TOKENS))
    assert match.command == "stop"
    assert match.confidence > 0.9
    match = scorer.score(one_hot_path("turn on the light", TOKENS))
    assert match.command == "turn on the light"
    assert match.confidence > 0.9


def test_a_phrase_heard_without_a_space_is_still_the_command():
    # No blank penalty, so that the log-likelihood is a probability.
    scorer = CommandScorer(["go", "go back", "turn on the light"], TOKENS, blank_penalty=0)
    for heard, command in [("goback", "go back"), ("turnon thelight", "turn on the light")]:
        match = scorer.score(one_hot_path(heard, TOKENS, sure=0.999))
        assert match.command == command
        assert match.confidence > 0.9
        assert math.exp(match.log_likelihood) > 0.9  # the spelling counts as the command


def test_the_blank_penalty_lets_a_weakly_heard_letter_count():
    # "on" clearly, then a frame that is more likely blank than "e" (0.6 against 0.35):
    # as a model in noise hears the end of "one".
    index = {t: i for i, t in enumerate(TOKENS)}
    frames = np.exp(one_hot_path("on", TOKENS))
    weak = np.full(len(TOKENS), 0.05 / (len(TOKENS) - 2))
    weak[0], weak[index["e"]] = 0.6, 0.35
    log_probs = np.log(np.vstack([frames[:-3], weak, frames[-3:]]))
    raw = CommandScorer(["on", "one"], TOKENS, blank_penalty=0)
    penalized = CommandScorer(["on", "one"], TOKENS, blank_penalty=1.0)
    assert raw.score(log_probs).command == "on"
    assert penalized.score(log_probs).command == "one"
    assert list(penalized.command_log_likelihoods(log_probs)) == pytest.approx(
        list(raw.command_log_likelihoods(penalized.penalized(log_probs))))
    # A clearly spoken command is not changed by it.
    clear = one_hot_path("on", TOKENS)
    assert penalized.score(clear).command == raw.score(clear).command == "on"
    assert penalized.score(clear).confidence > 0.9


@pytest.mark.parametrize("penalty", [-0.5, math.inf, math.nan])
def test_a_blank_penalty_below_zero_or_not_finite_is_refused(penalty):
    with pytest.raises(ValueError, match="blank_penalty"):
        CommandScorer(["on"], TOKENS, blank_penalty=penalty)


def test_command_scorer_rejects_other_words_and_silence():
    scorer = CommandScorer(["yes", "no", "stop"], TOKENS)
    other = scorer.score(one_hot_path("computer", TOKENS))
    assert other.confidence < 0.1
    assert other.free_text == "computer"
    silence = scorer.score(one_hot_path("", TOKENS, pad=20))
    assert silence.confidence < 0.1


def test_command_scorer_never_returns_nan_on_too_short_input():
    scorer = CommandScorer(["turn on the light"], TOKENS)
    match = scorer.score(one_hot_path("", TOKENS, pad=1))
    assert match.confidence == 0.0


def test_free_decode_merges_space_variants():
    result = free_decode(one_hot_path("go left", TOKENS), TOKENS)
    assert result.text == "go left"
    assert 0.5 < result.confidence <= 1.0


def test_edit_distance_and_variants():
    assert edit_distance("stop", "ston") == 1
    assert edit_distance("", "abc") == 3 and edit_distance("kitten", "sitting") == 3
    assert is_variant("stopp", "stop", 0.4) and is_variant("ston", "stop", 0.4)
    assert not is_variant("back", "backward", 0.4) and not is_variant("go", "no", 0.4)


def test_spelling_variants_of_the_command_do_not_count_against_it():
    # Half the frames' mass on "stop", the rest spread over near spellings ("ston", "stob").
    index = {t: i for i, t in enumerate(TOKENS)}
    frames = []
    for c, alternatives in [("s", ""), ("t", ""), ("o", ""), ("p", "nb")]:
        row = np.full(len(TOKENS), 1e-4)
        row[index[c]] = 0.5 if alternatives else 0.99
        for a in alternatives:
            row[index[a]] = 0.49 / len(alternatives)
        blank = np.full(len(TOKENS), 1e-4)
        blank[0] = 0.99
        frames += [row / row.sum(), blank / blank.sum()]
    log_probs = np.log(np.array(frames))
    scorer = CommandScorer(["stop", "go", "yes"], TOKENS)
    assert scorer.score(log_probs).confidence > 0.9
    strict = CommandScorer(["stop", "go", "yes"], TOKENS, variant_distance=0.0)
    assert strict.score(log_probs).confidence < 0.6


# The fast decoders against plain, slow reference implementations of the same semantics.


def reference_ctc(log_probs: np.ndarray, labels) -> float:
    """Textbook log-domain CTC forward pass over [blank, l1, blank, ..., ln, blank]."""
    ext = [BLANK]
    for token in labels:
        ext += [token, BLANK]
    alpha = [-math.inf] * len(ext)
    alpha[0], alpha[1] = log_probs[0, ext[0]], log_probs[0, ext[1]]
    for t in range(1, len(log_probs)):
        prev = alpha
        alpha = []
        for s, token in enumerate(ext):
            terms = [prev[s]] + [prev[s - 1]] * (s >= 1)
            if s >= 2 and token != BLANK and token != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha.append(log_sum_exp(terms) + log_probs[t, token])
    return log_sum_exp([alpha[-1], alpha[-2]])


WORDS = ["off", "all", "a", "on", "turn on", "yes", "backward", "go back", "no no go"]


@pytest.mark.parametrize("frames", [1, 2, 3, 4, 6, 15, 60])
@pytest.mark.parametrize("sharp", [1.0, 8.0, 25.0])
def test_graph_equals_reference_forward_pass(frames, sharp, loops):
    # sharp=8 takes each sequence's probability past 1e-308 within the 60 frames and
    # sharp=25 within a few: both need rescaling along the way.
    index = {t: i for i, t in enumerate(TOKENS)}
    space = index[" "]
    sequences = [[index[c] for c in w] for w in WORDS]
    log_probs = random_log_probs(frames, len(TOKENS), frames + int(sharp), sharp)
    plain = CTCGraph(sequences).log_likelihoods(log_probs)
    spaced = CTCGraph(sequences, space=space).log_likelihoods(log_probs)
    for labels, got, got_spaced in zip(sequences, plain, spaced, strict=True):
        expected = reference_ctc(log_probs, labels)
        expected_spaced = log_sum_exp([reference_ctc(log_probs, list(v))
                                       for v in space_variants(labels, space)])
        for value, want in ((got, expected), (got_spaced, expected_spaced)):
            if want == -math.inf:  # too few frames for the sequence
                assert value == -math.inf
            else:
                assert value == pytest.approx(want, rel=1e-9, abs=1e-9)
    # Too short to fit: "off" needs 4 frames (a blank between the f's), "a" 1.
    assert (plain[0] == -math.inf) == (frames < 4)
    assert np.isfinite(plain[2])


def test_graph_handles_impossible_tokens(loops):
    # A token with probability 0 removes every path through it, and nothing else.
    log_probs = random_log_probs(8, 4, 5)
    log_probs[:, 3] = -np.inf
    got = CTCGraph([(1,), (3,), (1, 2)], space=2).log_likelihoods(log_probs)
    assert got[1] == -math.inf
    assert got[0] == pytest.approx(log_sum_exp([reference_ctc(log_probs, v)
                                                for v in [(1,), (2, 1), (1, 2), (2, 1, 2)]]))


def reference_beam_search(log_probs, beam_width, prune):
    """Prefix beam search made plainly: every extension of every prefix, every frame."""
    probs = np.exp(log_probs)
    beams = {(): (1.0, 0.0)}
    log_scale = 0.0
    for row in probs:
        top = np.argsort(-row, kind="stable")[: beam_width + 1]  # ties in token order
        candidates = [int(k) for k in top if k != BLANK and row[k] > prune]
        nxt = {}
        for prefix, (pb, pnb) in beams.items():
            entry = nxt.setdefault(prefix, [0.0, 0.0])
            entry[0] += (pb + pnb) * row[BLANK]
            for k in candidates:
                ext = nxt.setdefault(prefix + (k,), [0.0, 0.0])
                if prefix and k == prefix[-1]:
                    ext[1] += pb * row[k]
                    entry[1] += pnb * row[k]
                else:
                    ext[1] += (pb + pnb) * row[k]
        ranked = list(nxt.items())
        if len(ranked) > beam_width:  # (when not, the entries stay in the order made)
            ranked.sort(key=lambda kv: kv[1][0] + kv[1][1], reverse=True)
            ranked = ranked[:beam_width]
        norm = sum(pb + pnb for _, (pb, pnb) in ranked)
        log_scale += math.log(norm)
        beams = {prefix: (pb / norm, pnb / norm) for prefix, (pb, pnb) in ranked}
    result = [(prefix, log_scale + math.log(pb + pnb))
              for prefix, (pb, pnb) in beams.items() if pb + pnb > 0]
    return sorted(result, key=lambda r: r[1], reverse=True)


@pytest.mark.parametrize("seed", range(40))
def test_prefix_beam_search_equals_reference(seed, loops):
    rng = np.random.default_rng(seed)
    frames, tokens = int(rng.integers(1, 25)), int(rng.integers(2, 7))
    if seed % 3 == 0:
        # Blank-heavy frames with the same small probability for every other token:
        # many exact ties, broken by the order the entries were made in.
        probs = np.full((frames, tokens), 0.03 / (tokens - 1))
        probs[np.arange(frames), rng.integers(0, tokens, frames)] = 0.97
        log_probs = np.log(probs)
    else:
        log_probs = random_log_probs(frames, tokens, seed, sharp=float(rng.choice([0.5, 2, 6])))
        log_probs[rng.random(frames) < 0.4] *= 10  # blank-only frames, mostly
    if seed % 3 == 1:
        # A run of blank-only frames, which the search passes by moving its scale alone.
        start = int(rng.integers(0, frames))
        log_probs[start:start + 6] = np.log(0.001 / (tokens - 1))
        log_probs[start:start + 6, BLANK] = np.log(0.999)
    for beam_width in (1, 3, 8):
        for prune in (0.0, 1e-3, 0.05):
            got = prefix_beam_search(log_probs, beam_width, BLANK, prune)
            want = reference_beam_search(log_probs, beam_width, prune)
            assert [ids for ids, _ in got] == [ids for ids, _ in want]
            assert [lp for _, lp in got] == pytest.approx([lp for _, lp in want], rel=1e-12)


def test_edit_distance_equals_reference():
    def reference(a, b):
        prev = list(range(len(b) + 1))
        for i, ca in enumerate(a, 1):
            cur = [i]
            for j, cb in enumerate(b, 1):
                cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
            prev = cur
        return prev[-1]

    rng = np.random.default_rng(0)
    for _ in range(500):
        a, b = ("".join(rng.choice(list("ab "), int(rng.integers(0, 9)))) for _ in range(2))
        assert edit_distance(a, b) == reference(a, b)
        for max_distance in (0.0, 0.25, 0.4, 1.0):
            limit = max_distance * max(len(a), len(b), 1)
            assert is_variant(a, b, max_distance) == (reference(a, b) <= limit)


def test_the_c_loops_are_built_in_ci():
    # CI's machine has a C compiler: there the speed-up must not silently go missing.
    if os.environ.get("CI") != "true":
        pytest.skip("only CI's machine is known to have a C compiler")
    assert decoding._ctc is not None


@pytest.mark.parametrize("seed", range(30))
def test_c_and_python_beam_searches_give_identical_results(seed, monkeypatch):
    if decoding._ctc is None:
        pytest.skip(NOT_BUILT)
    rng = np.random.default_rng(seed)
    frames, tokens = int(rng.integers(0, 80)), int(rng.integers(2, 30))
    log_probs = random_log_probs(frames, tokens, seed, sharp=float(rng.choice([0.5, 3, 8])))
    log_probs[rng.random(frames) < 0.5, BLANK] += 6.0  # blank-heavy, as a CTC model is
    log_probs -= np.logaddexp.reduce(log_probs, axis=1, keepdims=True)
    for beam_width in (1, 4, 16, 40):
        for prune in (0.0, 0.01):
            fast = prefix_beam_search(log_probs, beam_width, BLANK, prune)
            monkeypatch.setattr(decoding, "_ctc", None)
            plain = prefix_beam_search(log_probs, beam_width, BLANK, prune)
            monkeypatch.undo()
            assert fast == plain  # the same arithmetic in the same order: bit for bit


def test_the_c_beam_search_refuses_inconsistent_arrays():
    if decoding._ctc is None:
        pytest.skip(NOT_BUILT)
    probs = np.array([[0.5, 0.4, 0.1], [1.0, 0.0, 0.0], [0.5, 0.2, 0.3]])
    found = decoding._ctc.beam_search(probs, 3, BLANK, 4, 0.01)
    assert {ids for ids, _ in found} == {(), (1,), (2,), (1, 2)}  # a beam of 4 keeps all
    for args in [(probs, 4, BLANK, 4, 0.01), (probs, 3, 3, 4, 0.01), (probs, 3, BLANK, 0, 0.01),
                 (probs, 0, BLANK, 4, 0.01)]:
        with pytest.raises(ValueError, match="inconsistent"):
            decoding._ctc.beam_search(*args)


@pytest.mark.parametrize("seed", range(30))
def test_c_and_python_graphs_agree(seed, monkeypatch):
    if decoding._ctc is None:
        pytest.skip(NOT_BUILT)
    rng = np.random.default_rng(seed)
    tokens = 8
    sequences = [list(rng.integers(1, tokens, int(rng.integers(1, 6))))
                 for _ in range(int(rng.integers(1, 12)))]
    space = 1 if seed % 2 else None
    for frames in (1, 3, 40, 400):  # 400 frames of sharp input rescale many times
        log_probs = random_log_probs(frames, tokens, seed, sharp=float(rng.choice([1, 6])))
        graph = CTCGraph(sequences, blank=BLANK, space=space)
        fast = graph.log_likelihoods(log_probs)
        monkeypatch.setattr(decoding, "_ctc", None)
        plain = graph.log_likelihoods(log_probs)
        monkeypatch.undo()
        # numpy sums some rescaling totals in another order: equal to a few ulps.
        assert np.array_equal(np.isfinite(fast), np.isfinite(plain))
        assert fast == pytest.approx(plain, rel=1e-13, abs=0)


def test_the_c_graph_refuses_inconsistent_arrays():
    if decoding._ctc is None:
        pytest.skip(NOT_BUILT)
    graph = CTCGraph([(1, 2)], blank=BLANK)
    log_probs = random_log_probs(3, 4, seed=0)
    args = [np.exp(log_probs), log_probs, 4, graph.labels, graph.used_labels, math.log(3),
            graph.start, graph.skip, np.empty(0), np.empty(0), 100.0, graph.starts,
            graph.final, np.empty(1)]
    decoding._ctc.forward(*args)  # consistent: runs
    for i, bad in [(0, log_probs[:, :-1]), (2, 2), (3, graph.labels + 9), (4, [7]),
                   (7, graph.skip[:-1]), (12, graph.final + 99), (11, graph.starts + 50)]:
        wrong = list(args)
        wrong[i] = bad if isinstance(bad, int) else np.ascontiguousarray(bad)
        with pytest.raises(ValueError):
            decoding._ctc.forward(*wrong)
