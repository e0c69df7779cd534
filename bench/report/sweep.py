"""The sweep page: every optimizer x regulariser cell at one size, accuracy and time to target."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import curve_data, page_kit, prose, tables
from .html import Page, Panel, esc


def sweep_page(df: pd.DataFrame) -> Page:
    page = Page("sweep.html", "Optimizers and regularisers",
                "Per family: mean test accuracy over seeds (95% t-interval; failed runs at "
                "chance; pooled over frameworks where their seeds are disjoint) and median "
                "time-to-target for every optimizer x regulariser cell at one size, per "
                "framework.")
    if page_kit.no_runs(page, df):
        return page
    keys = page_kit.Keys()
    without = []
    for family, dataset in tables.groups(df):
        _, rows = tables.sweep_selection(tables.study_rows(df), family, dataset)
        if rows[["optimizer", "regulariser"]].drop_duplicates().shape[0] < 2:
            without.append(f"{family} on {dataset}")  # one cell is no sweep
            continue
        page.h2(f"{family} on {dataset}")
        for what in ("acc", "ttt"):
            k = keys("sweep", family, dataset, what)
            page.add(page_kit.safe(k, f"{family} {dataset} {what}",
                                   lambda f=family, d=dataset, k=k, w=what:
                                   sweep_panel(df, f, d, k, w)))
    if without:
        page.p(f"No optimizer x regulariser sweep ran for {', '.join(without)} (one cell "
                  "each; the study's `sweep_families` names the families that get one).")
    return page


def _reg_order(labels) -> list[str]:
    return sorted(set(labels), key=lambda r: (r != "none", r))


def sweep_cells(rows: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per framework, optimizer and regulariser: accuracy mean/t-interval (failures at
    chance) and time-to-target (ok runs); plus a `tables.POOLED` cell per (optimizer,
    regulariser) whose frameworks ran disjoint seeds (accuracy only)."""
    out = []
    for (fw, opt, reg), part in rows.groupby(["framework", "optimizer", "regulariser"]):
        ok = part[part["status"] == "ok"]
        acc = tables.mean_ci(tables.metric_values(part, "test_acc"), "test_acc")
        times = np.array([curve_data.time_to_of(p, target) for p in ok["curve_pts"]]) if (
            len(ok) and math.isfinite(target)) else np.array([])
        reached = int(np.isfinite(times).sum())
        ttt = float(np.median(times)) if len(times) else math.nan
        out.append({"framework": fw, "optimizer": opt, "regulariser": reg, "n_runs": len(part),
                    "n_ok": len(ok), "n_failed": tables.n_failed(part), "acc": acc.value,
                    "acc_lo": acc.lo, "acc_hi": acc.hi, "n_seeds": acc.n,
                    "ttt_s": ttt if math.isfinite(ttt) else math.nan,
                    "n_reached": reached, "target": target})
    for (opt, reg), part in rows.groupby(["optimizer", "regulariser"]):
        if not tables.seeds_disjoint(part):
            continue
        acc = tables.mean_ci(tables.metric_values(part, "test_acc"), "test_acc")
        out.append({"framework": tables.POOLED, "optimizer": opt, "regulariser": reg,
                    "n_runs": len(part), "n_ok": int((part["status"] == "ok").sum()),
                    "n_failed": tables.n_failed(part), "acc": acc.value, "acc_lo": acc.lo,
                    "acc_hi": acc.hi, "n_seeds": acc.n, "ttt_s": math.nan, "n_reached": 0,
                    "target": target})
    # Columns even with no rows: callers filter on them (a family with no sweep at all).
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)


SWEEP_COLUMNS = ["framework", "optimizer", "regulariser", "n_runs", "n_ok", "n_failed", "acc",
                 "acc_lo", "acc_hi", "n_seeds", "ttt_s", "n_reached", "target"]


def sweep_panel(df: pd.DataFrame, family: str, dataset: str, key: str, what: str) -> Panel:
    """what: 'acc' (test accuracy heatmap, with a pooled column where seeds are disjoint)
    or 'ttt' (time-to-target heatmap, per framework)."""
    size, rows = tables.sweep_selection(df, family, dataset)
    name = "test accuracy" if what == "acc" else "time to target"
    title = f"{family} on {dataset}, size {size or '-'}: {name} per optimizer and regulariser"
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{prose.counts_text(rows)}.")
    target, best = curve_data.target_accuracy(df, family, dataset, size)
    cells = sweep_cells(rows, target)
    if what != "acc":
        cells = cells[cells["framework"] != tables.POOLED]
    fws = sorted(set(cells["framework"]), key=tables.framework_rank)
    lookup = {(c["framework"], c["optimizer"], c["regulariser"]): c
              for c in cells.to_dict("records")}
    opts = sorted(set(cells["optimizer"]))
    regs = _reg_order(cells["regulariser"])
    fig = make_subplots(rows=1, cols=len(fws), horizontal_spacing=0.12,
                        subplot_titles=[esc(tables.framework_name(f)) for f in fws])
    data = []
    for col, fw in enumerate(fws, 1):
        z, text = [], []
        for opt in opts:
            zr, tr = [], []
            for reg in regs:
                c = lookup.get((fw, opt, reg))
                v, label = _cell(c, what)
                zr.append(v)
                tr.append(label)
                rec = dict(c) if c else {"framework": fw, "optimizer": opt, "regulariser": reg}
                data.append({"trace": f"{fw} {what}", "x": reg, "y": opt, "z": v,
                             "label": label.replace("<br>", " "), **rec})
            z.append(zr)
            text.append(tr)
        xs, ys = [esc(r) for r in regs], [esc(o) for o in opts]
        fig.add_trace(go.Heatmap(
            z=z, x=xs, y=ys, text=text, texttemplate="%{text}", meta=f"{fw} {what}",
            coloraxis="coloraxis", hovertemplate="%{y} + %{x}: %{text}<extra></extra>",
            xgap=2, ygap=2, hoverongaps=False,
        ), row=1, col=col)
        # Plotly draws nothing in a cell without a value: say what is there instead.
        suffix = "" if col == 1 else str(col)
        for yi, row_z in enumerate(z):
            for xi, v in enumerate(row_z):
                if not math.isfinite(v):
                    fig.add_annotation(x=xs[xi], y=ys[yi], text=text[yi][xi], showarrow=False,
                                       xref=f"x{suffix}", yref=f"y{suffix}",
                                       font={"color": "#495057", "size": 11})
        fig.update_xaxes(title_text="regulariser", type="category", categoryarray=xs,
                         range=[-0.5, len(xs) - 0.5], showgrid=False, row=1, col=col)
        fig.update_yaxes(title_text="optimizer" if col == 1 else None, type="category",
                         categoryarray=ys, range=[-0.5, len(ys) - 0.5], showgrid=False,
                         row=1, col=col)
    scale = "Viridis" if what == "acc" else "Viridis_r"
    fig.update_layout(plot_bgcolor="#e9ecef", coloraxis={"colorscale": scale, "colorbar": {
        "title": {"text": "mean test acc" if what == "acc" else "seconds"}}})
    caption = (_sweep_acc_caption(rows, cells) if what == "acc"
               else _sweep_ttt_caption(cells, target, best, family, size))
    chosen = rows["lr_role"] != ""
    lr = ("the learning rate chosen per optimizer on validation" if chosen.all()
          else "each optimizer's configured learning rate" if not chosen.any()
          else f"the learning rate chosen on validation for {int(chosen.sum())} of "
          f"{len(rows)} runs, the configured one for the others")
    caption = (f"Size {size} (the size with the most optimizer x regulariser cells), at {lr}. "
               + caption + f" {tables.cap_phrase(rows, capital=True)}.")
    height = 160 + 70 * len(opts)
    return Panel(key, title, caption + prose.status_note(rows), fig, pd.DataFrame(data),
                 height=max(height, 320))


def _cell(r: dict | None, what: str) -> tuple[float, str]:
    if not r:
        return math.nan, "not run"
    if what == "acc":
        if not math.isfinite(r["acc"]):
            return math.nan, f"no result ({r['n_runs']})"
        ci = (f"<br>[{r['acc_lo']:.3f}, {r['acc_hi']:.3f}]" if math.isfinite(r["acc_lo"])
              else "<br>(1 seed)")
        failed = f"<br>{r['n_failed']} of {r['n_runs']} failed" if r["n_failed"] else ""
        return float(r["acc"]), f"{r['acc']:.3f}{ci}{failed}"
    if r["n_ok"] == 0:
        return math.nan, f"no ok run ({r['n_runs']})"
    if r["n_reached"] == 0:
        return math.nan, "not reached"
    frac = "" if r["n_reached"] == r["n_ok"] else f"<br>({r['n_reached']}/{r['n_ok']} seeds)"
    if not math.isfinite(r["ttt_s"]):
        return math.nan, f"not reached{frac}"
    return float(r["ttt_s"]), f"{r['ttt_s']:.1f} s{frac}"


def sweep_winner(rows: pd.DataFrame, fw: str) -> dict | None:
    """Best vs runner-up (optimizer, regulariser) cell of one framework or the pooled
    cells (`tables.best_vs_runner_up`); the pooled one only over cells with disjoint seeds."""
    if fw == tables.POOLED:
        keep = [p.index for _, p in rows.groupby(["optimizer", "regulariser"])
                if tables.seeds_disjoint(p)]
        part = rows.loc[np.concatenate(keep)] if keep else rows.iloc[:0]
    else:
        part = rows[rows["framework"] == fw]
    return tables.best_vs_runner_up(part, ["optimizer", "regulariser"])


def winner_text(w: dict) -> str:
    best, runner = " + ".join(w["best"]), " + ".join(w["runner"])
    return (f"best {best} ({w['best_mean']:.3f}), runner-up {runner} "
            f"({w['runner_mean']:.3f}): " + tables.claim(best, runner, w["diff"]))


def _sweep_acc_caption(rows: pd.DataFrame, cells: pd.DataFrame) -> str:
    parts = []
    for fw in sorted(set(cells["framework"]), key=tables.framework_rank):
        part = cells[cells["framework"] == fw].dropna(subset=["acc"])
        if part.empty:
            continue
        text = f"{tables.framework_name(fw)}: "
        w = sweep_winner(rows, fw)
        if w is None:
            b = part.loc[part["acc"].idxmax()]
            text += f"one cell, {b['optimizer']} + {b['regulariser']} ({b['acc']:.3f})"
        else:
            text += winner_text(w)
            worst = part.loc[part["acc"].idxmin()]
            text += (f"; worst {worst['optimizer']} + {worst['regulariser']} "
                     f"({worst['acc']:.3f})")
        parts.append(text)
    failed = tables.failed_phrase(rows)
    return (f"Mean test accuracy over seeds with 95% t-interval ({prose.n_text(cells)}). "
            + prose.pooling_sentence(rows, "time-to-target stays per framework", " (its own panel)",
                                     ("optimizer", "regulariser"), "cells") + " "
            + ". ".join(parts) + "." + (f" {failed}." if failed else ""))


def _sweep_ttt_caption(cells: pd.DataFrame, target: float, best: float, family: str,
                       size: str) -> str:
    if not math.isfinite(target):
        return "No validation curve recorded: no time-to-target."
    text = (f"Wall-clock seconds from a run's start until validation accuracy first reaches "
            f"{target:.3f} ({tables.TARGET_FRACTION:.0%} of the best mean validation accuracy "
            f"{best:.3f} of any {family} configuration at size {size}); median over the ok "
            f"seeds of a cell, a seed that never reaches it counts as never; per framework, "
            f"since time is the framework's own.")
    hit = cells.dropna(subset=["ttt_s"])
    if len(hit):
        f = hit.loc[hit["ttt_s"].idxmin()]
        text += (f" Fastest: {f['optimizer']} + {f['regulariser']} on "
                 f"{tables.framework_name(f['framework'])} ({f['ttt_s']:.1f} s).")
    never = int((cells["n_ok"] > 0).sum() - len(hit))
    if never:
        text += f" {never} of {int((cells['n_ok'] > 0).sum())} cells did not reach it."
    failed = int(cells["n_failed"].sum())
    if failed:
        text += f" {failed} failed runs excluded."
    return text


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return sweep_page(inputs.df)
