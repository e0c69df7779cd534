"""bench.stats on data with a known answer."""

import math

import numpy as np
import pytest

from bench import stats


def test_median_ci_covers_the_true_median_at_the_stated_rate():
    # Normal samples of 9 seeds: the 95% percentile-bootstrap CI of the median should cover
    # the true median (0) in roughly 90-99% of repeats (the percentile bootstrap is a little
    # liberal at n=9).
    rng = np.random.default_rng(1)
    covered = 0
    for i in range(300):
        iv = stats.median_ci(rng.normal(0.0, 1.0, 9), n_boot=500, seed=i)
        assert iv.lo <= iv.value <= iv.hi
        covered += iv.lo <= 0.0 <= iv.hi
    assert 0.85 <= covered / 300 <= 0.995


def test_median_ci_exact_small_cases():
    iv = stats.median_ci([3.0, 1.0, 2.0])
    assert iv.value == 2.0 and iv.n == 3
    assert 1.0 <= iv.lo <= 2.0 <= iv.hi <= 3.0
    same = stats.median_ci([5.0] * 4)
    assert (same.value, same.lo, same.hi) == (5.0, 5.0, 5.0)
    one = stats.median_ci([0.7])
    assert one.value == 0.7 and not one.has_ci and one.n == 1
    none = stats.median_ci([])
    assert math.isnan(none.value) and none.n == 0
    # NaN and inf observations are dropped, not propagated
    assert stats.median_ci([1.0, float("nan"), 3.0, float("inf")]).value == 2.0


def test_median_ci_is_reproducible():
    x = np.arange(10.0)
    assert stats.median_ci(x, seed=3) == stats.median_ci(x, seed=3)


def test_ratio_and_difference_of_medians():
    a, b = np.array([2.0, 2.0, 2.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0])
    r = stats.median_ratio_ci(a, b)
    assert (r.value, r.lo, r.hi) == (2.0, 2.0, 2.0)
    d = stats.median_diff_ci(a, b)
    assert (d.value, d.lo, d.hi) == (1.0, 1.0, 1.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(10, 1, 30), rng.normal(5, 1, 30)
    r = stats.median_ratio_ci(x, y)
    assert r.lo < 2.0 < r.hi and 1.5 < r.value < 2.5
    d = stats.median_diff_ci(x, y)
    assert d.lo < 5.0 < d.hi
    assert not stats.median_ratio_ci([1.0, 2.0], [0.0, 0.0]).has_ci


def test_power_law_recovers_an_exact_law():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    fit = stats.power_law_fit(x, 3.0 * x**-0.5)
    assert fit.holds and fit.reason == ""
    assert fit.b == pytest.approx(-0.5) and fit.a == pytest.approx(3.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.b_lo == pytest.approx(-0.5) and fit.b_hi == pytest.approx(-0.5)
    np.testing.assert_allclose(fit.predict([1e2]), [0.3])


def test_power_law_exponent_ci_matches_the_t_interval():
    # Known answer computed by hand: log-log OLS slope and its t-interval (df = n - 2).
    rng = np.random.default_rng(7)
    x = np.repeat([1e3, 1e4, 1e5, 1e6], 3)
    y = 2.0 * x**0.3 * np.exp(rng.normal(0, 0.05, len(x)))
    fit = stats.power_law_fit(x, y)
    lx, ly = np.log(x), np.log(y)
    slope, icpt = np.polyfit(lx, ly, 1)
    resid = ly - (icpt + slope * lx)
    se = math.sqrt((resid**2).sum() / (len(x) - 2) / ((lx - lx.mean()) ** 2).sum())
    t975_10 = 2.2281388519649385  # Student t, 97.5% quantile, 10 degrees of freedom
    assert fit.b == pytest.approx(slope)
    assert fit.b_lo == pytest.approx(slope - t975_10 * se)
    assert fit.b_hi == pytest.approx(slope + t975_10 * se)
    assert fit.b_lo < 0.3 < fit.b_hi and fit.holds


def test_power_law_coverage_of_the_true_exponent():
    rng = np.random.default_rng(11)
    x = np.repeat([1e3, 1e4, 1e5], 2)
    hits = 0
    for _ in range(400):
        fit = stats.power_law_fit(x, x**-0.2 * np.exp(rng.normal(0, 0.1, len(x))), min_r2=0)
        hits += fit.b_lo <= -0.2 <= fit.b_hi
    assert 0.92 <= hits / 400 <= 0.98


def test_power_law_says_when_it_does_not_hold():
    two = stats.power_law_fit([1e3, 1e3, 1e4, 1e4], [1.0, 1.1, 2.0, 2.1])
    assert not two.holds and "only 2 sizes" in two.reason
    assert "no power law" in two.describe()
    flat = stats.power_law_fit([1e3, 1e4, 1e5, 1e3, 1e4, 1e5], [1.0, 2.0, 1.0, 2.0, 1.0, 2.0])
    assert not flat.holds and "R²" in flat.reason
    neg = stats.power_law_fit([1.0, 2.0, 3.0], [1.0, -1.0, 2.0])
    assert not neg.holds and "positive" in neg.reason
    empty = stats.power_law_fit([], [])
    assert not empty.holds and empty.n_points == 0
    one = stats.power_law_fit([5.0, 5.0], [1.0, 2.0])
    assert not one.holds and "only 1 size" in one.reason


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 200])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_against_closed_forms_and_tables(p, df):
    q = stats.t_quantile(p, df)
    assert stats.t_cdf(q, df) == pytest.approx(p, abs=1e-12)
    assert stats.t_quantile(1 - p, df) == pytest.approx(-q)
    if df == 1:  # Cauchy
        assert q == pytest.approx(math.tan(math.pi * (p - 0.5)))
    if df == 2:
        assert q == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)))
    table = {(0.975, 3): 3.182446305, (0.975, 5): 2.570581836, (0.975, 30): 2.042272456,
             (0.995, 10): 3.169272673, (0.9, 10): 1.372183641}
    if (p, df) in table:
        assert q == pytest.approx(table[(p, df)], rel=1e-8)
