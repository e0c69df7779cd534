"""The learning-curves page: validation accuracy after every epoch, one line per run."""

from __future__ import annotations

import math

import pandas as pd
import plotly.graph_objects as go

from . import curve_data, page_kit, plots, prose, tables
from .html import Page, Panel, esc


def curves_page(df: pd.DataFrame) -> Page:
    page = Page("curves.html", "Learning curves",
                "Validation accuracy after every epoch, one line per run; pick a run in the "
                "menu above each figure.")
    if df.empty:
        page.message("The summary table holds no runs: no learning curves.")
        return page
    return page_kit.panel_per_group(page, df, "curves", curves_panel)


def curves_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    title = f"{family} on {dataset}: validation accuracy per epoch"
    everything = df[(df["family"] == family) & (df["dataset"] == dataset)]
    rows = everything[everything["lr_role"] != "grid"]
    n_grid = len(everything) - len(rows)
    fig = go.Figure()
    data, labels, finals = [], [], []
    sort_cols = ["fw_rank", "size_order", "optimizer", "regulariser", "seed", "run_id"]
    rows = rows.assign(fw_rank=rows["framework"].map(lambda f: tables.framework_rank(f)))
    for r in rows.sort_values(sort_cols).to_dict("records"):
        keys = ("epoch", "val_acc", "elapsed_s", "val_loss", "train_loss")
        c = [tuple(curve_data.as_float(p.get(k)) for k in keys) for p in curve_data.curve_points(r)]
        c = [p for p in c if math.isfinite(p[0]) and math.isfinite(p[1])]
        if not c:
            continue
        epochs, accs = [p[0] for p in c], [p[1] for p in c]
        label = tables.run_label(r) + ("" if r["status"] == "ok" else f" [{r['status']}]")
        labels.append(label)
        fig.add_trace(go.Scatter(
            x=epochs, y=accs, mode="lines+markers", name=esc(label), meta=r["run_id"],
            line={"color": plots.color(r["framework"]), "width": 1.3,
                  "dash": "solid" if r["status"] == "ok" else "dot"},
            marker={"size": 4}, opacity=0.75,
            customdata=[[p[2], p[3]] for p in c],
            hovertemplate="epoch %{x}: val acc %{y:.3f}<br>%{customdata[0]:.1f} s, "
                          "val loss %{customdata[1]:.3g}<extra>" + esc(label) + "</extra>",
        ))
        for e, a, t, vl, tl in c:
            data.append({"trace": r["run_id"], "run": label, "status": r["status"],
                         "x": e, "y": a, "elapsed_s": t, "val_loss": vl, "train_loss": tl})
        still = len(c) > 1 and accs[-1] >= max(accs) - 1e-12
        finals.append((accs[-1], label, still, len(c)))
    if not labels:
        return Panel(key, title, message=f"No learning curve recorded for {family} on "
                     f"{dataset} ({prose.counts_text(rows)}).")
    n = len(labels)
    buttons = [{"label": "all runs", "method": "restyle", "args": [{"visible": [True] * n}]}]
    for i, label in enumerate(labels):
        vis = [j == i for j in range(n)]
        buttons.append({"label": esc(label), "method": "restyle", "args": [{"visible": vis}]})
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0, "xanchor": "left",
                      "y": 1.13, "yanchor": "top", "showactive": True}],
        xaxis={"title": {"text": "epoch"}, "tickformat": "d"},  # whole epochs, auto spacing
        yaxis={"title": {"text": "validation accuracy"}},
        legend={"font": {"size": 10}}, margin={"t": 70},
    )
    best = max(finals)
    multi = [f for f in finals if f[3] > 1]
    if tables.cap_counts(rows)[1]:
        shape = (f"{tables.cap_phrase(rows, capital=True)}; the others stopped at a validation "
                 f"plateau.")
    elif multi:
        improving = sum(f[2] for f in multi)
        shape = (f"{improving} of {len(multi)} runs with more than one epoch were still at "
                 f"their best in the last epoch" + (", so longer training would likely raise "
                                                     "them." if improving else "."))
    else:
        shape = "Every run recorded a single epoch: there is no curve shape to read."
    caption = (f"{n} runs (PyTorch red, TensorFlow blue; dotted: not ok). Choose one run in the "
               f"menu or click legend entries (double-click isolates one). Best final "
               f"validation accuracy {best[0]:.3f}: {best[1]}. {shape}"
               + (f" The {n_grid} learning-rate grid runs whose rate was not chosen are on "
                  f"the scale page." if n_grid else ""))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=520)


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return curves_page(inputs.df)
