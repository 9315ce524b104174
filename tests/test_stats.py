"""The benchmarks' intervals and paired test, against the textbook's values and scipy's."""

from __future__ import annotations

import pytest

from benchmarks.__main__ import better_in
from benchmarks.bench_accuracy import Scored, paired
from benchmarks.scoring import Verdict
from benchmarks.stats import mcnemar_p, percent_interval, poisson_interval, wilson_interval
from benchmarks.testsets import Clip


def test_poisson_interval_is_garwoods_exact_interval():
    # Tabulated 95 % limits for 0, 1 and 5 events.
    assert poisson_interval(0) == pytest.approx((0.0, 3.689), abs=1e-3)
    assert poisson_interval(1) == pytest.approx((0.0253, 5.572), abs=1e-3)
    assert poisson_interval(5) == pytest.approx((1.623, 11.668), abs=1e-3)
    # A rate: 39 events in half an hour is 78 an hour, the interval scaled alike.
    low, high = poisson_interval(39)
    assert poisson_interval(39, 0.5) == pytest.approx((2 * low, 2 * high))
    chi2 = pytest.importorskip("scipy.stats").chi2
    for k in (3, 39, 400):
        assert poisson_interval(k) == pytest.approx(
            (chi2.ppf(0.025, 2 * k) / 2, chi2.ppf(0.975, 2 * k + 2) / 2), rel=1e-6)


def test_wilson_interval_stays_in_range_and_narrows_with_more_clips():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    low, high = wilson_interval(91, 100)
    wide = high - low
    low, high = wilson_interval(910, 1000)
    assert low < 0.91 < high and high - low < wide / 3
    assert percent_interval(1364, 1492) == "89.9-92.7 %"
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_clips():
    assert mcnemar_p(5, 5) == 1.0
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(6, 0) == pytest.approx(2 / 2**6)
    assert mcnemar_p(0, 6) == mcnemar_p(6, 0)
    binomtest = pytest.importorskip("scipy.stats").binomtest
    assert mcnemar_p(30, 10) == pytest.approx(binomtest(10, 40, 0.5).pvalue)


def _scored(expected: str, ours: Verdict, peer: Verdict) -> Scored:
    clip = Clip("c", expected, expected, "command", "c.wav")
    return Scored("set", "clean", 0, clip, ours, peer)


def test_paired_counts_the_clips_only_one_system_gets_right():
    items = [
        _scored("go", Verdict("go", 0.9), Verdict("go", 0.9)),     # both right
        _scored("go", Verdict("go", 0.9), Verdict("no", 0.9)),     # speechrnn alone
        _scored("go", Verdict("go", 0.1), Verdict("go", 0.95)),    # peer alone at thresholds
        _scored("up", Verdict("off", 0.9), Verdict("on", 0.9)),    # neither
    ]
    assert paired(items, peer_threshold=0.5) == (1, 1)
    # Best command with no rejection: the low-confidence "go" counts for speechrnn too.
    assert paired(items, peer_threshold=0.5, top1=True) == (1, 0)


def test_better_in_counts_only_wins_beyond_chance_as_sure():
    by = {"clean": {"ours": {"right": 0.9}, "peer": {"right": 0.5},
                    "paired": {"right": (40, 0)}},
          "noisy": {"ours": {"right": 0.52}, "peer": {"right": 0.5},
                    "paired": {"right": (3, 2)}},
          "8k": {"ours": {"right": 0.4}, "peer": {"right": 0.5},
                 "paired": {"right": (0, 25)}}}
    assert better_in(by, ["clean", "noisy", "8k"], "right") == \
        "speechrnn better in 2 of 3 (1 beyond chance)"
