"""CTC decoding checked against brute-force enumeration of every alignment on tiny inputs.

Log-prob matrices are built by hand or drawn at random; no model is involved.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

from speechrnn.decoding import (
    CommandScorer,
    CTCGraph,
    ctc_log_likelihood,
    free_decode,
    greedy_ids,
    greedy_text,
    prefix_beam_search,
)

BLANK = 0


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
def test_ctc_likelihood_equals_brute_force(seed, labels):
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


@pytest.mark.parametrize("seed", range(4))
def test_optional_edge_space_sums_the_four_variants(seed):
    space = 3
    log_probs = random_log_probs(6, 4, seed)
    dist = brute_force(log_probs)
    for labels in [(1,), (1, 2), (2, 2), (1, 3, 2)]:
        variants = {labels, (space, *labels), (*labels, space), (space, *labels, space)}
        expected = sum(dist.get(v, 0.0) for v in variants)
        got = CTCGraph([labels], blank=BLANK, space=space).log_likelihoods(log_probs)[0]
        assert got == pytest.approx(math.log(expected), abs=1e-9)


def test_graph_scores_many_sequences_of_different_lengths_at_once():
    log_probs = random_log_probs(7, 4, 3)
    sequences = [(1,), (2, 3, 1), (3, 3), (1, 2, 1, 2)]
    together = CTCGraph(sequences).log_likelihoods(log_probs)
    alone = [ctc_log_likelihood(log_probs, s) for s in sequences]
    np.testing.assert_allclose(together, alone, atol=1e-9)


def test_likelihood_is_stable_on_long_confident_input():
    # 2,000 frames of near-certain blanks around one 'a': far beyond float underflow if
    # probabilities were multiplied without rescaling.
    frames = np.full((2000, 3), -30.0)
    frames[:, BLANK] = 0.0
    frames[1000] = [-30.0, 0.0, -30.0]
    assert ctc_log_likelihood(frames, (1,)) == pytest.approx(0.0, abs=1e-6)
    assert ctc_log_likelihood(frames, (2,)) < -25


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_matches_brute_force(seed):
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
    from speechrnn.decoding import edit_distance, is_variant

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
