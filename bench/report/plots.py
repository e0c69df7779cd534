"""Figure helpers every page shares: colours per framework, point and fit traces, the log
ratio axis.

Every panel builder of a page module returns a `Panel`: a figure whose data traces carry
`meta` = the value of the `trace` column of the panel's CSV rows (so the numbers behind a
figure are exactly its points), or, where the data cannot support the figure, a message
saying why. Every string that comes from the config or the records is passed through `esc`
before plotly sees it (plotly renders a subset of HTML in labels and decodes entities, so
escaped text shows as typed).
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..study import stats
from . import tables
from .html import esc

html_unescape = html.unescape


COLORS = {"torch": "#d9480f", "tf": "#1c7ed6"}


PALETTE = ["#1c7ed6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c",
           "#5c940d"]


def color(fw: str, i: int = 0) -> str:
    return COLORS.get(fw, PALETTE[i % len(PALETTE)])


POOLED_COLOR = "#212529"


def style(fw: str, i: int) -> dict:
    """Line and marker of a framework's line; the pooled line black and thicker."""
    if fw == tables.POOLED:
        return {"line": {"color": POOLED_COLOR, "width": 3},
                "marker": {"color": POOLED_COLOR, "size": 8, "symbol": "diamond"}}
    # equal values in both frameworks (same initial weights, same batches) would hide one
    # marker behind the other: the first framework's are open and larger
    return {"line": {"color": color(fw, i), "dash": "solid" if i == 0 else "dash"},
            "marker": {"color": color(fw, i), "size": 12 if i == 0 else 7,
                       "symbol": "circle-open" if i == 0 else "circle",
                       "line": {"width": 2 if i == 0 else 0}}}


def _point_hover(pts: pd.DataFrame, accuracy: bool) -> list[str]:
    out = []
    for r in pts.itertuples():
        text = f"{r.n_seeds} seeds ({esc(r.seeds)})"
        if r.n_failed:
            text += (f"<br>{r.n_failed} of {r.n_runs} runs failed "
                     + ("(counted at chance accuracy)" if accuracy else "(excluded)"))
        out.append(text)
    return out


def points_trace(fig, pts: pd.DataFrame, meta: str, name: str, style: dict, col: int,
                  legend: bool, accuracy: bool, data: list, metric: str) -> None:
    """One line of means with t-interval error bars; its points appended to `data`."""
    has_ci = pts["ci_lo"].notna()
    fw = pts["framework"].iloc[0]
    fig.add_trace(go.Scatter(
        x=pts["params"].tolist(), y=pts["mean"].tolist(), mode="lines+markers",
        name=esc(name), legendgroup=esc(fw), showlegend=legend, meta=meta, **style,
        error_y={"type": "data", "symmetric": False,
                 "array": (pts["ci_hi"] - pts["mean"]).where(has_ci, 0).tolist(),
                 "arrayminus": (pts["mean"] - pts["ci_lo"]).where(has_ci, 0).tolist()},
        customdata=np.stack([pts["size"].map(esc), _point_hover(pts, accuracy)],
                            axis=-1).tolist(),
        hovertemplate="size %{customdata[0]} · %{x:,.0f} params<br>mean %{y:.4g}, "
                      "%{customdata[1]}<extra>" + esc(name) + "</extra>",
    ), row=1, col=col)
    for r in pts.itertuples():
        data.append({"trace": meta, "metric": metric, "framework": r.framework,
                     "size": r.size, "x": r.params, "y": r.mean, "ci_lo": r.ci_lo,
                     "ci_hi": r.ci_hi, "n_seeds": r.n_seeds, "n_runs": r.n_runs,
                     "n_failed": r.n_failed, "seeds": r.seeds})


def fit_trace(fig, fit: stats.PowerLawFit, xs_from: pd.Series, meta: str, name: str,
               line: dict, col: int, fit_error: bool, data: list, metric: str,
               fw: str) -> None:
    xs = np.geomspace(xs_from.min(), xs_from.max(), 20)
    ys = fit.predict(xs)
    ys = 1.0 - ys if fit_error else ys
    fig.add_trace(go.Scatter(
        x=xs.tolist(), y=ys.tolist(), mode="lines", meta=meta, name=esc(name),
        legendgroup=esc(fw), showlegend=False, line=line,
        hovertemplate=esc(fit.describe()) + "<extra></extra>",
    ), row=1, col=col)
    for x, y in zip(xs, ys, strict=True):
        data.append({"trace": meta, "metric": metric, "framework": fw, "x": x, "y": y,
                     "exponent": fit.b, "exponent_lo": fit.b_lo, "exponent_hi": fit.b_hi,
                     "r2": fit.r2, "ci_method": fit.ci_method,
                     "fitted": f"1 - {metric}" if fit_error else metric})


_RATIOS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 7, 10, 20]


RATIO_TICKS = {"tickvals": _RATIOS, "ticktext": [f"{r:g}x" for r in _RATIOS]}


def fmt_flops(x: float) -> str:
    """8.6e8, 1.2e10: two significant digits, a plain exponent."""
    if not math.isfinite(x):
        return "n/a"
    m, _, e = f"{x:.1e}".partition("e")
    return f"{float(m):g}e{int(e)}"
