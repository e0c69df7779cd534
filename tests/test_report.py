"""The report as a whole on synthetic summary tables (tests/report_data.py): every page,
captions computed from the data, CSVs equal to the plotted points, robustness to empty,
failed and partial tables, the page registry and the `report` verb. Each page's own rules
are tested in tests/test_report_<page>.py."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_data import (
    FAMILIES,
    LR_GRID,
    SIZES,
    _study,
    assert_same,
    build,
    figures,
    frame,
    make_record,
    pages_text,
    seq2seq_records,
    smoke_records,
    spec,
    visible_text,
    write_summary,
    write_tuning_study,
)

from bench import report
from bench.report import scale, settings, sweep, tables, tuning_studies

pytestmark = pytest.mark.usefixtures("strict")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- full report


def test_full_report_has_every_page_figure_caption_and_csv(full):
    out = full
    texts = pages_text(out)
    assert set(texts) == set(report.PAGE_FILES)
    for name, text in texts.items():
        # plotly.js inlined exactly once per page with figures; no remote references
        assert text.count("Plotly.newPlot") == 0 or text.count("plotly.js v") == 1, name
        ours = re.sub(r"<script>/\*\*\s*\n?\s*\* plotly\.js.*?</script>", "", text, flags=re.S)
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", ours), name
        for f in report.PAGE_FILES:  # every page links every page
            assert f'href="{f}"' in text
    # every figure div has a caption and a CSV link that exists
    for name, text in texts.items():
        for sec in re.findall(r'<section class="panel".*?</section>', text, flags=re.S):
            assert '<p class="caption">' in sec or 'class="empty"' in sec, (name, sec[:200])
            if "plotly-graph-div" in sec:
                csv = re.search(r'href="(data/[^"]+\.csv)"', sec)
                assert csv and (out / csv.group(1)).is_file(), (name, sec[:200])
    # cnn and gru on mnist1d: scale, learning-rate grid, accuracy against compute
    # plus the tuned-against-untuned figure of cnn (study cnn_adam at xs)
    assert texts["scale.html"].count("plotly-graph-div") == 7
    assert texts["sweep.html"].count("plotly-graph-div") == 4
    assert texts["frameworks.html"].count("plotly-graph-div") == 2
    assert texts["curves.html"].count("plotly-graph-div") == 2
    # Optuna's figures: history, importances, parallel coordinates, slice for each study,
    # and the Pareto front of the multi-objective one
    assert texts["tuning.html"].count("plotly-graph-div") == 9


def test_captions_are_computed_from_the_data(full, tmp_path):
    out = full
    scale = visible_text((out / "scale.html").read_text())
    # synthetic TF throughput is 1.5x PyTorch's at every size
    assert re.search(r"TensorFlow is 1\.[45]\d*x faster than PyTorch", scale)
    fw = visible_text((out / "frameworks.html").read_text())
    assert re.search(r"as run \(both uncompiled\).*largest gap (cnn|gru) at size \w+: TensorFlow "
                     r"is 1\.[45]\d*x faster than PyTorch \(95% CI 1\.\d\d-1\.\d\dx\)", fw)
    index = visible_text((out / "index.html").read_text())
    assert "Headline findings" in index
    # the synthetic accuracy grows with size far beyond its seed noise: a stated winner
    assert re.search(r"cnn on mnist1d \(pooled, 12 runs\): m \(18\.7k params\) beats xs "
                     r"\(1\.33k params\) by \+0\.\d+ \(95% CI \[\+0\.\d+, \+0\.\d+\]\)", index)
    assert "adam + " in index  # the synthetic adam bonus makes adam win the sweeps
    # a different table gives different captions (nothing hard-coded)
    recs = smoke_records()
    for r in recs:
        if r["framework"] == "torch" and r.get("train_samples_per_s"):
            r["train_samples_per_s"] *= 3.0
    out2 = build(tmp_path, recs)
    fw2 = visible_text((out2 / "frameworks.html").read_text())
    assert re.search(r"PyTorch is (1\.9\d|2\.0\d)x faster than TensorFlow", fw2)




def test_csv_rows_are_exactly_the_plotted_points(tmp_path):
    df = tables.load_summary(write_summary(smoke_records(), tmp_path / "s.parquet"))
    studies = [tuning_studies.load_study(write_tuning_study(tmp_path / "tune"))]
    n_checked = 0
    for page in report.build_pages(df, studies):
        for panel in figures(page):
            data = panel.data
            for trace in panel.fig.data:
                rows = data[data["trace"] == trace.meta]
                assert len(rows), (panel.key, trace.meta)
                if trace.type == "heatmap":
                    z = np.array(trace.z, dtype=float).ravel()
                    assert len(rows) == len(z)
                    np.testing.assert_allclose(rows["z"].to_numpy(float), z, equal_nan=True)
                    assert [html.unescape(x) for x in trace.x] == list(dict.fromkeys(rows["x"]))
                    continue
                if trace.type == "parcoords":  # Optuna's parallel coordinates
                    for dim in trace.dimensions:
                        assert_same(list(rows[dim.label]), list(dim.values), panel.key)
                    n_checked += 1
                    continue
                for axis in ("x", "y"):
                    got = getattr(trace, axis)
                    if got is None or (trace.type == "box" and axis == "x"):
                        continue
                    assert_same(list(rows[axis]), list(got), f"{panel.key} {trace.meta}")
                n_checked += 1
    assert n_checked > 40


def test_written_csvs_match_the_panels(full):
    out = full
    df = tables.load_summary(out.parent / "results" / "summary.parquet")
    studies = tuning_studies.find_studies(out.parent / "results" / "tune")
    for page in report.build_pages(df, studies):
        for panel in page.panels:
            if panel.data is None:
                continue
            disk = pd.read_csv(out / panel.csv_name)
            assert len(disk) == len(panel.data), panel.key
            assert list(disk.columns) == [str(c) for c in panel.data.columns]
            if "y" in disk and pd.api.types.is_numeric_dtype(disk["y"]):
                np.testing.assert_allclose(disk["y"], panel.data["y"].astype(float), rtol=1e-9)


# ---------------------------------------------------------------------------- robustness


def test_each_page_is_built_by_the_module_its_registry_entry_names(tmp_path):
    """PAGES is the one list: every entry's module builds a page with that entry's file and
    title (the navigation bar reads the same entry), in the registry's order."""
    import importlib

    from bench.report.html import render_page

    df = frame(smoke_records(), tmp_path)
    built = report.build_pages(df, [])
    assert [p.file for p in built] == list(report.PAGE_FILES)
    for info, page in zip(report.PAGES, built, strict=True):
        module = importlib.import_module(f"bench.report.{info.module}")
        assert module.page(report.Inputs(df)).file == info.file
        current = (f'<a href="{info.file}" class="here" aria-current="page">'
                   f"{html.escape(info.title)}</a>")
        assert current in render_page(page, "") and page.blocks


def test_empty_table_renders_messages(tmp_path):
    out = build(tmp_path, [])
    texts = pages_text(out)
    assert "holds no runs" in texts["scale.html"]
    assert "holds no runs" in texts["index.html"] or "no scale trend" in texts["index.html"]
    assert "No tuning studies in this study" in texts["tuning.html"]
    for text in texts.values():
        assert "could not be built" not in text


def test_every_run_failed(tmp_path):
    recs = smoke_records({(f, size): ["diverged", "oom", "error"][i]
                          for f in FAMILIES for i, size in enumerate(SIZES)})
    out = build(tmp_path, recs)
    texts = pages_text(out)
    index = visible_text(texts["index.html"])
    for status in ("diverged", "oom", "error"):
        assert re.search(rf"\b{status} \d+", index)
    assert "synthetic failure" in index  # the messages are listed
    assert "finished with status ok" in texts["scale.html"]
    assert "finished with status ok" in texts["sweep.html"]
    assert "no scale trend" in index and "cannot be compared" in index


def test_one_seed_only_has_no_interval_but_renders(tmp_path):
    recs = [r for r in smoke_records() if r["seed"] in (0, 1000)]
    out = build(tmp_path, recs)
    scale = visible_text((out / "scale.html").read_text())
    # two pooled runs are still too few for an interval
    assert "Fewer than 3 seeds per point: no interval" in scale
    recs3 = [r for r in smoke_records() if r["seed"] in (0, 1000, 1001)]
    scale3 = visible_text((build(tmp_path / "three", recs3) / "scale.html").read_text())
    assert ("Fewer than 3 seeds per framework and size: no interval on the framework lines; "
            "the pooled points hold 3 runs.") in scale3
    out = build(tmp_path / "torch", [r for r in recs if r["framework"] == "torch"])
    scale = visible_text((out / "scale.html").read_text())
    assert "Fewer than 3 seeds per point: no interval" in scale
    sweep = visible_text((out / "sweep.html").read_text())
    assert "(1 seed)" in (out / "sweep.html").read_text() or "1 seed" in sweep


def test_one_family_missing_and_one_framework_only(tmp_path):
    recs = [r for r in smoke_records() if r["family"] == "cnn" and r["framework"] == "tf"]
    out = build(tmp_path, recs)
    texts = pages_text(out)
    assert texts["scale.html"].count("plotly-graph-div") == 2  # scale and compute, no grid
    fw = visible_text(texts["frameworks.html"])
    assert "needs successful runs in both frameworks" in fw


def test_a_family_present_only_as_tuned_runs_does_not_break_the_pages(tmp_path):
    """A study of one family whose tuning study is another family (seen in a real run)."""
    recs = smoke_records()
    main = [r for r in recs if r["family"] == "cnn" and r["framework"] == "torch"]
    tuned = [dict(r, tuned="gru_study", run_id=r["run_id"] + "-tuned")
             for r in recs if r["family"] == "gru"][:2]
    out = build(tmp_path, main + tuned)
    assert "plotly-graph-div" in pages_text(out)["scale.html"]


def test_partial_failures_are_named_in_captions(tmp_path):
    out = build(tmp_path, smoke_records({("gru", "s"): "oom"}))
    scale = visible_text((out / "scale.html").read_text())
    # every gru s run failed: accuracy counts them at chance, throughput and memory drop them
    assert "6 of 18 runs failed (counted at chance accuracy)" in scale
    assert "6 of 18 runs failed (excluded)" in scale
    # throughput is left with two sizes: the fit cannot hold and the caption says why
    assert "No power law (only 2 sizes, need at least 3)" in scale
    pts = pd.read_csv(out / "data" / "scale-gru-mnist1d.csv")
    at_s = pts[(pts["trace"] == "pooled accuracy") & (pts["size"] == "s")].iloc[0]
    assert at_s["y"] == pytest.approx(0.1) and at_s["n_failed"] == 6 and at_s["n_seeds"] == 6
    assert not ((pts["metric"] == "train_samples_per_s") & (pts["size"] == "s")).any()


def test_script_in_labels_is_shown_as_text(tmp_path):
    bad = "<script>alert(1)</script>"
    recs = smoke_records()
    for r in recs:
        if r["regulariser"] == "dropout":
            r["regulariser"] = bad
        r["hostname"] = bad
    recs[0]["status"], recs[0]["message"] = "error", f"boom {bad}"
    out = build(tmp_path, recs)
    for name, text in pages_text(out).items():
        # no injected element: every <script> on the page is one of ours
        assert "<script>alert" not in text, name
        scripts = re.findall(r"<script[^>]*>", text)
        assert all(s == "<script>" or s == '<script type="text/javascript">' for s in scripts)
    index = (out / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert bad in visible_text(index)


def test_cli_verb_and_missing_summary(tmp_path, bench_cmd, repo_root):
    import subprocess

    summary = write_summary(smoke_records()[:6], tmp_path / "summary.parquet")
    p = subprocess.run([*bench_cmd, "report", "--summary", str(summary), "--out",
                        str(tmp_path / "r"), "--tune-dir", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "r" / "index.html").is_file()
    p = subprocess.run([*bench_cmd, "report", "--summary", str(tmp_path / "nope.parquet"),
                        "--out", str(tmp_path / "r2")], capture_output=True, text=True,
                       cwd=repo_root, timeout=120)
    assert p.returncode == 2 and "not found" in p.stderr


# ---------------------------------------------------------------------------- parts


def test_selection_rules_pick_the_scale_recipe_and_the_sweep_size(tmp_path):
    df = tables.load_summary(write_summary(smoke_records(), tmp_path / "s.parquet"))
    recipe, rows = tables.scale_selection(df, "cnn", "mnist1d")
    assert recipe[:3] == ("adam", "none", tables.LR_CHOSEN) and set(rows["size"]) == set(SIZES)
    assert set(rows["lr_role"]) == {"chosen"} and rows["lr"].nunique() > 1  # one lr per size
    assert tables.recipe_label(recipe) == "adam + none, lr chosen per size on validation"
    size, rows = tables.sweep_selection(df, "cnn", "mnist1d")
    assert size == "xs"
    assert rows[["optimizer", "regulariser"]].drop_duplicates().shape[0] == 4


# ---------------------------------------------------------------------------- what enters


def test_failed_runs_count_at_chance_accuracy_and_are_named(tmp_path):
    recs = smoke_records()
    victim = _study(recs, family="cnn", framework="torch", size="s", seed=1,
                    regulariser="none")[0]
    failed = make_record(spec("cnn", "torch", "s", seed=1, lr=victim["lr"]), "diverged",
                         lr_role="chosen", grid_size=len(LR_GRID))
    del failed["n_classes"]  # not recorded: chance falls back to 1/10
    recs[recs.index(victim)] = failed
    df = frame(recs, tmp_path)
    _, rows = tables.scale_selection(df, "cnn", "mnist1d")
    others = [r["test_acc"] for r in _study(recs, family="cnn", framework="torch", size="s",
                                            regulariser="none") if r["status"] == "ok"]
    pts = tables.scale_points(rows, "test_acc")
    at = pts[(pts["framework"] == "torch") & (pts["size"] == "s")].iloc[0]
    assert len(others) == 2 and at["n_seeds"] == 3 and at["n_failed"] == 1
    assert at["mean"] == pytest.approx((sum(others) + 0.1) / 3)
    thr = tables.scale_points(rows, "train_samples_per_s")
    assert thr[(thr["framework"] == "torch") & (thr["size"] == "s")].iloc[0]["n_seeds"] == 2
    panel = scale.scale_panel(df, "cnn", "mnist1d", "k")
    trace = next(t for t in panel.fig.data if t.meta == "torch accuracy")
    hover = [c[1] for c in trace.customdata]
    assert hover[list(trace.x).index(at["params"])].endswith(
        "1 of 3 runs failed (counted at chance accuracy)")
    assert "1 of 18 runs failed (counted at chance accuracy)" in panel.caption
    assert "1 of 18 runs failed (excluded)" in panel.caption
    # an explicit class count sets chance
    oom = tables.normalise(pd.DataFrame([{"status": "oom", "n_classes": 4}]))
    assert oom["acc_stat"][0] == 0.25


def test_accuracy_is_pooled_only_where_the_seeds_are_disjoint(tmp_path):
    recs = smoke_records()
    df = frame(recs, tmp_path)
    _, rows = tables.scale_selection(df, "cnn", "mnist1d")
    pts = tables.scale_points(rows, "test_acc")
    pooled = pts[pts["framework"] == tables.POOLED]
    assert list(pooled["size"]) == list(SIZES) and (pooled["n_seeds"] == 6).all()
    m = [r["test_acc"] for r in _study(recs, family="cnn", size="m")]
    assert pooled.iloc[-1]["mean"] == pytest.approx(np.mean(m))
    assert tables.POOLED not in set(tables.scale_points(rows, "train_samples_per_s")["framework"])
    assert "pooled over the frameworks (the black line), whose seeds are disjoint" in (
        scale.scale_panel(df, "cnn", "mnist1d", "k").caption)
    # TensorFlow on PyTorch's seeds: the runs are not independent, nothing is pooled
    same = [dict(r, seed=r["seed"] - 1000) if r["framework"] == "tf" else r for r in recs]
    df2 = frame(same, tmp_path, "same.parquet")
    _, rows2 = tables.scale_selection(df2, "cnn", "mnist1d")
    assert tables.POOLED not in set(tables.scale_points(rows2, "test_acc")["framework"])
    assert "Accuracy is not pooled over the frameworks: they share seeds" in (
        scale.scale_panel(df2, "cnn", "mnist1d", "k").caption)
    cells = sweep.sweep_cells(tables.sweep_selection(df2, "cnn", "mnist1d")[1], math.nan)
    assert tables.POOLED not in set(cells["framework"])
    # overlap at one size only: pooled at the other two
    part = [dict(r, seed=r["seed"] - 1000) if r["framework"] == "tf" and r["size"] == "m"
            else r for r in recs]
    df3 = frame(part, tmp_path, "part.parquet")
    _, rows3 = tables.scale_selection(df3, "cnn", "mnist1d")
    pts3 = tables.scale_points(rows3, "test_acc")
    assert list(pts3.loc[pts3["framework"] == tables.POOLED, "size"]) == ["xs", "s"]
    assert "at 2 of 3 sizes (xs, s)" in scale.scale_panel(df3, "cnn", "mnist1d", "k").caption


# ---------------------------------------------------------------------------- generation



def test_intervals_stay_inside_the_metric_range_on_every_page(tmp_path):
    """Exact match on test_long near 0 and accuracies near 1: no interval leaves its range."""
    recs = seq2seq_records(failed=None)
    for r in recs:
        r["exact_match_long"] = 0.03 if r["seed"] % 1000 == 2 else 0.0
    cnn = [dict(r, test_acc=min(0.999, r["test_acc"] + 0.3)) if r.get("test_acc") else r
           for r in smoke_records() if r["family"] == "cnn"]
    df = frame(cnn + recs, tmp_path)
    checked = 0
    for page in report.build_pages(df, []):
        for panel in page.panels:
            d = panel.data
            if d is None or not {"metric", "ci_lo", "ci_hi"} <= set(d.columns):
                continue
            for metric, part in d.groupby("metric"):
                bounds = tables.metric_range(str(metric))
                if bounds is None:
                    continue
                lo, hi = part["ci_lo"].dropna(), part["ci_hi"].dropna()
                assert (lo >= bounds[0]).all() and (hi <= bounds[1]).all(), (panel.key, metric)
                checked += len(lo)
    assert checked > 20
    long_em = tables.scale_points(df[df["family"] == "seq2seq"], "exact_match_long")
    assert (long_em["ci_lo"] == 0.0).any()  # the unclipped interval would reach below 0


def test_runs_of_another_precision_or_device_get_their_own_report(tmp_path):
    recs = smoke_records()
    out = build(tmp_path / "one", recs)
    assert not (out / report.SETTINGS_DIR).exists()
    assert f"All {len(recs)} runs: cpu (Test CPU), fp32, 1 thread." in visible_text(
        (out / "index.html").read_text())
    # a few of the same runs again in bf16 on a GPU: never drawn beside the CPU fp32 ones
    other = [dict(r, run_id=r["run_id"] + "-bf16", precision="bf16", device="cuda",
                  device_name="NVIDIA H200") for r in recs[:6]]
    out = build(tmp_path / "two", recs + other)
    index = visible_text((out / "index.html").read_text())
    assert "Benchmark overview" in index and f"({len(recs)} runs)" in index
    assert "cuda (NVIDIA H200), bf16, 1 thread, no TF32" in index
    sub = out / report.SETTINGS_DIR / "1"
    sub_index = visible_text((sub / "index.html").read_text())
    assert f"({len(other)} runs)" in sub_index and (sub / "frameworks.html").is_file()
    assert 'href="../../index.html"' in (sub / "index.html").read_text()
    # a run that failed before measuring (no device name, device as requested) stays with
    # the runs of its setting
    error = dict(recs[0], run_id="crashed", status="error", device="auto", device_name=None,
                 message="RuntimeError: boom")
    parts = settings.split_by_setting(tables.normalise(pd.DataFrame(recs + [error])))
    assert len(parts) == 1 and "crashed" in set(parts[0][1]["run_id"])
    # a rebuild with one setting again leaves no stale sub-report behind
    report.build_report(tmp_path / "one" / "results" / "summary.parquet", out)
    assert not (out / report.SETTINGS_DIR).exists()
