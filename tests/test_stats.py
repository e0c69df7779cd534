"""bench.study.stats on data with a known answer."""

import math

import numpy as np
import pytest
import scipy.stats

from bench.study import stats


def test_mean_t_ci_is_the_student_t_interval():
    x = np.array([0.71, 0.74, 0.69])
    iv = stats.mean_t_ci(x)
    half = scipy.stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
    assert iv.value == pytest.approx(x.mean()) and iv.n == 3
    assert iv.lo == pytest.approx(x.mean() - half) and iv.hi == pytest.approx(x.mean() + half)
    assert half == pytest.approx(4.302652729911275 * x.std(ddof=1) / math.sqrt(3))
    ninety = stats.mean_t_ci(x, conf=0.9)
    assert iv.lo < ninety.lo < ninety.hi < iv.hi


def test_mean_t_ci_small_and_degenerate_cases():
    one = stats.mean_t_ci([0.7])
    assert one.value == 0.7 and not one.has_ci and one.n == 1
    none = stats.mean_t_ci([])
    assert math.isnan(none.value) and none.n == 0
    same = stats.mean_t_ci([5.0] * 4)
    assert (same.value, same.lo, same.hi) == (5.0, 5.0, 5.0)
    # NaN and inf values are dropped, not propagated
    assert stats.mean_t_ci([1.0, float("nan"), 3.0, float("inf")]).value == 2.0


def test_mean_t_ci_with_two_values_gives_the_values_not_an_interval():
    # the tuning page once printed 0.724 [-0.641, 2.090] from two seeds
    two = stats.mean_t_ci([0.70, 0.748], bounds=(0.0, 1.0))
    assert two.value == pytest.approx(0.724) and not two.has_ci
    assert two.values == (0.70, 0.748)
    assert stats.mean_t_ci([0.7, 0.8, 0.9]).values == ()
    assert stats.mean_t_ci([0.70, 0.748], min_n=2).has_ci


def test_bounded_interval_stays_in_the_range_and_keeps_its_coverage():
    near_one = stats.mean_t_ci([1.0, 0.99, 0.97, 1.0], bounds=(0.0, 1.0))
    free = stats.mean_t_ci([1.0, 0.99, 0.97, 1.0])
    assert free.hi > 1.0 and near_one.hi == 1.0 and near_one.lo == pytest.approx(free.lo)
    near_zero = stats.mean_t_ci([0.0, 0.02, 0.0], bounds=(0.0, 1.0))
    assert near_zero.lo == 0.0 and 0.0 < near_zero.hi < 1.0
    d = stats.diff_t_ci([0.99, 0.2, 0.98], [0.01, 0.9, 0.02], bounds=(-1.0, 1.0))
    assert -1.0 <= d.lo < d.hi <= 1.0 and d.hi == 1.0
    # Bernoulli-like accuracies of 3 seeds near the top: clipping never loses the true mean
    rng = np.random.default_rng(2)
    hits_free = hits_clipped = 0
    for _ in range(2000):
        x = np.clip(rng.normal(0.97, 0.03, 3), 0, 1)
        mu = 0.97  # the clip at 1 moves the true mean by under 0.001
        a, c = stats.mean_t_ci(x), stats.mean_t_ci(x, bounds=(0.0, 1.0))
        assert 0.0 <= c.lo <= c.hi <= 1.0
        hits_free += a.lo <= mu <= a.hi
        hits_clipped += c.lo <= mu <= c.hi
    assert hits_free == hits_clipped


def test_mean_t_ci_covers_the_true_mean_at_the_stated_rate():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(2000):
        iv = stats.mean_t_ci(rng.normal(0.0, 1.0, 3))
        hits += iv.lo <= 0.0 <= iv.hi
    assert 0.93 <= hits / 2000 <= 0.97  # exact at n = 3 for normal data


def test_diff_t_ci_is_welchs_interval():
    a = np.array([0.80, 0.82, 0.85, 0.79])
    b = np.array([0.70, 0.72, 0.71])
    iv = stats.diff_t_ci(a, b)
    ref = scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert iv.value == pytest.approx(a.mean() - b.mean())
    assert (iv.lo, iv.hi) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert iv.excludes_zero and iv.n == 3
    # overlapping samples: the interval straddles zero
    near = stats.diff_t_ci([0.80, 0.82, 0.78], [0.81, 0.79, 0.80])
    assert near.lo < 0 < near.hi and not near.excludes_zero
    assert not stats.diff_t_ci([0.8], [0.7, 0.75]).has_ci
    flat = stats.diff_t_ci([2.0, 2.0], [1.0, 1.0])
    assert (flat.value, flat.lo, flat.hi) == (1.0, 1.0, 1.0)


def test_contrast_t_ci_generalises_welch():
    a, b = [0.80, 0.82, 0.85, 0.79], [0.70, 0.72, 0.71]
    one, two = stats.contrast_t_ci([a, b], [1, -1]), stats.diff_t_ci(a, b)
    assert (one.value, one.lo, one.hi) == pytest.approx((two.value, two.lo, two.hi))
    # a difference of differences: the gain at one size minus the gain at another
    c, d = [0.90, 0.91, 0.92], [0.80, 0.82, 0.81]
    dd = stats.contrast_t_ci([c, d, a, b], [1, -1, -1, 1])
    assert dd.value == pytest.approx((0.91 - 0.81) - (np.mean(a) - np.mean(b)))
    assert dd.lo < dd.value < dd.hi and dd.hi - dd.lo > two.hi - two.lo  # more noise
    assert not stats.contrast_t_ci([[0.9], b], [1, -1]).has_ci
    with pytest.raises(ValueError):
        stats.contrast_t_ci([a, b], [1])


def test_ratio_t_ci_is_the_welch_interval_of_log_values():
    a, b = np.array([150.0, 160.0, 155.0]), np.array([100.0, 98.0, 103.0])
    iv = stats.ratio_t_ci(a, b)
    d = stats.diff_t_ci(np.log(a), np.log(b))
    assert iv.value == pytest.approx(math.exp(d.value))
    assert (iv.lo, iv.hi) == (pytest.approx(math.exp(d.lo)), pytest.approx(math.exp(d.hi)))
    assert iv.lo > 1
    assert math.isnan(stats.ratio_t_ci([1.0, 2.0], [0.0, 1.0]).value)


def test_t_quantile_matches_tables():
    table = {(0.975, 3): 3.182446305, (0.975, 5): 2.570581836, (0.975, 30): 2.042272456,
             (0.995, 10): 3.169272673, (0.9, 10): 1.372183641}
    for (p, df), q in table.items():
        assert stats.t_quantile(p, df) == pytest.approx(q, rel=1e-8)
        assert stats.t_quantile(1 - p, df) == pytest.approx(-q, rel=1e-8)


# ---------------------------------------------------------------------------- power laws


def test_power_law_recovers_an_exact_law():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    fit = stats.power_law_fit(x, 3.0 * x**-0.5)
    assert fit.holds and fit.reason == ""
    assert fit.b == pytest.approx(-0.5) and fit.a == pytest.approx(3.0)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.b_lo == pytest.approx(-0.5) and fit.b_hi == pytest.approx(-0.5)
    np.testing.assert_allclose(fit.predict([1e2]), [0.3])


def test_without_seeds_the_exponent_ci_is_the_slope_t_interval():
    # Known answer computed by hand: log-log OLS slope and its t-interval (df = n - 2).
    rng = np.random.default_rng(7)
    x = np.repeat([1e3, 1e4, 1e5, 1e6], 3)
    y = 2.0 * x**0.3 * np.exp(rng.normal(0, 0.05, len(x)))
    for clusters in (None, np.tile([0, 1], 6)):  # no seeds, or fewer than MIN_CLUSTERS
        fit = stats.power_law_fit(x, y, clusters=clusters)
        lx, ly = np.log(x), np.log(y)
        slope, icpt = np.polyfit(lx, ly, 1)
        resid = ly - (icpt + slope * lx)
        se = math.sqrt((resid**2).sum() / (len(x) - 2) / ((lx - lx.mean()) ** 2).sum())
        t975_10 = 2.2281388519649385  # Student t, 97.5% quantile, 10 degrees of freedom
        assert fit.b == pytest.approx(slope) and fit.ci_method == "t-interval"
        assert fit.b_lo == pytest.approx(slope - t975_10 * se)
        assert fit.b_hi == pytest.approx(slope + t975_10 * se)
        assert fit.b_lo < 0.3 < fit.b_hi and fit.holds
        assert "slope t-interval, points treated as independent" in fit.describe()
    assert "2 seed(s), fewer than 3 to resample" in fit.describe()


def test_power_law_t_interval_coverage_of_the_true_exponent():
    rng = np.random.default_rng(11)
    x = np.repeat([1e3, 1e4, 1e5], 2)
    hits = 0
    for _ in range(400):
        fit = stats.power_law_fit(x, x**-0.2 * np.exp(rng.normal(0, 0.1, len(x))), min_r2=0)
        hits += fit.b_lo <= -0.2 <= fit.b_hi
    assert 0.92 <= hits / 400 <= 0.98


def _seeded_law(rng, n_seeds: int, slope_sd: float, noise: float = 0.01):
    """Points of y = x^-0.3 at 5 sizes per seed; each seed's own exponent varies by
    slope_sd (a seed that is off at one size is off at every size)."""
    sizes = np.array([1e3, 3e3, 1e4, 3e4, 1e5])
    x, y, c = [], [], []
    for s in range(n_seeds):
        b = -0.3 + rng.normal(0, slope_sd)
        x += list(sizes)
        y += list(sizes**b * np.exp(rng.normal(0, noise, len(sizes))))
        c += [s] * len(sizes)
    return np.array(x), np.array(y), np.array(c)


def test_cluster_bootstrap_resamples_whole_seeds():
    x = np.tile([1e3, 1e4, 1e5], 4)
    c = np.repeat([0, 1, 2, 3], 3)
    slopes = np.array([-0.1, -0.2, -0.3, -0.6])
    y = x ** np.repeat(slopes, 3)  # every seed an exact line with its own slope
    boot = stats.cluster_bootstrap_slopes(np.log(x), np.log(y), c, n_boot=500, seed=0)
    # every seed has the same sizes, so a resample's slope is the mean of the 4 slopes it
    # drew: a sum of four of them (multiples of 0.1) over 4, never a mix of points
    assert np.isfinite(boot).all()
    assert boot.min() >= slopes.min() - 1e-12 and boot.max() <= slopes.max() + 1e-12
    tenths = boot * 4 * 10
    assert np.allclose(tenths, np.round(tenths), atol=1e-9)
    assert len(np.unique(np.round(boot, 9))) > 5
    fit = stats.power_law_fit(x, y, clusters=c, min_r2=0)
    assert fit.ci_method == "cluster bootstrap" and fit.n_clusters == 4
    assert slopes.min() <= fit.b_lo < fit.b < fit.b_hi <= slopes.max()
    assert "t-interval" not in fit.describe()


def test_an_outlying_seed_widens_the_cluster_interval_beyond_the_naive_one():
    # Seed 3 is off at every size (its own exponent; lines pivot at the middle size, so the
    # seeds differ in slope, not in level). Its 5 points move together: the naive interval
    # counts them as 5 independent pieces of evidence, the cluster bootstrap as one seed.
    x = np.tile([1e3, 3e3, 1e4, 3e4, 1e5], 4)
    c = np.repeat([0, 1, 2, 3], 5)
    b = np.repeat([-0.30, -0.31, -0.29, -0.60], 5)
    rng = np.random.default_rng(3)
    y = (x / 1e4) ** b * np.exp(rng.normal(0, 0.01, len(x)))
    naive = stats.power_law_fit(x, y, min_r2=0)  # 20 "independent" points
    clustered = stats.power_law_fit(x, y, clusters=c, min_r2=0, seed=5)
    assert clustered.b == pytest.approx(naive.b)
    assert clustered.b_hi - clustered.b_lo > 1.5 * (naive.b_hi - naive.b_lo)
    assert clustered.b_lo < -0.5  # the resamples that draw the outlier twice
    # deterministic with a fixed seed, different with another
    again = stats.power_law_fit(x, y, clusters=c, min_r2=0, seed=5)
    assert (again.b_lo, again.b_hi) == (clustered.b_lo, clustered.b_hi)
    other = stats.power_law_fit(x, y, clusters=c, min_r2=0, seed=6)
    assert (other.b_lo, other.b_hi) != (clustered.b_lo, clustered.b_hi)


def test_cluster_bootstrap_coverage_with_ten_seeds():
    # The percentile cluster bootstrap is liberal with few clusters; at 10 seeds whose
    # exponents vary it should still cover the mean exponent most of the time.
    rng = np.random.default_rng(2)
    hits = 0
    for i in range(200):
        x, y, c = _seeded_law(rng, 10, slope_sd=0.03)
        fit = stats.power_law_fit(x, y, clusters=c, min_r2=0, n_boot=400, seed=i)
        hits += fit.b_lo <= -0.3 <= fit.b_hi
    assert 0.82 <= hits / 200 <= 0.99


def test_clusters_must_label_every_point():
    with pytest.raises(ValueError, match="label every point"):
        stats.power_law_fit([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], clusters=[0, 1])


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
