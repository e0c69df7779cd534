"""Statistics for the report: Student-t intervals over seeds and power-law fits.

Seeds are a study axis with 2-5 values per cell, so a per-point summary is the mean over
seeds with the Student-t interval (n - 1 degrees of freedom): honest at that n, where a
percentile bootstrap of three seeds is just their range. "Is X better than Y" is the Welch
t-interval of mean(X) - mean(Y) (unequal variances, Welch-Satterthwaite degrees of freedom);
a ratio of positive quantities (throughput, memory) is the same interval on log values, i.e. a
ratio of geometric means. A claim is made only where its interval excludes the alternative.

Fewer than `MIN_INTERVAL_N` values (3) get no interval: the t quantile at one degree of
freedom is 12.7, so two seeds give an interval wider than any accuracy range (the tuning
page once printed 0.724 [-0.641, 2.090]); the report shows those values instead
(`Interval.values`).

Bounded quantities (accuracy and exact match in [0, 1], BLEU and chrF in [0, 100], a
difference of accuracies in [-1, 1]) pass their range as `bounds`, and the t-interval is
intersected with it. Coverage is unchanged: the true mean lies inside the range, so it lies
in the clipped interval exactly when it lies in the unclipped one. The alternatives were
worse here: a percentile bootstrap of 3-6 seeds is about their range and covers far less
than 95%, and a Wilson interval on the pooled test counts measures only the test set's
sampling noise, not the seed-to-seed variation of training, which dominates (runs of one
cell differ by more than a test set of 1000 samples can explain). Near a bound the clipped
interval is one-sided in effect: "1.000 [0.991, 1.000]" says the data cannot rule out a
mean of 1.

Power laws y = a * x**b are fitted by least squares on log(x), log(y) with every run as a
point. The runs of one seed across sizes are not independent (one seed's data order and
initialisation run through every size), so the exponent's interval is a cluster bootstrap:
seeds (clusters) are resampled with replacement, the slope refitted on all points of the
drawn seeds, and the percentile interval taken. With fewer than `MIN_CLUSTERS` seeds a
bootstrap has too few distinct resamples; the fit then falls back to the slope's t-interval
(points treated as independent) and `describe` says so.

When the fit "holds" (`FIT_MIN_SIZES`, `FIT_MIN_R2`): at least 3 distinct sizes (two points
always lie on a line) and R^2 >= 0.8 in log-log space (the line explains most of the spread);
every y must also be positive and finite. Otherwise `PowerLawFit.holds` is False and
`reason` says why, in words the report prints in place of the exponent.

scipy.stats is imported inside the functions that need a t quantile (it costs about a second
to import); no framework.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_INTERVAL_N = 3
FIT_MIN_SIZES = 3
FIT_MIN_R2 = 0.8
MIN_CLUSTERS = 3
N_BOOT = 2000
CONF = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (lo/hi are NaN when undefined).

    `values` holds the data of a mean too small for an interval, for the report to show
    instead (empty otherwise)."""

    value: float
    lo: float
    hi: float
    n: int
    values: tuple = ()

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero (a difference is "clear")."""
        return self.has_ci and (self.lo > 0 or self.hi < 0)


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (scipy.stats.t)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def _within(lo: float, hi: float, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is None:
        return lo, hi
    return max(lo, bounds[0]), min(hi, bounds[1])


def mean_t_ci(values, conf: float = CONF, bounds: tuple[float, float] | None = None,
              min_n: int = MIN_INTERVAL_N) -> Interval:
    """Mean of `values` with the Student-t interval (n - 1 df), intersected with `bounds`.

    NaN and inf values are dropped first; with no value left the mean is NaN too. With
    fewer than `min_n` values the bounds are NaN and `values` carries the data.
    """
    a = _clean(values)
    n = len(a)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(a.mean())
    if n < max(min_n, 2):
        return Interval(m, math.nan, math.nan, n, tuple(float(v) for v in a))
    half = t_quantile(0.5 + conf / 2.0, n - 1) * float(a.std(ddof=1)) / math.sqrt(n)
    return Interval(m, *_within(m - half, m + half, bounds), n)


def diff_t_ci(a, b, conf: float = CONF,
              bounds: tuple[float, float] | None = None) -> Interval:
    """mean(a) - mean(b) with the Welch t-interval (unequal variances), within `bounds`.

    `n` of the result is the smaller sample's size. With fewer than 2 values in either
    sample the interval is undefined (NaN). Two samples without any spread give a
    zero-width interval at the difference.
    """
    x, y = _clean(a), _clean(b)
    nx, ny = len(x), len(y)
    if nx == 0 or ny == 0:
        return Interval(math.nan, math.nan, math.nan, min(nx, ny))
    d = float(x.mean() - y.mean())
    if nx < 2 or ny < 2:
        return Interval(d, math.nan, math.nan, min(nx, ny))
    vx, vy = float(x.var(ddof=1)) / nx, float(y.var(ddof=1)) / ny
    se2 = vx + vy
    if se2 <= 0:
        return Interval(d, d, d, min(nx, ny))
    df = se2**2 / (vx**2 / (nx - 1) + vy**2 / (ny - 1))
    half = t_quantile(0.5 + conf / 2.0, df) * math.sqrt(se2)
    return Interval(d, *_within(d - half, d + half, bounds), min(nx, ny))


def contrast_t_ci(samples, weights, conf: float = CONF,
                  bounds: tuple[float, float] | None = None) -> Interval:
    """sum_i w_i mean(sample_i) with a Welch-Satterthwaite t-interval (independent samples,
    unequal variances); `diff_t_ci` is the contrast (1, -1). E.g. (1, -1, -1, 1) over
    (tuned L, untuned L, tuned S, untuned S) asks whether tuning gains more at size L than
    at S. `n` is the smallest sample's size; NaN bounds where a sample has fewer than 2."""
    xs = [_clean(x) for x in samples]
    ns = [len(x) for x in xs]
    if len(xs) != len(weights):
        raise ValueError("one weight per sample")
    if min(ns, default=0) == 0:
        return Interval(math.nan, math.nan, math.nan, min(ns, default=0))
    est = float(sum(w * x.mean() for w, x in zip(weights, xs, strict=True)))
    if min(ns) < 2:
        return Interval(est, math.nan, math.nan, min(ns))
    parts = [w * w * float(x.var(ddof=1)) / len(x) for w, x in zip(weights, xs, strict=True)]
    se2 = sum(parts)
    if se2 <= 0:
        return Interval(est, est, est, min(ns))
    df = se2**2 / sum(p * p / (n - 1) for p, n in zip(parts, ns, strict=True) if p > 0)
    half = t_quantile(0.5 + conf / 2.0, df) * math.sqrt(se2)
    return Interval(est, *_within(est - half, est + half, bounds), min(ns))


def ratio_t_ci(a, b, conf: float = CONF) -> Interval:
    """Geometric mean(a) / geometric mean(b): the Welch interval of the log difference.

    For positive quantities such as throughput and memory, where "1.5x faster" is the
    claim. Non-positive values make the ratio undefined (NaN).
    """
    x, y = _clean(a), _clean(b)
    if (x <= 0).any() or (y <= 0).any():
        return Interval(math.nan, math.nan, math.nan, min(len(x), len(y)))
    d = diff_t_ci(np.log(x), np.log(y), conf)
    return Interval(math.exp(d.value) if math.isfinite(d.value) else math.nan,
                    math.exp(d.lo) if math.isfinite(d.lo) else math.nan,
                    math.exp(d.hi) if math.isfinite(d.hi) else math.nan, d.n)


@dataclass(frozen=True)
class PowerLawFit:
    """y = a * x**b fitted in log-log space; `holds` says whether to believe it."""

    a: float
    b: float  # the exponent
    b_lo: float
    b_hi: float
    r2: float
    n_points: int
    n_sizes: int
    holds: bool
    reason: str  # why the fit does not hold ('' when it does)
    n_clusters: int = 0  # distinct seeds among the points (0: none given)
    ci_method: str = ""  # "cluster bootstrap", "t-interval" or "" (no interval)

    def predict(self, x) -> np.ndarray:
        return self.a * np.asarray(x, dtype=float) ** self.b

    def describe(self, symbol: str = "N") -> str:
        """'∝ N^0.52 [0.48, 0.56], R² 0.97' or 'no power law: <reason>'.

        A t-interval fallback is named, since it treats the points as independent.
        """
        if not self.holds:
            return f"no power law: {self.reason}"
        ci = f" [{self.b_lo:.2f}, {self.b_hi:.2f}]" if math.isfinite(self.b_lo) else ""
        how = ""
        if ci and self.ci_method == "t-interval":
            why = (f"{self.n_clusters} seed(s), fewer than {MIN_CLUSTERS} to resample"
                   if self.n_clusters else "no seeds given")
            how = f" (slope t-interval, points treated as independent: {why})"
        return f"∝ {symbol}^{self.b:.2f}{ci}, R² {self.r2:.2f}{how}"


def _slope(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float, float]:
    """(slope, intercept, sse, sxx) of the least-squares line through (lx, ly)."""
    mx, my = lx.mean(), ly.mean()
    sxx = float(((lx - mx) ** 2).sum())
    b = float(((lx - mx) * (ly - my)).sum() / sxx)
    intercept = float(my - b * mx)
    sse = float(((ly - (intercept + b * lx)) ** 2).sum())
    return b, intercept, sse, sxx


def cluster_bootstrap_slopes(lx, ly, clusters, n_boot: int = N_BOOT,
                             seed: int = 0) -> np.ndarray:
    """Least-squares slopes of `n_boot` resamples of whole clusters (with replacement).

    Each resample draws as many clusters as there are, keeps every point of each drawn
    cluster (a cluster drawn twice counts twice), and refits the slope from per-cluster
    sums; a resample with a single distinct x has no slope (NaN).
    """
    lx, ly = np.asarray(lx, float), np.asarray(ly, float)
    labels, idx = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    k = len(labels)
    sums = np.zeros((k, 5))  # n, sx, sy, sxx, sxy per cluster
    for col, v in enumerate((np.ones_like(lx), lx, ly, lx * lx, lx * ly)):
        sums[:, col] = np.bincount(idx, weights=v, minlength=k)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, k, size=(n_boot, k))
    counts = np.zeros((n_boot, k))
    np.add.at(counts, (np.repeat(np.arange(n_boot), k), draws.ravel()), 1.0)
    n, sx, sy, sxx, sxy = (counts @ sums).T
    den = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n * sxy - sx * sy) / den
    # a resample whose points share one x has den ~ 0 up to rounding: no slope
    return np.where(den > 1e-9 * np.maximum(n * sxx, 1e-300), slope, np.nan)


def power_law_fit(
    x,
    y,
    clusters=None,
    conf: float = CONF,
    min_sizes: int = FIT_MIN_SIZES,
    min_r2: float = FIT_MIN_R2,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> PowerLawFit:
    """Least-squares line through (log x, log y); the exponent's interval at `conf`.

    `clusters` labels each point's seed (the runs of seed k at every size are one cluster);
    with at least `MIN_CLUSTERS` of them the interval is the percentile cluster bootstrap
    (`cluster_bootstrap_slopes`), otherwise the slope's t-interval (df = n - 2).
    Pairs with a non-finite x or y are dropped; a non-positive value makes the fit fail
    (a power law of a quantity that can be zero or negative is not one).
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    c = (np.asarray(clusters).astype(str).ravel() if clusters is not None
         else np.full(len(x), "", dtype=object))
    if len(c) != len(x):
        raise ValueError("clusters must label every point")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, c = x[keep], y[keep], c[keep]
    n = len(x)
    n_sizes = len(np.unique(x))
    n_clusters = len(np.unique(c)) if clusters is not None else 0
    nan = math.nan

    def fail(reason: str) -> PowerLawFit:
        return PowerLawFit(nan, nan, nan, nan, nan, n, n_sizes, False, reason, n_clusters)

    if n == 0:
        return fail("no data")
    if (x <= 0).any() or (y <= 0).any():
        return fail("values must be positive for a log-log fit")
    if n_sizes < 2:
        return fail(f"only {n_sizes} size, need at least {min_sizes}")
    lx, ly = np.log(x), np.log(y)
    b, intercept, sse, sxx = _slope(lx, ly)
    sst = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    b_lo = b_hi = nan
    method = ""
    if n_clusters >= MIN_CLUSTERS:
        slopes = cluster_bootstrap_slopes(lx, ly, c, n_boot, seed)
        slopes = slopes[np.isfinite(slopes)]
        if len(slopes):
            alpha = (1.0 - conf) / 2.0
            b_lo, b_hi = (float(v) for v in np.quantile(slopes, [alpha, 1.0 - alpha]))
            method = "cluster bootstrap"
    elif n > 2:
        half = t_quantile(0.5 + conf / 2.0, n - 2) * math.sqrt(sse / (n - 2) / sxx)
        b_lo, b_hi = b - half, b + half
        method = "t-interval"
    reason = ""
    if n_sizes < min_sizes:
        reason = f"only {n_sizes} sizes, need at least {min_sizes}"
    elif r2 < min_r2:
        reason = f"R² {r2:.3f} < {min_r2:g}: not a straight line in log-log"
    return PowerLawFit(float(math.exp(intercept)), b, b_lo, b_hi, r2, n, n_sizes,
                       not reason, reason, n_clusters, method)
