"""The seven pages: which panels each holds, and the overview's computed findings."""

from __future__ import annotations

import math
import re
import sys
import traceback
from collections.abc import Callable

import pandas as pd

from . import figures, frameworks, generation, tables, tuning
from .html import Page, Panel, Raw, esc, links, table

# Tests set this to re-raise; the workflow shows a message in place of a panel that fails.
STRICT = False


class Keys:
    """Unique, file-name-safe panel keys."""

    def __init__(self):
        self.seen: set[str] = set()

    def __call__(self, *parts) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-") or "x"
        key, i = base, 2
        while key in self.seen:
            key, i = f"{base}-{i}", i + 1
        self.seen.add(key)
        return key


def safe(key: str, title: str, build: Callable[[], Panel | None]) -> Panel | None:
    """Build a panel; on an unexpected error show the error in its place instead of crashing."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001
        if STRICT:
            raise
        traceback.print_exc(file=sys.stderr)
        return Panel(key, title, message=f"This figure could not be built: "
                     f"{type(e).__name__}: {e}")


def _no_runs(page: Page, df: pd.DataFrame) -> bool:
    if df.empty:
        page.message("The summary table holds no runs: nothing ran yet, or every job failed "
                      "before writing a record.")
        return True
    if tables.ok_rows(df).empty:
        page.message(f"None of the {len(df)} runs finished with status ok "
                     f"({_status_line(df)}); there is nothing to plot. The overview lists "
                     "the failures and their messages.")
        return True
    return False


def _short(v) -> str:
    """Parameter values for a table: floats to 4 significant digits."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _status_line(df: pd.DataFrame) -> str:
    c = df["status"].value_counts()
    return ", ".join(f"{k} {v}" for k, v in c.items())


# ---------------------------------------------------------------------------- overview


def findings(df: pd.DataFrame) -> list[str]:
    """Three headline findings computed from the data (scale, frameworks, optimizers).

    A finding names a winner only where the 95% interval of the difference against the
    runner-up excludes zero (ratios: excludes 1); otherwise it says there is no clear winner
    and gives the difference with its interval.
    """
    return [_finding_scale(df), _finding_frameworks(df), _finding_sweep(df)]


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
        sizes = sorted(set(rows.loc[rows["status"] == "ok", "size"]), key=tables._size_rank)
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
    return "Frameworks: " + " ".join(frameworks.throughput_sentences(c))


def _finding_sweep(df: pd.DataFrame) -> str:
    clauses = []
    for family, dataset in tables.groups(df):
        size, rows = tables.sweep_selection(df, family, dataset)
        if rows.empty:
            continue
        pooled = figures.sweep_winner(rows, tables.POOLED)
        if pooled is not None:
            wins = [(tables.POOLED, pooled)]
        else:
            wins = [(fw, figures.sweep_winner(rows, fw))
                    for fw in sorted(set(rows["framework"]), key=tables.framework_rank)]
        for fw, w in wins:
            if w is not None:
                clauses.append(f"{family} (size {size}, {tables.framework_name(fw)}): "
                               + figures.winner_text(w))
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
    keys = Keys()
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
    page.add(_ol(findings(df)))
    page.h2("Against published results")
    page.add(safe("published", "Against published results",
                  lambda: _published_panel(df, keys("published"))))
    page.h2("Did the runs converge?")
    page.add(safe("converged", "Runs that ended still improving",
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
    page.add(table([list(r) for r in tables.grid_summary(df)], ["axis", "values"]))
    page.h2("Outcomes")
    page.add(safe("status", "Runs per status", lambda: _status_panel(df, keys("status"))))
    bad = df[df["status"] != "ok"]
    if len(bad):
        page.add(safe("failures", "Runs that did not finish ok",
                      lambda: _failures_panel(bad, keys("failures"))))
    page.h2("Hardware and software")
    page.add(table([list(r) for r in tables.environment(df)], ["what", "recorded"]))
    page.h2("Compute spent")
    page.add(safe("compute", "Compute spent", lambda: _compute_panel(df, keys("compute"))))
    return page


def _published_panel(df: pd.DataFrame, key: str) -> Panel:
    from .html import Raw

    title = "Our best size beside the published MNIST-1D accuracies"
    t = tables.published_table(df)
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
               f"({tables.PUBLISHED_SOURCE}; "
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
    counts = tables.status_counts(df)
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
    spent = tables.compute_spent(df)
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
                             marker={"color": figures.color(fw, i)}))
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


# ---------------------------------------------------------------------------- other pages


def scale_page(df: pd.DataFrame, studies: list[tuning.Study] | tuple = ()) -> Page:
    page = Page("scale.html", "Scale vs performance",
                "Per family and dataset: test accuracy, training throughput and model memory "
                "against parameter count (log axis), one line per framework and a pooled "
                "accuracy line where the frameworks' seeds are disjoint, mean over seeds with "
                "95% t-interval, and a power law where it fits; then how each size's learning "
                "rate was chosen, accuracy against training compute with the "
                "compute-efficient frontier, and the framework runtimes' own memory.")
    if _no_runs(page, df):
        return page
    page.h2("Accuracy, throughput and memory against size")
    _panel_per_group(page, df, "scale", _scale_panel)
    keys = Keys()
    cells = tuning.tuned_cells(df, list(studies))
    tuned = sorted(set(zip(cells["family"], cells["dataset"], strict=True)),
                   key=tables.groups(df).index)
    if tuned:
        page.h2("Tuned against untuned, per size")
        for family, dataset in tuned:
            k = keys("tuned", family, dataset)
            page.add(safe(k, f"{family} on {dataset}", lambda f=family, d=dataset, k=k:
                          tuning.scale_panel(df, studies, f, d, k)))
    page.h2("Learning rate chosen per size")
    shown = 0
    for family, dataset in tables.groups(df):
        k = keys("lr", family, dataset)
        panel = safe(k, f"{family} on {dataset}",
                     lambda f=family, d=dataset, k=k: figures.lr_panel(df, f, d, k))
        if panel is not None:
            page.add(panel)
            shown += 1
    if not shown:
        page.message("No learning-rate grid in this study (no run has lr_role 'grid'): every "
                     "run trained at its optimizer's configured learning rate.")
    page.h2("Accuracy against training compute")
    _panel_per_group(page, df, "compute", _scale_compute_panel)
    page.h2("Runtime baseline")
    page.add(safe("baseline", "Runtime baseline",
                  lambda: figures.baseline_panel(df, keys("baseline"))))
    return page


def _relabel(fig, old: str, new: str) -> None:
    """A subplot title `old` (an annotation make_subplots wrote) reads `new`."""
    for a in fig.layout.annotations:
        if a.text == old:
            a.text = new


GENERATION_NOTE = ("{family}: test accuracy is the greedy exact match on the test set (a "
                   "failed run counts at 0, the chance of an exact match) and a sample is a "
                   "sentence; BLEU, chrF, beam search and decoding speed are on the Generation "
                   "page.")


def _scale_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """`figures.scale_panel`, saying exact match where the family's accuracy is one."""
    generation = family in tables.GENERATION_FAMILIES
    panel = figures.scale_panel(df, family, dataset, key,
                                "Exact match" if generation else "Accuracy")
    if generation:
        panel.title = panel.title.replace(": accuracy,", ": exact match,", 1)
        if panel.fig is not None:
            _relabel(panel.fig, "test accuracy", "test exact match (greedy)")
            panel.fig.update_yaxes(title_text="test exact match", row=1, col=1)
            panel.fig.update_yaxes(title_text="training sentences/s", row=1, col=2)
            panel.caption += "\n" + GENERATION_NOTE.format(family=family)
    return panel


def _scale_compute_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """`figures.compute_panel`, saying exact match where the family's accuracy is one."""
    panel = figures.compute_panel(df, family, dataset, key)
    if family in tables.GENERATION_FAMILIES and panel.fig is not None:
        panel.title = panel.title.replace("validation accuracy", "validation exact match", 1)
        panel.fig.update_yaxes(title_text="validation exact match")
    return panel


def _panel_per_group(page: Page, df: pd.DataFrame, prefix: str, panel) -> Page:
    """One figure per (family, dataset), each built by `panel(df, family, dataset, key)`."""
    keys = Keys()
    for family, dataset in tables.groups(df):
        k = keys(prefix, family, dataset)
        page.add(safe(k, f"{family} on {dataset}",
                      lambda f=family, d=dataset, k=k: panel(df, f, d, k)))
    return page


def frameworks_page(df: pd.DataFrame) -> Page:
    page = Page("frameworks.html", "Frameworks: PyTorch vs TensorFlow",
                "PyTorch / TensorFlow ratios of geometric means over seeds of throughput and "
                "model memory (ok runs), for the same family, size, optimizer and regulariser, "
                "with the 95% Welch t-interval on log values; the accuracy difference is the "
                "mean over seeds of PyTorch minus TensorFlow (failed runs at chance), with its "
                "95% Welch t-interval.")
    if _no_runs(page, df):
        return page
    keys = Keys()
    for ds in sorted(set(df["dataset"]) - {""}):
        page.h2(f"Dataset {ds}")
        k = keys("frameworks", ds)
        page.add(safe(k, ds, lambda d=ds, k=k: frameworks.frameworks_panel(df, d, k)))
        k2 = keys("frameworks-all", ds)
        page.add(safe(k2, ds, lambda d=ds, k=k2: frameworks.frameworks_spread_panel(df, d, k)))
    return page


def sweep_page(df: pd.DataFrame) -> Page:
    page = Page("sweep.html", "Optimizers and regularisers",
                "Per family: mean test accuracy over seeds (95% t-interval; failed runs at "
                "chance; pooled over frameworks where their seeds are disjoint) and median "
                "time-to-target for every optimizer x regulariser cell at one size, per "
                "framework.")
    if _no_runs(page, df):
        return page
    keys = Keys()
    without = []
    for family, dataset in tables.groups(df):
        _, rows = tables.sweep_selection(tables.study_rows(df), family, dataset)
        if rows[["optimizer", "regulariser"]].drop_duplicates().shape[0] < 2:
            without.append(f"{family} on {dataset}")  # one cell is no sweep
            continue
        page.h2(f"{family} on {dataset}")
        for what in ("acc", "ttt"):
            k = keys("sweep", family, dataset, what)
            page.add(safe(k, f"{family} {dataset} {what}",
                          lambda f=family, d=dataset, k=k, w=what:
                          figures.sweep_panel(df, f, d, k, w)))
    if without:
        page.p(f"No optimizer x regulariser sweep ran for {', '.join(without)} (one cell "
                  "each; the study's `sweep_families` names the families that get one).")
    return page


def curves_page(df: pd.DataFrame) -> Page:
    page = Page("curves.html", "Learning curves",
                "Validation accuracy after every epoch, one line per run; pick a run in the "
                "menu above each figure.")
    if df.empty:
        page.message("The summary table holds no runs: no learning curves.")
        return page
    return _panel_per_group(page, df, "curves", figures.curves_panel)


def generation_page(df: pd.DataFrame, decode: dict | None = None) -> Page:
    """Translation models (seq2seq): quality, decoding speed, beam against greedy, examples;
    one section per dataset (`generation`). With `decode` (the table `bench decode-speed`
    wrote), a last section compares our generate with Hugging Face's on the article's
    model, whatever the summary holds."""
    page = _generation_runs_page(df)
    if decode is not None:
        page.h2("The article's model: decode speed against Hugging Face")
        page.add(safe("generation-decode-speed", "decode speed",
                      lambda: generation.decode_speed_panel(decode, "generation-decode-speed")))
    return page


def _generation_runs_page(df: pd.DataFrame) -> Page:
    page = Page("generation.html", "Generation",
                "Per dataset of the translation model (seq2seq, the scale recipe's runs): "
                "exact match, BLEU and chrF against parameter count on the test set and on "
                "test_long (six-digit numbers: longer sentences, a form training never "
                "shows), decoding throughput and latency per framework, beam search "
                "against greedy decoding (paired per run), "
                "and example translations. Mean over seeds with 95% t-interval; exact match "
                "counts a failed run at 0 and is pooled over frameworks whose seeds are "
                "disjoint; the rest uses ok runs only.")
    gen = df[df["family"].isin(tables.GENERATION_FAMILIES)]
    if gen.empty:
        page.message("The summary table holds no seq2seq runs: no translation model was "
                     "trained in this study (add seq2seq to the study's families, with "
                     "dataset en_fr_numbers), so there are no trained models to show.")
        return page
    if not (gen["status"] == "ok").any():
        page.message(f"None of the {len(gen)} seq2seq runs finished with status ok "
                     f"({_status_line(gen)}); there is nothing to plot. The overview lists "
                     "the failures and their messages.")
        return page
    keys = Keys()
    for family, dataset in generation.groups(df):
        page.h2(f"{family} on {dataset}")
        for name, build in generation.PANELS:
            k = keys("generation", name, family, dataset)
            page.add(safe(k, f"{family} on {dataset}: {name}",
                          lambda b=build, f=family, d=dataset, k=k: b(df, f, d, k)))
    return page


def tuning_page(df: pd.DataFrame, studies: list[tuning.Study]) -> Page:
    page = Page("tuning.html", "Tuning studies",
                "Each tuning study judged against its baseline (the untuned runs the scale "
                "page draws at that size: learning rate chosen on validation), per framework "
                "and pooled; what each study cost against the learning-rate grid it competes "
                "with; whether a small size's parameters transfer to the largest; then "
                "Optuna's own figures of every study.")
    if not studies:
        page.message("No tuning studies in this study: nothing under the tuning folder.")
        return page
    keys = Keys()
    judged = [(st, tuning.judge(df, st)) for st in studies]
    page.h2("Did tuning pay?")
    _verdicts(page, judged)
    page.h2("What each study cost")
    page.add(table([tuning.cost_row(df, st) for st in studies if st.cell],
                   ["study", "cell", "trials", "pruned", "trials' training TFLOP",
                    "lr grid's TFLOP (rates, optimizer)", "study / grid"]))
    page.p("A study's FLOPs are what all its trials trained (best.json's flops_spent); the "
           "grid's are the runs of the learning-rate grid of the same family, dataset, size "
           "and the scale recipe's optimizer, the selection tuning replaces. Studies "
           "exported before flops_spent was recorded say 'not recorded'.", cls="caption")
    moved = tuning.transfers(df, studies)
    if moved:
        page.h2("Do a small size's parameters transfer?")
        for t in moved:
            page.p(tuning.transfer_text(t))
    for st, results in judged:
        page.h2(f"Study {st.name}")
        if st.problem:
            page.message(f"Study {st.name} cannot be shown: {st.problem}.")
            continue
        page.p(f"{tuning.cell_label(st.cell)}. Trials read from {st.source}. "
               + tuning.pruning_text(st), cls="caption")
        for note in st.notes:
            page.message(note)
        items = st.best.get("best_params", st.best.get("params"))
        if isinstance(items, dict) and items:
            rows = [[k, _short(v)] for k, v in items.items()]
            values = st.best.get("best_values")
            if isinstance(values, dict):
                rows += [[f"objective {k}", _short(v)] for k, v in values.items()]
            page.add(table(rows, ["best trial", "value"]))
        if results:
            page.p("Final runs with the best parameters (records with tuned = "
                   f"{st.name}) against the baseline, test accuracy:", cls="caption")
            page.add(table(tuning.judgement_rows(results),
                           ["framework", "tuned runs", "tuned, mean [95% CI]", "baseline runs",
                            "baseline, mean [95% CI]", "tuned − baseline"]))
        for build in tuning.PANELS:
            k = keys("tune", st.name, build.__name__.replace("_panel", ""))
            panel = safe(k, f"Study {st.name}", lambda b=build, k=k, s=st: b(s, k))
            if panel is not None:
                page.add(panel)
    return page


def _verdicts(page: Page, judged: list) -> None:
    """The headline: a tuner that recommends a worse model than the defaults is a defect,
    stated first; then every study's verdicts."""
    worse = [(st, r) for st, res in judged for r in res if r["verdict"][0] == "worse"]
    if worse:
        page.message(
            "Tuning made the model worse in " + "; ".join(
                f"{tuning.cell_label(st.cell)} ({tables.framework_name(r['framework'])}: "
                f"{r['verdict'][1]})" for st, r in worse)
            + ". The tuner recommends hyperparameters that lose to the untuned defaults: a "
              "defect of the tuning setup (trial budget, space or objective), not a finding.")
    lines = []
    for st, res in judged:
        if not res:
            why = ("its cell is not recorded" if not st.cell else
                   "no final runs with its parameters, or no baseline runs at that size")
            lines.append(f"{st.name}: not judged ({why}).")
            continue
        lines.append(f"{tuning.cell_label(st.cell)}: " + "; ".join(
            f"{tables.framework_name(r['framework'])} {r['verdict'][1]}" for r in res) + ".")
    page.p("Tuned minus baseline test accuracy (mean over seeds, 95% Welch interval; a gain "
           "is claimed only where the interval excludes zero; failed runs at chance; pooled "
           "where the frameworks ran disjoint seeds):", cls="caption")
    page.add(Raw("<ul>" + "".join(f"<li>{esc(x)}</li>" for x in lines) + "</ul>"))
