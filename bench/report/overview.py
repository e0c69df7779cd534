"""The overview page (index.html): headline findings computed from the data, the published
comparison, convergence, run status, failures and compute spent.
"""

from __future__ import annotations

import math

import pandas as pd

from . import frameworks, page_kit, plots, sweep, tables, tuning_judge
from .html import Page, Panel, links, table


def findings(df: pd.DataFrame, studies: list = ()) -> list[str]:
    """The headline findings computed from the data: scale, frameworks, optimizers, and
    what tuning bought where a tuning study ran.

    A finding names a winner only where the 95% interval of the difference against the
    runner-up excludes zero (ratios: excludes 1); otherwise it says there is no clear winner
    and gives the difference with its interval.
    """
    tuned = tuning_judge.headline(df, list(studies))
    return ([_finding_scale(df), _finding_frameworks(df), _finding_sweep(df)]
            + ([tuned] if tuned else []))


def _size_label(rows: pd.DataFrame, size: str) -> str:
    return f"{size} ({tables.fmt_count(rows.loc[rows['size'] == size, 'params'].median())} params)"


def scale_claims(df: pd.DataFrame) -> list[str]:
    """Per family: largest vs smallest size of the scale recipe on test accuracy, pooled
    over frameworks where both sizes have disjoint seeds, else per framework."""
    out = []
    for family, dataset in tables.groups(df):
        _, rows = tables.scale_selection(df, family, dataset)
        vals = tables.metric_values(rows, "test_acc")
        rows = rows[vals.notna()]
        # sizes with a successful run; their failed runs count at chance
        sizes = sorted(set(rows.loc[rows["status"] == "ok", "size"]), key=tables.size_rank)
        if len(sizes) < 2:
            continue
        small, large = sizes[0], sizes[-1]
        a, b = rows[rows["size"] == large], rows[rows["size"] == small]
        if tables.seeds_disjoint(a) and tables.seeds_disjoint(b):
            parts = [(tables.POOLED, a, b)]
        else:
            parts = [(fw, a[a["framework"] == fw], b[b["framework"] == fw])
                     for fw in sorted(set(rows["framework"]), key=tables.framework_rank)]
        for fw, x, y in parts:
            if x.empty or y.empty:
                continue
            iv = tables.diff_ci(tables.metric_values(x, "test_acc"),
                                tables.metric_values(y, "test_acc"), "test_acc")
            out.append(f"{family} on {dataset} ({tables.framework_name(fw)}, "
                       f"{len(x) + len(y)} runs): "
                       + tables.claim(_size_label(rows, large), _size_label(rows, small), iv))
    return out


def _finding_scale(df: pd.DataFrame) -> str:
    claims = scale_claims(df)
    if not claims:
        return ("Scale: no family has successful runs at two or more sizes, so there is no "
                "scale trend to report.")
    lr = ("the learning rate chosen per size on validation"
          if (tables.study_rows(df)["lr_role"] == tables.LR_CHOSEN).any()
          else "the configured learning rate")
    gen = sorted({f for f, _ in tables.groups(df)} & set(tables.GENERATION_FAMILIES))
    em = (f"; for {', '.join(gen)} test accuracy is the greedy exact match, at chance 0"
          if gen else "")
    return (f"Scale (largest vs smallest size, test accuracy at {lr}, difference of means "
            f"with 95% Welch interval; pooled over frameworks where their seeds are disjoint; "
            f"failed runs at chance{em}): " + "; ".join(claims) + ".")


def _finding_frameworks(df: pd.DataFrame) -> str:
    cells = [frameworks.framework_cells(df, ds) for ds in sorted(set(df["dataset"]) - {""})]
    cells = [c for c in cells if len(c)]
    if not cells:
        return ("Frameworks: no configuration has successful runs in both PyTorch and "
                "TensorFlow, so the frameworks cannot be compared.")
    # one table per dataset, each indexed from 0: a fresh index, or .loc finds several rows
    c = pd.concat(cells, ignore_index=True).dropna(subset=["throughput_ratio"])
    if c.empty:
        return "Frameworks: throughput was not recorded in matched runs."
    # the per-call cost is part of what "as run" compares: a reader must not miss it here
    calls = frameworks.calls_sentence(tables.ok_rows(df))
    return "Frameworks: " + " ".join(filter(None, [*frameworks.throughput_sentences(c), calls]))


def _finding_sweep(df: pd.DataFrame) -> str:
    clauses = []
    for family, dataset in tables.groups(df):
        size, rows = tables.sweep_selection(df, family, dataset)
        if rows.empty:
            continue
        pooled = sweep.sweep_winner(rows, tables.POOLED)
        if pooled is not None:
            wins = [(tables.POOLED, pooled)]
        else:
            wins = [(fw, sweep.sweep_winner(rows, fw))
                    for fw in sorted(set(rows["framework"]), key=tables.framework_rank)]
        for fw, w in wins:
            if w is not None:
                clauses.append(f"{family} (size {size}, {tables.framework_name(fw)}): "
                               + sweep.winner_text(w))
    if not clauses:
        return ("Optimizers and regularisers: no family has two or more successful "
                "optimizer x regulariser cells to compare.")
    return ("Optimizers and regularisers (best vs runner-up cell by mean test accuracy, 95% "
            "Welch interval of the difference): " + "; ".join(clauses) + ".")


def figure_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The runs behind the scale and sweep figures, each once."""
    parts = []
    for family, dataset in tables.groups(df):
        parts.append(tables.scale_selection(df, family, dataset)[1])
        parts.append(tables.sweep_selection(df, family, dataset)[1])
    parts = [p for p in parts if len(p)]
    if not parts:
        return df.iloc[:0]
    return pd.concat(parts).drop_duplicates("run_id")


def overview_page(df: pd.DataFrame, source: str, studies: list,
                  settings: list | None = None) -> Page:
    page = Page("index.html", "Benchmark overview",
                f"Scale vs performance of CNN, RNN and Transformer models in PyTorch and "
                f"TensorFlow, from {source} ({len(df)} runs).")
    keys = page_kit.Keys()
    if settings:
        page.h2("Measurement setting")
        if len(settings) == 1:
            page.p(f"All {settings[0][1]} runs: {settings[0][0]}.")
        else:
            page.add(table([[text, n, "these pages" if link is None else "own report"]
                            for text, n, link in settings],
                           ["device, precision, threads", "runs", "shown"]))
            page.p("Runs on different hardware or settings are never compared on one page: "
                   "each setting has its own report.")
            page.add(links([(link, f"{text} ({n} runs)") for text, n, link in settings
                            if link is not None]))
    page.h2("Headline findings")
    page.add(_ol(findings(df, studies)))
    page.h2("Against published results")
    page.add(page_kit.safe("published", "Against published results",
                           lambda: _published_panel(df, keys("published"))))
    page.h2("Did the runs converge?")
    page.add(page_kit.safe("converged", "Runs that ended still improving",
                           lambda: _converged_panel(df, keys("converged"))))
    page.h2("Pages")
    page.add(links([("scale.html", "Scale vs performance: accuracy, throughput, model memory "
                     "against parameters; learning-rate choice; accuracy against compute"),
                    ("frameworks.html", "Frameworks: PyTorch / TensorFlow ratios"),
                    ("sweep.html", "Optimizers and regularisers: accuracy and time-to-target"),
                    ("curves.html", "Learning curves per run"),
                    ("generation.html", "Generation: translation quality (exact match, BLEU, "
                     "chrF), decoding speed, beam search against greedy, examples"),
                    ("tuning.html", f"Tuning studies ({len(studies)})")]))
    page.h2("What ran")
    page.add(table([list(r) for r in grid_summary(df)], ["axis", "values"]))
    page.h2("Outcomes")
    page.add(page_kit.safe("status", "Runs per status", lambda: _status_panel(df, keys("status"))))
    bad = df[df["status"] != "ok"]
    if len(bad):
        page.add(page_kit.safe("failures", "Runs that did not finish ok",
                               lambda: _failures_panel(bad, keys("failures"))))
    page.h2("Hardware and software")
    page.add(table([list(r) for r in environment(df)], ["what", "recorded"]))
    page.h2("Compute spent")
    page.add(page_kit.safe("compute", "Compute spent", lambda: _compute_panel(df, keys("compute"))))
    return page


def _published_panel(df: pd.DataFrame, key: str) -> Panel:
    from .html import Raw

    title = "Our best size beside the published MNIST-1D accuracies"
    t = published_table(df)
    rows = []
    for r in t.itertuples():
        ours = (f"{r.mean:.3f} [{r.ci_lo:.3f}, {r.ci_hi:.3f}]" if math.isfinite(r.ci_lo)
                else (f"{r.mean:.3f} (no interval)" if math.isfinite(r.mean) else "n/a"))
        rows.append([r.family, f"{r.published:.0%}", tables.framework_name(r.framework) or "-",
                     f"{r.size} ({tables.fmt_count(r.params)} params, best of {r.n_sizes})"
                     if r.size else "-", ours, r.n_seeds, r.verdict])
    epochs = sorted({int(e) for e in tables.study_rows(df)["epochs"].dropna()})
    budget = (f" Our runs train for at most {', '.join(map(str, epochs))} epochs and stop "
              f"earlier at a validation plateau." if epochs else "")
    caption = ("Published: MNIST-1D test accuracy, CNN 94% and GRU 91% "
               f"({PUBLISHED_SOURCE}; "
               f"4000 train / 1000 test samples, Adam lr 1e-2, batch 100, 6000 steps, about "
               f"5k parameters). Ours: for each framework and the pooled runs, the size of the "
               f"scale recipe with the best mean test accuracy (failed runs at chance), with "
               f"its 95% t-interval over seeds; choosing the best of several sizes flatters "
               f"it slightly. Verdict: reaches (mean at or above the published figure), within "
               f"interval (below it, but the interval reaches it), below (the interval stays "
               f"under it).{budget}")
    data = t.assign(trace="published")
    return Panel(key, title, caption, None, data,
                 body=Raw(table(rows, ["family", "published", "framework", "best size",
                                       "test accuracy, mean [95% t-interval]", "seeds",
                                       "verdict"])))


def _converged_panel(df: pd.DataFrame, key: str) -> Panel:
    from .html import Raw

    title = "Runs in the scale and sweep figures that ended still improving"
    rows = figure_rows(df)
    if rows.empty:
        return Panel(key, title, message="No run in the scale or sweep figures.")
    out, data = [], []
    for (fam, fw), part in sorted(rows.groupby(["family", "framework"]),
                                  key=lambda kv: (kv[0][0], tables.framework_rank(kv[0][1]))):
        still, known = tables.cap_counts(part)
        out.append([fam, tables.framework_name(fw), known, still,
                    f"{still / known:.0%}" if known else "not recorded"])
        data.append({"trace": "converged", "family": fam, "framework": fw, "ok_runs": known,
                     "still_improving": still})
    still, known = tables.cap_counts(rows)
    caption = (f"{tables.cap_phrase(rows, capital=True)} (converged = False: training hit its "
               f"epoch cap while validation accuracy was still rising; the others stopped at "
               f"a plateau).")
    if rows["family"].isin(tables.GENERATION_FAMILIES).any():
        caption += (" For seq2seq a falling validation loss counts as progress too (its exact "
                    "match can stay flat while it learns words).")
    if still:
        caption += (" Their accuracies are results at a fixed budget, not converged ones; "
                    "a larger cap would likely raise them.")
    return Panel(key, title, caption, None, pd.DataFrame(data),
                 body=Raw(table(out, ["family", "framework", "ok runs", "ended at the cap "
                                      "still improving", "share"])))


def _ol(items: list[str]):
    from .html import Raw, esc

    return Raw('<ol class="findings">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ol>")


def _status_panel(df: pd.DataFrame, key: str) -> Panel:
    import plotly.graph_objects as go

    title = "Runs per status, family and framework"
    counts = status_counts(df)
    if counts.empty:
        return Panel(key, title, message="No runs in the summary table.",
                     data=pd.DataFrame(columns=["trace", "x", "y"]))
    counts["x"] = counts["family"] + " / " + counts["framework"].map(tables.framework_name)
    fig = go.Figure()
    data = []
    colors = {"ok": "#2b8a3e", "diverged": "#e67700", "oom": "#862e9c", "pruned": "#868e96",
              "error": "#c92a2a"}
    statuses = [c for c in counts.columns if c not in ("family", "framework", "total", "x")]
    from .html import esc

    for s in statuses:
        fig.add_trace(go.Bar(x=counts["x"].map(esc).tolist(), y=counts[s].tolist(),
                             name=esc(s), meta=s, marker={"color": colors.get(s, "#495057")}))
        for x, y, fam, fw in zip(counts["x"], counts[s], counts["family"], counts["framework"],
                                 strict=True):
            data.append({"trace": s, "status": s, "family": fam, "framework": fw, "x": x,
                         "y": int(y)})
    fig.update_layout(barmode="stack", yaxis={"title": {"text": "runs"}})
    total = counts[statuses].sum()
    caption = (f"{len(df)} runs: " + ", ".join(f"{s} {int(total[s])}" for s in statuses)
               + f" ({total.get('ok', 0) / max(len(df), 1):.0%} ok).")
    worst = counts.assign(bad=counts["total"] - counts["ok"]).sort_values("bad").iloc[-1]
    if worst["bad"]:
        caption += (f" Most failures: {worst['family']} on "
                    f"{tables.framework_name(worst['framework'])} ({int(worst['bad'])} of "
                    f"{int(worst['total'])} not ok).")
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=360)


def _failures_panel(bad: pd.DataFrame, key: str) -> Panel:
    from .html import Raw

    cols = ["run_id", "status", "family", "framework", "dataset", "size", "optimizer",
            "regulariser", "seed", "message"]
    data = bad[cols].assign(trace="failures")
    shown = bad.head(50)
    rows = [[tables.run_label(r), r["family"], r["dataset"], r["status"], r["message"][:300]]
            for _, r in shown.iterrows()]
    more = f" The first 50 are listed; all {len(bad)} are in the CSV." if len(bad) > 50 else ""
    return Panel(key, f"Runs that did not finish ok ({len(bad)})",
                 f"Status diverged: loss became NaN/inf; oom: out of memory or over the memory "
                 f"limit; pruned: stopped by a tuning study; error: an unexpected exception."
                 f"{more}", None, data,
                 body=Raw(table(rows, ["run", "family", "dataset", "status", "message"])))


def _compute_panel(df: pd.DataFrame, key: str) -> Panel:
    import plotly.graph_objects as go

    from .html import esc

    title = "Compute spent per family and framework"
    spent = compute_spent(df)
    if df.empty:
        return Panel(key, title, message="No runs: no compute spent.")
    by = df.assign(wall_h=df["wall_s"].fillna(0) / 3600,
                   core_h=df["wall_s"].fillna(0) * df["threads"].fillna(1) / 3600)
    g = by.groupby(["family", "framework"])[["wall_h", "core_h"]].sum().reset_index()
    fig = go.Figure()
    data = []
    for i, fw in enumerate(sorted(set(g["framework"]), key=tables.framework_rank)):
        part = g[g["framework"] == fw]
        fig.add_trace(go.Bar(x=part["family"].map(esc).tolist(), y=(part["wall_h"] * 60).tolist(),
                             name=esc(tables.framework_name(fw)), meta=fw,
                             marker={"color": plots.color(fw, i)}))
        for r in part.itertuples():
            data.append({"trace": fw, "family": r.family, "framework": fw, "x": r.family,
                         "y": r.wall_h * 60, "core_hours": r.core_h})
    from ..registry import FAMILIES

    order = sorted(set(g["family"]), key=lambda f: (FAMILIES.index(f) if f in FAMILIES
                                                    else 99, f))
    fig.update_layout(barmode="group", yaxis={"title": {"text": "run wall time (minutes)"}},
                      xaxis={"categoryorder": "array", "categoryarray": [esc(f) for f in order]})
    caption = (f"{spent['runs']} runs took {tables.fmt_seconds(spent['wall_s'])} of run wall time "
               f"in all ({spent['core_s'] / 3600:.2f} core-hours at each run's thread count), "
               f"and {spent['train_flops'] / 1e12:.3g} TFLOP of training arithmetic "
               f"(analytic FLOPs x samples processed). Framework start-up outside the runs "
               f"is not counted.")
    if len(g):
        top = g.loc[g["wall_h"].idxmax()]
        caption += (f" The most expensive: {top['family']} on "
                    f"{tables.framework_name(top['framework'])} ({top['wall_h'] * 60:.1f} min).")
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=340)


def published_table(df: pd.DataFrame) -> pd.DataFrame:
    """Our best size beside each published accuracy (`PUBLISHED`), per framework and pooled.

    Per (family, dataset) with a published figure: the scale recipe's runs, for each
    framework and the pooled line, the size with the best mean test accuracy, its t-interval,
    and a verdict: 'reaches' (mean at or above the figure), 'within interval' (the interval
    reaches it), 'below' (it does not; 'below, no interval' with one seed).
    """
    out = []
    for (family, dataset), ref in PUBLISHED.items():
        _, rows = tables.scale_selection(df, family, dataset)
        pts = tables.scale_points(rows, "test_acc") if len(rows) else pd.DataFrame(
            columns=tables.POINT_COLUMNS)
        if pts.empty:
            out.append({"family": family, "dataset": dataset, "published": ref,
                        "framework": "", "size": "", "params": math.nan, "mean": math.nan,
                        "ci_lo": math.nan, "ci_hi": math.nan, "n_seeds": 0, "n_failed": 0,
                        "n_sizes": 0, "verdict": "not run"})
            continue
        for fw in sorted(set(pts["framework"]), key=tables.framework_rank):
            part = pts[pts["framework"] == fw]
            b = part.loc[part["mean"].idxmax()]
            out.append({"family": family, "dataset": dataset, "published": ref,
                        "framework": fw, "size": b["size"], "params": b["params"],
                        "mean": b["mean"], "ci_lo": b["ci_lo"], "ci_hi": b["ci_hi"],
                        "n_seeds": int(b["n_seeds"]), "n_failed": int(b["n_failed"]),
                        "n_sizes": len(part), "verdict": verdict(b["mean"], b["ci_hi"], ref)})
    return pd.DataFrame(out)


def verdict(mean: float, hi: float, ref: float) -> str:
    if not math.isfinite(mean):
        return "no result"
    if mean >= ref:
        return "reaches"
    if not math.isfinite(hi):
        return "below, no interval"
    return "within interval" if hi >= ref else "below"


def status_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Runs per family, framework and status (every status column present, zeros kept)."""
    if df.empty:
        return pd.DataFrame(columns=["family", "framework", *tables.STATUSES, "total"])
    t = pd.crosstab([df["family"], df["framework"]], df["status"])
    extra = [s for s in t.columns if s not in tables.STATUSES]
    t = t.reindex(columns=[*tables.STATUSES, *extra], fill_value=0)
    t["total"] = t.sum(axis=1)
    t = t.reset_index()
    from ..registry import FAMILIES

    rank = t.apply(lambda r: (FAMILIES.index(r["family"]) if r["family"] in FAMILIES else 99,
                              r["family"], tables.framework_rank(r["framework"])), axis=1)
    return t.iloc[sorted(range(len(t)), key=lambda i: rank.iloc[i])].reset_index(drop=True)


def compute_spent(df: pd.DataFrame) -> dict:
    """Total wall time, core time (wall x threads) and training FLOPs of all runs
    (flops_spent, else analytic FLOPs per sample x steps x batch)."""
    wall = df["wall_s"].fillna(0.0)
    threads = df["threads"].fillna(1.0)
    samples = df["steps_run"].fillna(0.0) * df["batch_size_effective"].fillna(0.0)
    flops = df["flops_spent"].fillna(df["train_flops_per_sample"].fillna(0.0) * samples).sum()
    return {"runs": len(df), "wall_s": float(wall.sum()),
            "core_s": float((wall * threads).sum()), "train_flops": float(flops)}


def environment(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(what, values) pairs describing the hardware and software the runs saw."""
    items: list[tuple[str, str]] = []

    def uniq(col, rows=df) -> str:
        vals = sorted({str(v) for v in rows[col] if str(v) not in ("", "nan")})
        return ", ".join(vals) if vals else "not recorded"

    items.append(("hosts", uniq("hostname")))
    items.append(("CPU", uniq("cpu_model")))
    cores = sorted({int(v) for v in df["cpu_count"].dropna()})
    items.append(("CPU cores", ", ".join(map(str, cores)) or "not recorded"))
    items.append(("devices", uniq("device")))
    items.append(("device names", uniq("device_name")))
    th = sorted({int(v) for v in df["threads"].dropna()})
    items.append(("threads per run", ", ".join(map(str, th)) or "not recorded"))
    for fw in sorted(set(df["framework"]) - {""}, key=tables.framework_rank):
        items.append((f"{tables.framework_name(fw)} version", uniq("framework_version",
                                                                   df[df["framework"] == fw])))
    items.append(("Python", uniq("python_version")))
    items.append(("platform", uniq("platform")))
    items.append(("bench", uniq("bench_version")))
    load = df["load_avg_1m_start"].dropna()
    items.append(("load average at run start",
                  f"{load.min():.2f} to {load.max():.2f} (median {load.median():.2f})"
                  if len(load) else "not recorded"))
    return items


def grid_summary(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(axis, values) of what the study ran, read from the runs themselves."""

    def vals(col, key=None):
        v = sorted({x for x in df[col] if x not in ("", None)}, key=key)
        return ", ".join(map(str, v)) if v else "none"

    sizes = []
    for size in sorted({s for s in df["size"] if s}, key=tables.size_rank):
        p = df.loc[df["size"] == size, "params"].dropna()
        rng = (f" ({tables.fmt_count(p.min())}"
               + (f"-{tables.fmt_count(p.max())}" if p.max() != p.min()
                                            else "") + " params)") if len(p) else ""
        sizes.append(size + rng)
    opts = []
    for opt in sorted({o for o in df["optimizer"] if o}):
        lrs = sorted({float(v) for v in df.loc[df["optimizer"] == opt, "lr"].dropna()})
        opts.append(opt + (f" (lr {', '.join(f'{x:g}' for x in lrs)})" if lrs else ""))
    seeds = "; ".join(f"{tables.framework_name(fw)} {tables.seed_text(tables.seeds_of(part))}"
                      for fw, part in sorted(df.groupby("framework"),
                                             key=lambda kv: tables.framework_rank(kv[0])) if fw)
    epochs = sorted({int(s) for s in df["epochs"].dropna()})
    return [
        ("families", vals("family")),
        ("frameworks", ", ".join(tables.framework_name(f) for f in
                                 sorted(set(df["framework"]) - {""}, key=tables.framework_rank))
         or "none"),
        ("datasets", vals("dataset")),
        ("sizes", "; ".join(sizes) or "none"),
        ("optimizers", "; ".join(opts) or "none"),
        ("regularisers", vals("regulariser")),
        ("seeds", seeds or "none"),
        ("epochs (cap)", ", ".join(map(str, epochs)) or "none"),
        ("learning-rate selection", lr_selection_text(df)),
        ("batch sizes", vals("batch_size")),
        ("tuned runs", vals("tuned") if (df["tuned"] != "").any() else "none"),
    ]


def lr_selection_text(df: pd.DataFrame) -> str:
    """How learning rates were chosen, read from the runs' lr_role."""
    grid = df[(df["lr_role"] == "grid") & (df["tuned"] == "")]
    if grid.empty:
        return "none: every run at its optimizer's configured lr"
    units = grid[["family", "dataset", "size", "optimizer"]].drop_duplicates()
    k = grid["lr_grid_size"].dropna()
    k = f"{int(k.min())}" if len(k) and k.min() == k.max() else "several"
    fws = ", ".join(tables.framework_name(f) for f in sorted(set(grid["framework"]),
                                                             key=tables.framework_rank))
    return (f"{len(units)} units (family, dataset, size, optimizer), each a grid of {k} "
            f"rates at seed {tables.seed_text(tables.seeds_of(grid))} in {fws}, chosen by best "
            "validation "
            f"accuracy; the other seeds and frameworks then ran at the chosen rate")


# Published test accuracies to compare with: Greydanus 2020, "Scaling Down Deep Learning"
# (arXiv:2011.14439), MNIST-1D with 4000 train / 1000 test samples, Adam lr 1e-2, batch 100,
# 6000 steps; CNN 5,210 and GRU 5,134 parameters.
PUBLISHED = {("cnn", "mnist1d"): 0.94, ("gru", "mnist1d"): 0.91}


PUBLISHED_SOURCE = "Greydanus 2020, arXiv:2011.14439"


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return overview_page(inputs.df, inputs.source, inputs.studies, inputs.settings)
