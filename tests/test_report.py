"""The report stage on synthetic summary tables: pages, captions, CSVs, robustness.

`make_records` fabricates run records for a study plan (the real spec, parameter counts and
record layout, invented measurements with known trends), and `write_summary` aggregates them
exactly as the workflow does, so these tests read the same table format as the report rule.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bench import aggregate, report
from bench.config import check_config
from bench.report import pages as P
from bench.report import tables as T
from bench.report import tuning as TU
from bench.spec import RunSpec, param_count
from bench.study import plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def strict():
    """A panel that fails to build raises here, instead of showing its error on the page."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(P, "STRICT", True)
        yield


def study_specs(config: str = "config/smoke.yaml") -> list[RunSpec]:
    cfg = yaml.safe_load((ROOT / config).read_text())
    return plan(check_config(cfg, ROOT / "workflow/schemas/config.schema.yaml"))


def make_record(spec: RunSpec, status: str = "ok", seed_noise: float = 0.01) -> dict:
    """A run record with the train loop's fields and invented, size-driven measurements."""
    rng = np.random.default_rng([spec.seed, len(spec.run_id), spec.epochs])
    params = param_count(spec.family, spec.size, spec.dataset, spec.batchnorm)
    acc = float(np.clip(1 - 3.0 * params ** -0.3 + rng.normal(0, seed_noise)
                        + (0.02 if spec.optimizer == "adam" else 0.0), 0.05, 0.99))
    speed = 2e6 * params ** -0.5 * (1.5 if spec.framework == "tf" else 1.0)
    curve, t = [], 1.0
    for e in range(1, spec.epochs + 1):
        t += 0.5 + params / 2e5
        curve.append({"epoch": e, "step": e * 50, "train_loss": 2.0 / e, "val_loss": 2.1 / e,
                      "val_acc": acc * (1 - 0.5 ** e), "elapsed_s": t})
    rec = {"run_id": spec.run_id, **spec.to_dict(), "bench_version": "0.1.0",
           "hostname": "testhost", "cpu_model": "Test CPU", "cpu_count": 2,
           "load_avg_1m_start": 0.5, "python_version": "3.11.2", "platform": "Linux-test",
           "device": "cpu", "device_name": "Test CPU",
           "framework_version": "2.13.0" if spec.framework == "torch" else "2.20.0",
           "n_train": 3600, "n_val": 400, "n_test": 1000, "batch_size_effective": 64,
           "batch_regime": "mini-batch", "steps_per_epoch": 56, "flops_per_sample": 10 * params,
           "train_flops_per_sample": 30 * params, "status": status, "message": "",
           "wall_s": t + 0.5}
    if status == "ok":
        rec.update(params=params, epochs_run=spec.epochs, steps_run=50 * spec.epochs,
                   best_val_acc=curve[-1]["val_acc"], best_epoch=spec.epochs,
                   train_acc=acc + 0.02, val_acc=curve[-1]["val_acc"], test_acc=acc,
                   train_loss=0.5, val_loss=0.6, test_loss=0.6,
                   train_samples_per_s=speed * (1 + rng.normal(0, 0.02)),
                   infer_samples_per_s=3 * speed, step_ms_p50=1.0, step_ms_p95=2.0,
                   peak_rss_mb=300 + params / 1e3 * (1.2 if spec.framework == "tf" else 1.0),
                   peak_device_mem_mb=None, curve=curve)
    else:
        rec.update(params=params, message=f"{status}: synthetic failure", curve=curve[:1])
    return rec


def write_summary(records: list[dict], path: Path) -> Path:
    rows = [aggregate.flatten(r) for r in records]
    aggregate.write_table(rows, path.with_suffix(".csv"), path)
    return path


def smoke_records(statuses: dict | None = None) -> list[dict]:
    """The smoke study's runs, every one ok unless `statuses` maps (family, size) -> status."""
    statuses = statuses or {}
    return [make_record(s, statuses.get((s.family, s.size), "ok")) for s in study_specs()]


def write_tuning_study(tune_dir: Path, name: str = "cnn_adam", multi: bool = True) -> Path:
    """A study folder with pruned, failed and void trials.

    multi=True: the layout `bench.tune` exports (values_<metric> columns, durations in
    seconds, epochs trained, a `void` column, best.json naming metrics and directions);
    multi=False: Optuna's own `trials_dataframe()` layout (`value`, timedelta durations).
    """
    rng = np.random.default_rng(0)
    rows = []
    for n in range(16):
        lr = float(10 ** rng.uniform(-4, -1))
        drop = float(rng.uniform(0, 0.5))
        acc = 0.9 - 0.1 * abs(np.log10(lr) + 2.5) - 0.05 * drop + rng.normal(0, 0.005)
        speed = 5000.0 - 4000 * drop + rng.normal(0, 100)
        state = "PRUNED" if n % 4 == 3 else ("FAIL" if n == 5 else "COMPLETE")
        ok = state == "COMPLETE"
        row = {"number": n, "state": state, "params_lr": lr, "params_dropout": drop,
               "params_optimizer": ["adam", "sgd"][n % 2]}
        if multi:
            row.update(values_val_acc=acc if ok else np.nan,
                       values_train_samples_per_s=speed if ok else np.nan,
                       duration=3.0 if state == "PRUNED" else 10.0 + n,
                       user_attrs_epochs_trained=1 if state == "PRUNED" else 4,
                       void="")
        else:
            row.update(value=acc if ok else np.nan,
                       duration=pd.Timedelta(seconds=3.0 if state == "PRUNED" else 10.0 + n))
        rows.append(row)
    if multi:  # a lost trial the tuning stage reissued: bookkeeping, never shown
        rows.append({"number": 16, "state": "FAIL", "void": "lost", "duration": 1.0})
    d = tune_dir / name
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "trials.csv", index=False)
    if multi:
        best = {"metrics": ["val_acc", "train_samples_per_s"],
                "directions": ["maximize", "maximize"], "base": {"epochs": 4},
                "best_params": {"lr": 0.003, "dropout": 0.1, "optimizer": "adam"},
                "best_values": {"val_acc": 0.86, "train_samples_per_s": 4100.0}}
    else:
        best = {"direction": "maximize",
                "params": {"lr": 0.003, "dropout": 0.1, "optimizer": "adam"}}
    (d / "best.json").write_text(json.dumps(best))
    return d


def build(tmp_path: Path, records: list[dict], tune: bool = False) -> Path:
    summary = write_summary(records, tmp_path / "results" / "summary.parquet")
    tune_dir = tmp_path / "results" / "tune"
    if tune:
        write_tuning_study(tune_dir)
        write_tuning_study(tune_dir, "gru_single", multi=False)
    out = tmp_path / "reports"
    report.build_report(summary, out, tune_dir if tune else None)
    return out


def pages_text(out: Path) -> dict[str, str]:
    return {f: (out / f).read_text() for f in report.PAGE_FILES}


def visible_text(page: str) -> str:
    """The page's text outside <script> and tags, entities decoded."""
    page = re.sub(r"<script>.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# ---------------------------------------------------------------------------- full report


def tuned_records(recs: list[dict]) -> list[dict]:
    """Final runs of study cnn_adam: cnn xs adam+none again, with a distinctive accuracy."""
    return [dict(r, tuned="cnn_adam", run_id=r["run_id"] + "-tuned", lr=0.0123, test_acc=0.99)
            for r in recs if r["family"] == "cnn" and r["size"] == "xs"
            and r["optimizer"] == "adam" and r["regulariser"] == "none"]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The smoke study's runs, the final runs of a study and two tuning studies, rendered."""
    tmp = tmp_path_factory.mktemp("full")
    recs = smoke_records()
    return build(tmp, recs + tuned_records(recs), tune=True)


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
    assert texts["scale.html"].count("plotly-graph-div") == 2  # cnn and gru on mnist1d
    assert texts["sweep.html"].count("plotly-graph-div") == 4
    assert texts["frameworks.html"].count("plotly-graph-div") == 2
    assert texts["curves.html"].count("plotly-graph-div") == 2
    assert texts["tuning.html"].count("plotly-graph-div") == 5  # 2 histories, 2 imp., 1 front


def test_captions_are_computed_from_the_data(full, tmp_path):
    out = full
    scale = visible_text((out / "scale.html").read_text())
    # synthetic TF throughput is 1.5x PyTorch's at every size
    assert re.search(r"TensorFlow is 1\.[45]\d*x faster than PyTorch", scale)
    fw = visible_text((out / "frameworks.html").read_text())
    assert re.search(r"TensorFlow is 1\.[45]\d*x faster than PyTorch for (cnn|gru) at size", fw)
    index = visible_text((out / "index.html").read_text())
    assert "Headline findings" in index
    assert re.search(r"Scale: growing (cnn|gru) from xs", index)
    assert "adam + " in index  # the synthetic adam bonus makes adam win the sweeps
    # a different table gives different captions (nothing hard-coded)
    recs = smoke_records()
    for r in recs:
        if r["framework"] == "torch" and r.get("train_samples_per_s"):
            r["train_samples_per_s"] *= 3.0
    out2 = build(tmp_path, recs)
    fw2 = visible_text((out2 / "frameworks.html").read_text())
    assert re.search(r"PyTorch is (1\.9\d|2\.0\d)x faster than TensorFlow", fw2)


def _figures(page) -> list:
    return [p for p in page.panels if p.fig is not None]


def _assert_same(csv: list, plotted: list, what: str) -> None:
    assert len(csv) == len(plotted), what
    if all(isinstance(v, (int, float, np.number)) for v in plotted):
        np.testing.assert_allclose(np.asarray(csv, float), np.asarray(plotted, float),
                                   rtol=1e-12, err_msg=what)
    else:
        assert [str(v) for v in csv] == [html.unescape(str(v)) for v in plotted], what


def test_csv_rows_are_exactly_the_plotted_points(tmp_path):
    df = T.load_summary(write_summary(smoke_records(), tmp_path / "s.parquet"))
    studies = [TU.load_study(write_tuning_study(tmp_path / "tune"))]
    n_checked = 0
    for page in report.build_pages(df, studies):
        for panel in _figures(page):
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
                for axis in ("x", "y"):
                    got = getattr(trace, axis)
                    if got is None or (trace.type == "box" and axis == "x"):
                        continue
                    _assert_same(list(rows[axis]), list(got), f"{panel.key} {trace.meta}")
                n_checked += 1
    assert n_checked > 40


def test_written_csvs_match_the_panels(full):
    out = full
    df = T.load_summary(out.parent / "results" / "summary.parquet")
    studies = TU.find_studies(out.parent / "results" / "tune")
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


def test_empty_table_renders_messages(tmp_path):
    out = build(tmp_path, [])
    texts = pages_text(out)
    assert "holds no runs" in texts["scale.html"]
    assert "holds no runs" in texts["index.html"] or "no scale trend" in texts["index.html"]
    assert "No tuning studies in this study" in texts["tuning.html"]
    for text in texts.values():
        assert "could not be built" not in text


def test_every_run_failed(tmp_path):
    specs = study_specs()
    recs = [make_record(s, ["diverged", "oom", "error"][i % 3]) for i, s in enumerate(specs)]
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
    recs = [r for r in smoke_records() if r["seed"] == 0]
    out = build(tmp_path, recs)
    scale = visible_text((out / "scale.html").read_text())
    assert "One seed per point: no interval." in scale
    sweep = visible_text((out / "sweep.html").read_text())
    assert "(1 seed)" in (out / "sweep.html").read_text() or "1 seed" in sweep


def test_one_family_missing_and_one_framework_only(tmp_path):
    recs = [r for r in smoke_records() if r["family"] == "cnn" and r["framework"] == "tf"]
    out = build(tmp_path, recs)
    texts = pages_text(out)
    assert texts["scale.html"].count("plotly-graph-div") == 1
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
    assert "Left out (not ok): oom" in scale
    # gru is left with one size: the fit cannot hold and the caption says why
    assert "No power law (only 1 size" in scale


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
    df = T.load_summary(write_summary(smoke_records(), tmp_path / "s.parquet"))
    recipe, rows = T.scale_selection(df, "cnn", "mnist1d")
    assert recipe[:2] == ("adam", "none") and set(rows["size"]) == {"xs", "s"}
    size, rows = T.sweep_selection(df, "cnn", "mnist1d")
    assert size == "xs"
    assert rows[["optimizer", "regulariser"]].drop_duplicates().shape[0] == 4


def test_time_to_target_from_the_curve():
    row = {"curve": json.dumps([{"epoch": 1, "elapsed_s": 2.0, "val_acc": 0.5},
                                {"epoch": 2, "elapsed_s": 4.0, "val_acc": 0.8},
                                {"epoch": 3, "elapsed_s": 6.0, "val_acc": 0.9}]),
           "best_val_acc": 0.9}
    assert T.time_to(row, 0.75) == 4.0
    assert T.time_to(row, 0.5) == 2.0
    assert math.isinf(T.time_to(row, 0.95))
    assert math.isinf(T.time_to({"curve": "", "best_val_acc": math.nan}, 0.1))


def test_tuning_study_parts(tmp_path):
    st = TU.load_study(write_tuning_study(tmp_path))
    assert not st.problem
    assert st.objectives == ["values_val_acc", "values_train_samples_per_s"]
    assert st.directions == ["maximize", "maximize"]
    s = TU.pruning_savings(st)
    assert s["pruned"] == 4 and s["failed"] == 1 and s["trials"] == 16  # the void one dropped
    # pruned trials ran 3 s where a completed one took a median of 17 s ...
    done = [10.0 + n for n in range(16) if n % 4 != 3 and n != 5]
    assert s["saved_s"] == pytest.approx(4 * (np.median(done) - 3.0))
    # ... and 1 epoch of a budget of 4
    assert s["epochs_saved"] == 4 * 3 and s["epochs_budget"] == 4
    single = TU.load_study(write_tuning_study(tmp_path, "single", multi=False))
    assert single.objectives == ["value"] and single.directions == ["maximize"]
    assert TU.pruning_savings(single)["saved_s"] == pytest.approx(s["saved_s"])
    m = TU.pareto_mask(np.array([[0.9, 5], [0.8, 4], [0.7, 6], [0.9, 4]]),
                       ["maximize", "minimize"])
    assert m.tolist() == [False, False, False, True]


def test_tuning_study_without_table_is_explained(tmp_path):
    (tmp_path / "tune" / "half").mkdir(parents=True)
    write_tuning_study(tmp_path / "tune", "stale")
    df = T.load_summary(write_summary(smoke_records()[:4], tmp_path / "s.parquet"))
    page = P.tuning_page(df, TU.find_studies(tmp_path / "tune", ["half", "gone"]))
    text = "".join(map(str, page.blocks))
    assert "no trials table" in text and "gone cannot be shown: its folder does not exist" in text
    assert "stale" not in text  # a study the workflow no longer names is not shown


def test_tuned_runs_stay_on_the_tuning_page(full):
    out = full
    for csv in (out / "data").glob("scale-*.csv"):
        assert not (pd.read_csv(csv)["y"] == 0.99).any()
    tuning = visible_text((out / "tuning.html").read_text())
    assert re.search(r"PyTorch\s+cnn\s+mnist1d\s+xs\s+2 of 2\s+0\.990", tuning)
    assert "Pruning stopped 4 of 16 trials early. In epochs: 52 trained, 12 not" in tuning
