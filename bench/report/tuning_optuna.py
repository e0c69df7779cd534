"""Optuna's own figures of one study (history, importance, parallel coordinates, slices, Pareto
front) with computed captions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import tuning_studies
from .html import Panel

# fANOVA fits a random forest to (parameters -> objective): with fewer completed trials the
# forest splits on single trials, and whichever parameter separates the one best trial from
# the rest gets all the importance.
MIN_TRIALS_IMPORTANCE = 10


TOP_FRACTION = 0.25  # the parallel-coordinate caption describes the best quarter of trials


def figure_data(fig) -> pd.DataFrame:
    """A tidy table of what an optuna figure plots; each trace gets a `meta` naming its rows.

    Scatter and bar traces: a row per point (x, y, and z in 3-D); parallel coordinates: a
    row per line, a column per axis (the values plotted, categories as their codes).
    Traces without a point (Optuna's "Infeasible Trial" of a study without constraints) are
    dropped: a legend entry for nothing.
    """
    def size(tr) -> int:
        if tr.type == "parcoords":
            return len(tr.dimensions[0].values) if tr.dimensions else 0
        return max((len(getattr(tr, a)) for a in ("x", "y", "z")
                    if a in tr and getattr(tr, a) is not None), default=0)

    fig.data = [tr for tr in fig.data if size(tr)]
    rows = []
    for i, tr in enumerate(fig.data):
        meta = f"{i}: {tr.name or tr.type}"
        tr.meta = meta
        if tr.type == "parcoords":
            dims = tr.dimensions or ()
            for j in range(len(dims[0].values) if dims else 0):
                rows.append({"trace": meta, **{d.label: d.values[j] for d in dims}})
            continue
        axes = {a: list(getattr(tr, a)) for a in ("x", "y", "z")
                if a in tr and getattr(tr, a) is not None}
        for j in range(max((len(v) for v in axes.values()), default=0)):
            rows.append({"trace": meta, **{a: v[j] if j < len(v) else None
                                           for a, v in axes.items()}})
    return pd.DataFrame(rows)


def _optuna_panel(key: str, title: str, caption: str, fig, height: int = 420) -> Panel:
    fig.update_layout(title=None)  # the panel's own title says it
    return Panel(key, title, caption, fig, figure_data(fig), height=height)


def history_panel(st: tuning_studies.Study, key: str) -> Panel:
    import optuna.visualization as vis

    title = f"Study {st.name}: optimization history"
    done = tuning_studies.completed(st)
    if not done:
        return Panel(key, title, message=f"Study {st.name} has no completed trial yet "
                     f"({tuning_studies.state_counts(st)}).")
    maximize = st.directions[0] == "maximize"
    vals = [t.values[0] for t in done]
    best_i = int(np.argmax(vals) if maximize else np.argmin(vals))
    fig = vis.plot_optimization_history(st.optuna, **tuning_studies.target(st))
    caption = (f"{tuning_studies.state_counts(st)}. {st.metrics[0]} ({st.directions[0]}): best "
               f"{vals[best_i]:.4g} at trial {done[best_i].number}, from {vals[0]:.4g} after "
               f"the first completed trial. Optuna draws completed trials only; pruned ones "
               f"are in the counts.")
    if st.multi:
        caption += " The other objectives are in the Pareto front below."
    return _optuna_panel(key, title, caption, fig, 400)


def _evaluator():
    """Optuna's default evaluator, fANOVA, seeded so the page is reproducible (its random
    forest comes from scikit-learn, a dependency of the embedded datasets)."""
    from optuna.importance import FanovaImportanceEvaluator

    return FanovaImportanceEvaluator(seed=0)


def _varying(st: tuning_studies.Study) -> list[str]:
    done = tuning_studies.completed(st)
    names = {k for t in done for k in t.params}
    return sorted(k for k in names if len({repr(t.params.get(k)) for t in done}) > 1)


def importance_panel(st: tuning_studies.Study, key: str) -> Panel:
    import optuna
    import optuna.visualization as vis

    title = f"Study {st.name}: parameter importances"
    n, varying = len(tuning_studies.completed(st)), _varying(st)
    if n < MIN_TRIALS_IMPORTANCE or not varying:
        return Panel(key, title, message=(
            f"Parameter importances need at least {MIN_TRIALS_IMPORTANCE} completed trials "
            f"with a varying parameter: fANOVA fits a random forest to the trials, and with "
            f"fewer it splits on single trials, so whichever parameter sets the best one apart "
            f"takes all the importance. Study {st.name} has {n} completed trial(s) and "
            f"{len(varying)} varying parameter(s)."))
    texts = []
    for i, m in enumerate(st.metrics):
        target = tuning_studies.target(st, i).get("target")
        imp = optuna.importance.get_param_importances(st.optuna, evaluator=_evaluator(),
                                                      target=target)
        if imp:
            top, share = next(iter(imp.items()))
            texts.append(f"for {m}, {top} carries {share:.0%}")
    fig = vis.plot_param_importances(st.optuna, evaluator=_evaluator(),
                                     **({} if st.multi else tuning_studies.target(st)))
    caption = (f"fANOVA importances (Optuna's default evaluator, seed 0: the share of the "
               f"objective's variance a parameter explains, from a random forest over {n} "
               f"completed trials): " + "; ".join(texts) + ". A few dozen trials make these "
               "rough; a parameter the sampler hardly varied cannot show importance.")
    return _optuna_panel(key, title, caption, fig, max(280, 120 + 40 * len(varying)))


def _top(st: tuning_studies.Study) -> list:
    """The best TOP_FRACTION of completed trials (at least one) by the first objective."""
    done = tuning_studies.completed(st)
    rev = st.directions[0] == "maximize"
    ranked = sorted(done, key=lambda t: t.values[0], reverse=rev)
    return ranked[:max(1, math.ceil(TOP_FRACTION * len(ranked)))]


def _describe_values(vals: list) -> str:
    nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(nums) == len(vals):
        lo, hi = min(nums), max(nums)
        return f"{lo:.3g}" if lo == hi else f"{lo:.3g} to {hi:.3g}"
    counts = pd.Series([str(v) for v in vals]).value_counts()
    return ", ".join(f"{k} {c}/{len(vals)}" for k, c in counts.items())


def parallel_panel(st: tuning_studies.Study, key: str) -> Panel | None:
    import optuna.visualization as vis

    title = f"Study {st.name}: parallel coordinates"
    varying = _varying(st)
    if len(tuning_studies.completed(st)) < 2 or not varying:
        return None
    top = _top(st)
    ranges = "; ".join(f"{p} {_describe_values([t.params[p] for t in top if p in t.params])}"
                       for p in varying)
    fig = vis.plot_parallel_coordinate(st.optuna, **tuning_studies.target(st))
    caption = (f"One line per completed trial, coloured by {st.metrics[0]}. The best "
               f"{len(top)} of {len(tuning_studies.completed(st))} ({TOP_FRACTION:.0%}) used: "
               f"{ranges}.")
    return _optuna_panel(key, title, caption, fig, 420)


def slice_panel(st: tuning_studies.Study, key: str) -> Panel | None:
    import optuna.visualization as vis
    from scipy.stats import spearmanr

    title = f"Study {st.name}: {st.metrics[0]} against each parameter"
    done, varying = tuning_studies.completed(st), _varying(st)
    if len(done) < 2 or not varying:
        return None
    texts = []
    for p in varying:
        pts = [(t.params[p], t.values[0]) for t in done if p in t.params]
        xs = [x for x, _ in pts]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs) \
                and len(set(xs)) > 2:
            rho = spearmanr(xs, [y for _, y in pts]).statistic
            texts.append(f"{p} rank correlation {rho:+.2f}")
        else:
            means = pd.Series([y for _, y in pts]).groupby([str(x) for x in xs]).mean()
            texts.append(f"{p} mean " + ", ".join(f"{k} {v:.3g}" for k, v in means.items()))
    fig = vis.plot_slice(st.optuna, params=varying, **tuning_studies.target(st))
    caption = (f"{st.metrics[0]} of each completed trial against each varying parameter "
               f"(colour: trial number): " + "; ".join(texts) + ".")
    return _optuna_panel(key, title, caption, fig, 380)


def pareto_panel(st: tuning_studies.Study, key: str) -> Panel | None:
    import optuna.visualization as vis

    if not st.multi:
        return None
    title = f"Study {st.name}: Pareto front"
    done = tuning_studies.completed(st)
    if len(done) < 2:
        return Panel(key, title, message=f"A Pareto front needs at least 2 completed trials; "
                     f"study {st.name} has {len(done)}.")
    front = sorted(st.optuna.best_trials, key=lambda t: t.values[0])
    shown = st.metrics[:3]
    fig = vis.plot_pareto_front(
        st.optuna, target_names=shown,
        targets=None if len(st.metrics) <= 3 else (lambda t: tuple(t.values[:3])))
    ends = " to ".join(" / ".join(f"{m} {t.values[i]:.4g}" for i, m in enumerate(st.metrics))
                       for t in (front[0], front[-1]))
    caption = (f"{len(front)} of {len(done)} completed trials are Pareto-optimal over "
               f"{', '.join(f'{m} ({d})' for m, d in zip(st.metrics, st.directions, strict=True))}"
               f"; the front runs from {ends}. The final runs use its most accurate point "
               f"(trial {max(front, key=lambda t: (t.values[0], -t.number)).number}).")
    if len(st.metrics) > 3:
        caption += " Only the first three objectives are drawn; the front uses all of them."
    return _optuna_panel(key, title, caption, fig, 460)


PANELS = (history_panel, importance_panel, parallel_panel, slice_panel, pareto_panel)
