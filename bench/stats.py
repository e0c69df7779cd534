"""Statistics for the report: bootstrap confidence intervals and power-law fits.

Seeds are a study axis, so every figure shows a median over seeds with a percentile
bootstrap interval (resampling seeds with replacement). Power laws y = a * x**b are fitted by
least squares on log(x), log(y) with every seed as a point; the exponent's interval is the
t-interval of the slope (exact for a straight line with normal noise in log space, and
well-defined with the 2-5 sizes a laptop study has, where a case bootstrap often resamples a
single size and has no slope at all).

When the fit "holds" (`FIT_MIN_SIZES`, `FIT_MIN_R2`): at least 3 distinct sizes (two points
always lie on a line) and R^2 >= 0.8 in log-log space (the line explains most of the spread);
every y must also be positive and finite. Otherwise `PowerLawFit.holds` is False and
`reason` says why, in words the report prints in place of the exponent.

numpy and the standard library only (the t quantile is computed here: importing scipy.stats
would cost the report rule seconds); no framework.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

FIT_MIN_SIZES = 3
FIT_MIN_R2 = 0.8
N_BOOT = 2000
CONF = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval (lo/hi are NaN when undefined)."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


def _clean(values) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    return a[np.isfinite(a)]


def bootstrap_ci(
    samples: Sequence[Sequence[float]],
    statistic: Callable[..., np.ndarray],
    n_boot: int = N_BOOT,
    conf: float = CONF,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of `statistic(*samples)`, each sample resampled independently.

    `statistic` takes one 2-D array per sample (resamples x observations) and returns one value
    per resample (row); it is also called on the original samples as 1-row arrays. NaN and inf
    observations are dropped first. With fewer than 2 observations in any sample the
    interval is undefined (NaN); with no observations the value is NaN too.
    """
    arrays = [_clean(s) for s in samples]
    n = min((len(a) for a in arrays), default=0)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    value = float(statistic(*[a[None, :] for a in arrays])[0])
    if n < 2:
        return Interval(value, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    boots = [a[rng.integers(0, len(a), size=(n_boot, len(a)))] for a in arrays]
    stats = np.asarray(statistic(*boots), dtype=float)
    stats = stats[np.isfinite(stats)]
    if not len(stats):
        return Interval(value, math.nan, math.nan, n)
    alpha = (1.0 - conf) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(value, float(lo), float(hi), n)


def _median(a: np.ndarray) -> np.ndarray:
    return np.median(a, axis=1)


def median_ci(values, n_boot: int = N_BOOT, conf: float = CONF, seed: int = 0) -> Interval:
    """Median of `values` with the percentile bootstrap CI of the median."""
    return bootstrap_ci([values], _median, n_boot, conf, seed)


def median_diff_ci(a, b, n_boot: int = N_BOOT, conf: float = CONF, seed: int = 0) -> Interval:
    """median(a) - median(b), both resampled independently (e.g. accuracy torch - tf)."""
    return bootstrap_ci([a, b], lambda x, y: _median(x) - _median(y), n_boot, conf, seed)


def median_ratio_ci(a, b, n_boot: int = N_BOOT, conf: float = CONF, seed: int = 0) -> Interval:
    """median(a) / median(b), both resampled independently (e.g. throughput tf / torch)."""

    def ratio(x, y):
        den = _median(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, _median(x) / np.where(den > 0, den, 1.0), np.nan)

    return bootstrap_ci([a, b], ratio, n_boot, conf, seed)


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

    def predict(self, x) -> np.ndarray:
        return self.a * np.asarray(x, dtype=float) ** self.b

    def describe(self, symbol: str = "N") -> str:
        """'∝ N^0.52 [0.48, 0.56], R² 0.97' or 'no power law: <reason>'."""
        if not self.holds:
            return f"no power law: {self.reason}"
        ci = f" [{self.b_lo:.2f}, {self.b_hi:.2f}]" if math.isfinite(self.b_lo) else ""
        return f"∝ {symbol}^{self.b:.2f}{ci}, R² {self.r2:.2f}"


def power_law_fit(
    x,
    y,
    conf: float = CONF,
    min_sizes: int = FIT_MIN_SIZES,
    min_r2: float = FIT_MIN_R2,
) -> PowerLawFit:
    """Least-squares line through (log x, log y); the slope's t-interval at `conf`.

    Pairs with a non-finite x or y are dropped; a non-positive value makes the fit fail
    (a power law of a quantity that can be zero or negative is not one).
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = len(x)
    n_sizes = len(np.unique(x))
    nan = math.nan
    if n == 0:
        return PowerLawFit(nan, nan, nan, nan, nan, 0, 0, False, "no data")
    if (x <= 0).any() or (y <= 0).any():
        return PowerLawFit(nan, nan, nan, nan, nan, n, n_sizes, False,
                           "values must be positive for a log-log fit")
    if n_sizes < 2:
        return PowerLawFit(nan, nan, nan, nan, nan, n, n_sizes, False,
                           f"only {n_sizes} size, need at least {min_sizes}")
    lx, ly = np.log(x), np.log(y)
    mx, my = lx.mean(), ly.mean()
    sxx = float(((lx - mx) ** 2).sum())
    b = float(((lx - mx) * (ly - my)).sum() / sxx)
    intercept = my - b * mx
    resid = ly - (intercept + b * lx)
    sst = float(((ly - my) ** 2).sum())
    sse = float((resid**2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    b_lo = b_hi = nan
    if n > 2:
        se = math.sqrt(sse / (n - 2) / sxx)
        half = t_quantile(0.5 + conf / 2.0, n - 2) * se
        b_lo, b_hi = b - half, b + half
    reason = ""
    if n_sizes < min_sizes:
        reason = f"only {n_sizes} sizes, need at least {min_sizes}"
    elif r2 < min_r2:
        reason = f"R² {r2:.3f} < {min_r2:g}: not a straight line in log-log"
    return PowerLawFit(float(math.exp(intercept)), b, b_lo, b_hi, r2, n, n_sizes,
                       not reason, reason)


# ---------------------------------------------------------------------------- Student t


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse of `t_cdf` by bisection (to ~1e-12); p in (0, 1)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must lie in (0, 1)")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)
