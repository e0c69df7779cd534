"""The Generation page's panels: translation quality, decoding speed, greedy against beam
search and decoded examples, per dataset of a generating family (seq2seq).

Rules (the same as the scale page's, `tables`):

- Runs: the scale recipe of the family and dataset (`tables.scale_selection`: study runs, the
  recipe with the most sizes), any status.
- Exact match is the translation's accuracy: a ``diverged``/``oom``/``error`` run counts at
  0 (the chance of an exact match), a pruned run is left out, and it is pooled over the
  frameworks at a size where their seeds are disjoint (`tables.EXACT_MATCH_METRICS`). BLEU, chrF,
  decoding speed and latency use ok runs only and stay per framework.
- Per point: the mean over seeds with its Student-t interval; "is the largest size better
  than the smallest" is the Welch interval of the difference, claimed only where it
  excludes zero.
- Framework speed: PyTorch / TensorFlow ratio of geometric means over seeds with the Welch
  interval on logs (`stats.ratio_t_ci`), as on the frameworks page.
- Greedy against beam: both decode the same trained model, so each ok run gives one paired
  difference (beam - greedy); its mean and t-interval per size, pooled over frameworks where
  their seeds are disjoint.
- Examples: the sentences one run recorded, from the largest size's ok run with the best
  validation exact match (ties: PyTorch first, then the smaller seed).
"""

from __future__ import annotations

import json
import math

import pandas as pd
from plotly.subplots import make_subplots

from . import generation_decode, generation_rows, generation_speed, page_kit, plots, prose, tables
from .html import Page, Panel, esc, table

# ---------------------------------------------------------------------------- quality


def quality_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    """Exact match, BLEU and chrF (greedy) against parameter count, test and test_long."""
    recipe, rows = tables.scale_selection(df, family, dataset)
    title = (f"{family} on {dataset}: exact match, BLEU and chrF (greedy decoding) against "
             f"parameter count")
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return Panel(key, title, message=f"No successful run of {family} on {dataset}: "
                     f"{prose.counts_text(rows)}. Nothing to plot.")
    recorded = [b + sfx for b, _, _ in generation_rows.QUALITY
                for sfx, _ in generation_rows.TEST_SETS]
    if ok[recorded].isna().all().all():
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded its "
                     "translation quality (exact_match, bleu, chrf): "
                     f"{prose.counts_text(rows)}.")
    fig = make_subplots(rows=2, cols=3, horizontal_spacing=0.07, vertical_spacing=0.16,
                        subplot_titles=[f"{name}, {ts}" for _, ts in generation_rows.TEST_SETS
                                        for _, name, _ in generation_rows.QUALITY])
    order = generation_rows.order(rows)
    data: list[dict] = []
    pts_of: dict[str, pd.DataFrame] = {}
    shown: set[str] = set()
    for r, (suffix, ts) in enumerate(generation_rows.TEST_SETS, 1):
        for c, (base, name, _fmt) in enumerate(generation_rows.QUALITY, 1):
            metric = base + suffix
            pts_all = generation_rows.points(rows, metric)
            pts_of[metric] = pts_all
            for fw in sorted(set(pts_all["framework"]), key=tables.framework_rank):
                pts = pts_all[pts_all["framework"] == fw]
                plots.points_trace(generation_rows._Row(fig, r), pts, f"{fw} {metric}",
                                      tables.framework_name(fw),
                                      generation_rows.style_of(fw, order), c,
                                      fw not in shown, metric in tables.ACCURACY_METRICS, data,
                                      metric)
                shown.add(fw)
            if pts_all.empty:
                n = (r - 1) * 3 + c
                axis = "" if n == 1 else str(n)
                fig.add_annotation(text=f"{esc(name)} on {ts} not recorded", showarrow=False,
                                   xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5,
                                   y=0.5)
            fig.update_xaxes(type="log", title_text="parameters" if r == 2 else None,
                             row=r, col=c)
            fig.update_yaxes(title_text=esc(name if base != "exact_match"
                                            else "exact match (fraction)"), row=r, col=c)
    fig.update_layout(legend={"orientation": "h", "y": -0.14})
    em = pts_of["exact_match"]
    sizes = sorted(set(ok["size"]), key=tables.size_rank)
    largest = sizes[-1]
    claims = generation_rows.size_claims(rows)
    if claims:
        claim = ("Exact match on test, largest against smallest size (difference of means, "
                 "95% Welch interval): " + "; ".join(claims) + ".")
    else:
        claim = "Exact match: only one size has successful runs, so there is no size trend."
    trends = [f"{name} on test: {generation_rows.trend(pts_of[base], fmt)}."
              for base, name, fmt in generation_rows.QUALITY[1:] if len(pts_of[base])]
    long_parts = [f"{name} {generation_rows.level(pts_of[base + '_long'], largest, fmt)}"
                  for base, name, fmt in generation_rows.QUALITY if len(pts_of[base + "_long"])]
    test_parts = [f"{name} {generation_rows.level(pts_of[base], largest, fmt)}"
                  for base, name, fmt in generation_rows.QUALITY if len(pts_of[base])]
    long = (f"test_long at the largest size, {generation_rows.label(rows, largest)}: "
            + "; ".join(long_parts) + " (on test: " + "; ".join(test_parts) + ")."
            if long_parts else "test_long: not recorded.")
    em_long = pts_of["exact_match_long"]
    at = em_long[em_long["size"] == largest]
    if len(at) and (at["mean"] < 0.05).all():
        long += (" Exact match on test_long stays near 0, as expected: no training sentence "
                 "is that long.")
    pooling = prose.pooling_sentence(rows, "BLEU and chrF stay per framework",
                                     label="Exact match")
    failed = generation_rows.failed_text(rows, "exact match counted at 0",
                                          "excluded from BLEU and chrF")
    caption = (f"Recipe: {tables.recipe_label(recipe)}; greedy decoding; mean over seeds with 95% "
               f"t-interval ({prose.n_text(em) if len(em) else '0 seeds'}). Exact match is the "
               f"share of sentences translated exactly (a failed run counts at 0); BLEU and "
               f"chrF are sacrebleu corpus scores (0-100) of ok runs. "
               f"{generation_rows.test_sets_text(dataset)}.\n{pooling}\n{claim}\n"
               + (" ".join(trends) + "\n" if trends else "") + long
               + (f"\n{failed}." if failed else ""))
    return Panel(key, title, caption, fig, pd.DataFrame(data), height=680)


# ---------------------------------------------------------------------------- speed


# ---------------------------------------------------------------------------- beam


# ---------------------------------------------------------------------------- examples


def parse_examples(value) -> list[dict]:
    """A run's decoded examples (JSON text in the table; a list when built in memory)."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, str) and value.strip():
        try:
            items = json.loads(value)
        except ValueError:
            return []
    else:
        return []
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []


def example_run(rows: pd.DataFrame) -> tuple[dict | None, int]:
    """(the run whose examples are shown, ok runs it was chosen among): at the largest size
    with ok runs that recorded examples, the best validation exact match (ties: PyTorch
    first, then the smaller seed)."""
    ok = rows[rows["status"] == "ok"]
    ok = ok[[bool(parse_examples(e)) for e in ok["examples"]]]
    if ok.empty:
        return None, 0
    size = max(set(ok["size"]), key=lambda s: (ok.loc[ok["size"] == s, "params"].median(),
                                               tables.size_rank(s)))
    at = ok[ok["size"] == size]
    best = at.assign(_v=at["val_acc"].fillna(-math.inf),
                     _fw=at["framework"].map(tables.framework_rank)).sort_values(
        ["_v", "_fw", "seed"], ascending=[False, True, True])
    return best.iloc[0].to_dict(), len(at)


def examples_panel(df: pd.DataFrame, family: str, dataset: str, key: str) -> Panel:
    _, rows = tables.scale_selection(df, family, dataset)
    title = f"{family} on {dataset}: example translations"
    run, n = example_run(rows)
    if run is None:
        return Panel(key, title, message=f"No ok run of {family} on {dataset} recorded "
                     f"decoded examples ({prose.counts_text(rows)}).")
    cells, data = [], []
    for e in parse_examples(run["examples"]):
        ref = str(e.get("reference", ""))
        greedy, beam = str(e.get("greedy", "")), str(e.get("beam", ""))
        exact = [w for w, h in (("greedy", greedy), ("beam", beam)) if h == ref]
        match = " and ".join(exact) if exact else "neither"
        cells.append([e.get("test", ""), e.get("source", ""), ref, greedy, beam, match])
        data.append({"trace": "examples", "run_id": run["run_id"],
                     "framework": run["framework"], "size": run["size"], "seed": run["seed"],
                     "test": e.get("test", ""), "source": e.get("source", ""),
                     "reference": ref, "greedy": greedy, "beam": beam, "exact": match})
    val = run["val_acc"]
    val = f"{val:.3f}" if isinstance(val, float) and math.isfinite(val) else "n/a"
    caption = (f"Run {tables.run_label(run)} ({tables.fmt_count(run['params'])} params): "
               "the best of "
               f"{n} ok run(s) at the largest size by validation exact match ({val}). The "
               f"sentences the run recorded, the first of each test set, decoded greedily "
               f"and by beam search; 'exact' names the decodings equal to the reference. "
               f"{generation_rows.test_sets_text(dataset)}.")
    return Panel(key, title, caption, None, pd.DataFrame(data),
                 body=table(cells, ["test set", "source", "reference", "greedy", "beam",
                                    "exact"]))


PANELS = (("quality", quality_panel), ("speed", generation_speed.speed_panel),
          ("beam", generation_speed.beam_panel),
          ("examples", examples_panel))


# ---------------------------------------------------------------------------- decode speed


def generation_page(df: pd.DataFrame, decode: dict | None = None) -> Page:
    """Translation models (seq2seq): quality, decoding speed, beam against greedy, examples;
    one section per dataset (`generation`). With `decode` (the table `bench decode-speed`
    wrote), a last section compares our generate with Hugging Face's on the article's
    model, whatever the summary holds."""
    page = _generation_runs_page(df)
    if decode is not None:
        page.h2("The article's model: decode speed against Hugging Face")
        page.add(page_kit.safe("generation-decode-speed", "decode speed",
                               lambda: generation_decode.decode_speed_panel(
                          decode, "generation-decode-speed")))
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
                     f"({page_kit.status_line(gen)}); there is nothing to plot. The overview "
                     "lists "
                     "the failures and their messages.")
        return page
    keys = page_kit.Keys()
    for family, dataset in generation_rows.groups(df):
        page.h2(f"{family} on {dataset}")
        for name, build in PANELS:
            k = keys("generation", name, family, dataset)
            page.add(page_kit.safe(k, f"{family} on {dataset}: {name}",
                                   lambda b=build, f=family, d=dataset, k=k: b(df, f, d, k)))
    return page


def page(inputs) -> Page:
    """The page, as `bench.report.PAGES` builds it."""
    return generation_page(inputs.df, inputs.decode)
