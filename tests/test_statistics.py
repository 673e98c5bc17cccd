"""Bootstrap intervals, verdicts and the Expectation record shared by the studies."""

from __future__ import annotations

import numpy as np
import pytest

from deepscope.studies.base import Expectation, ranks, spearman, spearman_ci, verdict


def test_ranks_average_ties_along_the_last_axis():
    np.testing.assert_array_equal(ranks(np.array([3.0, 1.0, 3.0, 2.0])), [2.5, 0, 2.5, 1])
    np.testing.assert_array_equal(ranks(np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]])),
                                  [[1, 1, 1], [2, 0, 1]])


def test_spearman_is_pearson_of_average_ranks():
    x = np.array([1.0, 2.0, 2.0, 3.0, 5.0])
    y = np.array([2.0, 1.0, 4.0, 4.0, 9.0])
    assert spearman(x, y) == pytest.approx(np.corrcoef(ranks(x), ranks(y))[0, 1])
    assert spearman(x, -x**3) == pytest.approx(-1.0)


def test_spearman_ci_brackets_a_strong_monotone_relation_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = -np.exp(x) + 0.1 * rng.normal(size=60)
    rho, lo, hi = spearman_ci(x, y, seed=3, n_boot=500)
    assert -1 <= lo <= rho <= hi < -0.8
    assert spearman_ci(x, y, seed=3, n_boot=500) == (rho, lo, hi)
    assert verdict(lo, hi, expected_sign=-1) is True
    assert verdict(lo, hi, expected_sign=+1) is False


def test_an_interval_that_straddles_zero_is_inconclusive():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=25), rng.normal(size=25)  # independent: ρ near 0
    rho, lo, hi = spearman_ci(x, y, seed=0, n_boot=1000)
    assert lo < 0 < hi and lo < rho < hi
    assert verdict(lo, hi, expected_sign=-1) is None
    assert verdict(lo, hi, expected_sign=+1) is None
    assert verdict(-0.5, -0.2, -1, threshold=-0.1) is True
    assert verdict(-0.5, 0.0, -1, threshold=-0.1) is None
    assert verdict(float("nan"), 0.3, 1) is None
    assert np.isnan(spearman_ci([1, 2], [2, 1])[0])


def test_expectation_verdict_follows_agrees_and_rejects_contradictions():
    assert Expectation("c", "r", "k", True).verdict == "agrees"
    assert Expectation("c", "r", "k", False).verdict == "disagrees"
    assert Expectation("c", "r", "k", None).verdict == "not testable"
    assert Expectation("c", "r", "k", None, verdict="inconclusive").verdict == "inconclusive"
    with pytest.raises(ValueError):
        Expectation("c", "r", "k", True, verdict="disagrees")
    with pytest.raises(ValueError):
        Expectation("c", "r", "k", None, verdict="agrees")


def _synthetic_min_ratio(negative, loss):
    """A stored-result stand-in for min-ratio: every run converged, one τ per column."""
    from deepscope.studies.min_ratio import Config

    cfg = Config()
    T = len(cfg.rel_tols)
    negative = np.repeat(np.asarray(negative)[:, None], T, 1)
    return {"converged": np.ones(len(loss), bool), "flat_share": np.zeros(len(loss)),
            "positive": 10 - negative, "negative": negative, "loss": np.asarray(loss),
            "rel_tols": np.asarray(cfg.rel_tols)}, cfg


def test_min_ratio_verdict_is_inconclusive_without_a_relation_and_agrees_with_one():
    from deepscope.studies.min_ratio import literature

    rng = np.random.default_rng(0)
    result, cfg = _synthetic_min_ratio(rng.integers(0, 5, 30), rng.uniform(0, 1, 30))
    ex = literature(result, cfg)
    assert ex.verdict == "inconclusive" and ex.agrees is None and "interval" in ex.measured
    index = rng.integers(0, 5, 30)  # more negative eigenvalues at higher loss: as predicted
    result, cfg = _synthetic_min_ratio(index, index + 0.1 * rng.uniform(0, 1, 30))
    assert literature(result, cfg).verdict == "agrees"


def test_bootstrap_ci_of_a_difference_of_medians():
    from deepscope.studies.base import bootstrap_ci

    rng = np.random.default_rng(2)
    a, b = rng.normal(0.0, 1.0, 40), rng.normal(3.0, 1.0, 40)

    def diff(x, y):
        return np.median(x) - np.median(y)

    value, lo, hi = bootstrap_ci(a, b, statistic=diff, seed=1, n_boot=400)
    assert lo <= value <= hi < 0 and value == pytest.approx(diff(a, b))
    assert bootstrap_ci(a, b, statistic=diff, seed=1, n_boot=400) == (value, lo, hi)
    same = bootstrap_ci(a, rng.normal(0.0, 1.0, 40), statistic=diff, seed=1, n_boot=400)
    assert same[1] < 0 < same[2]  # no real difference: the interval straddles 0
    assert verdict(same[1], same[2], expected_sign=-1) is None
    nan = bootstrap_ci([np.nan, np.nan], statistic=np.median)
    assert all(np.isnan(nan))
    assert bootstrap_ci([1.0, np.nan, 3.0], statistic=np.median, n_boot=50)[0] == 2.0


def test_epoch_reaching_crosses_above_or_below():
    from deepscope.studies.base import epoch_reaching

    epoch = np.array([0, 10, 20, 30])
    assert epoch_reaching(np.array([0.1, 0.5, 0.99, 1.0]), epoch, 0.99, above=True) == 20
    assert epoch_reaching(np.array([1.0, 0.5, 0.2, 0.1]), epoch, 0.2, above=False) == 30
    assert np.isnan(epoch_reaching(np.array([1.0, 0.9, 0.8, 0.7]), epoch, 0.5, above=False))


def test_median_choice_picks_the_lowest_median_and_counts_nan_as_worst():
    from deepscope.studies.base import median_choice

    # rate 0: one lucky seed gives it the lowest mean, but rate 1 has the lower median
    final = np.array([[[1e-6, 1.0, 1.0], [0.5, 0.4, 0.6]],
                      [[0.1, np.nan, np.nan], [0.2, 0.3, 0.2]]])  # (D=2, L=2, S=3)
    assert median_choice(final).tolist() == [1, 1]
    assert median_choice(np.array([[0.9, 0.8], [0.5, 0.95]]), lower_is_better=False) == 0


def test_compare_best_of_overlapping_seeds_is_inconclusive():
    from deepscope.studies.base import compare_best

    rng = np.random.default_rng(0)
    shallow, deep2, deep4 = (rng.lognormal(np.log(1e-3), 1.0, 5) for _ in range(3))
    values = np.stack([shallow, deep2, deep4])
    c = compare_best(values, [1, 2], 0, log=True)
    assert c.best == (1 if np.median(deep2) < np.median(deep4) else 2) and c.reference == 0
    assert c.value == pytest.approx(np.log10(np.median(values[c.best]) / np.median(shallow)))
    assert c.lo < 0 < c.hi and verdict(c.lo, c.hi, expected_sign=-1) is None
    far = compare_best(np.stack([shallow, deep2 / 1e3]), [1], 0, log=True)
    assert far.hi < 0 and verdict(far.lo, far.hi, expected_sign=-1) is True
