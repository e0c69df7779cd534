"""The report stage on synthetic summary tables: pages, captions, CSVs, robustness.

`smoke_records` fabricates the run records of a small study with the engine's record layout
(the real spec and parameter counts, invented measurements with known trends): two families,
both frameworks on disjoint seeds (PyTorch 0-2, TensorFlow 1000-1002), three sizes whose
learning rate is chosen on a validation grid (at seed 0 in PyTorch), and an optimizer x
regulariser sweep at size xs. `write_summary` aggregates them exactly as the workflow does,
so these tests read the same table format as the report rule.
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

from bench import aggregate, report, stats
from bench.report import (
    curve_data,
    generation,
    overview,
    page_kit,
    scale,
    scale_budget,
    settings,
    sweep,
    tables,
    tuning,
    tuning_optuna,
    tuning_studies,
)
from bench.sizes import param_count
from bench.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = ("cnn", "gru")
SEEDS = {"torch": (0, 1, 2), "tf": (1000, 1001, 1002)}
SIZES = ("xs", "s", "m")
SWEEP_SIZE = "xs"
OPTIMIZERS = {"adam": 0.003, "sgd": 0.1}  # configured rates; adam's is chosen per size
LR_GRID = (0.001, 0.003, 0.01, 0.03)
BEST_LR = {"xs": 0.01, "s": 0.003, "m": 0.003}  # where the synthetic adam accuracy peaks
EPOCHS = 8
STEPS_PER_EPOCH, BATCH = 56, 64


@pytest.fixture(autouse=True, scope="module")
def strict():
    """A panel that fails to build raises here, instead of showing its error on the page."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(page_kit, "STRICT", True)
        yield


def spec(family: str, framework: str, size: str, optimizer: str = "adam",
         regulariser: str = "none", seed: int = 0, lr: float | None = None) -> RunSpec:
    return RunSpec.create(family=family, framework=framework, dataset="mnist1d", size=size,
                          optimizer=optimizer, regulariser=regulariser, seed=seed,
                          lr=OPTIMIZERS[optimizer] if lr is None else lr, epochs=EPOCHS,
                          batch_size=BATCH)


def true_acc(s: RunSpec, params: int) -> float:
    """Synthetic final accuracy: grows with size, adam +0.02, adam peaks at BEST_LR."""
    acc = 1 - 3.0 * params ** -0.3 + (0.02 if s.optimizer == "adam" else 0.0)
    if s.optimizer == "adam":
        acc -= 0.08 * math.log10(s.lr / BEST_LR[s.size]) ** 2
    return acc


def make_record(s: RunSpec, status: str = "ok", seed_noise: float = 0.01, lr_role: str = "",
                grid_size: int = 0) -> dict:
    """A run record with the train loop's fields and invented, size-driven measurements.

    Validation accuracy rises as 1 - exp(-rate x epoch), faster at a higher learning rate;
    sizes xs and s stop at a plateau after 6 epochs, m runs to its cap of 8 still improving.
    """
    rng = np.random.default_rng([s.seed, len(s.run_id), s.epochs, int(s.lr * 1e6)])
    params = param_count(s.family, s.size, s.dataset, s.batchnorm)
    acc = float(np.clip(true_acc(s, params) + rng.normal(0, seed_noise), 0.05, 0.99))
    speed = 2e6 * params ** -0.5 * (1.5 if s.framework == "tf" else 1.0)
    rate = 0.6 * (s.lr / OPTIMIZERS[s.optimizer]) ** 0.5
    epochs = s.epochs if s.size == "m" else min(6, s.epochs)
    fps = 30 * params
    curve, t = [], 1.0
    for e in range(1, epochs + 1):
        t += 0.5 + params / 2e5
        curve.append({"epoch": e, "step": e * STEPS_PER_EPOCH,
                      "samples": e * STEPS_PER_EPOCH * BATCH, "train_loss": 2.0 / e,
                      "val_loss": 2.1 / e, "val_acc": acc * (1 - math.exp(-rate * e)),
                      "elapsed_s": t})
    rec = {"run_id": s.run_id, **s.to_dict(), "bench_version": "0.1.0",
           "hostname": "testhost", "cpu_model": "Test CPU", "cpu_count": 2,
           "load_avg_1m_start": 0.5, "python_version": "3.11.2", "platform": "Linux-test",
           "device": "cpu", "device_name": "Test CPU",
           "framework_version": "2.13.0" if s.framework == "torch" else "2.20.0",
           "n_train": 3600, "n_val": 400, "n_test": 1000, "n_classes": 10,
           "batch_size_effective": BATCH, "batch_regime": "mini-batch",
           "steps_per_epoch": STEPS_PER_EPOCH, "flops_per_sample": 10 * params,
           "train_flops_per_sample": fps,
           "model_mem_est_mb": 2e-5 * params, "lr_role": lr_role, "lr_grid_size": grid_size,
           "rss_start_mb": (350.0 if s.framework == "torch" else 600.0) + rng.normal(0, 5),
           "status": status, "message": "", "wall_s": t + 0.5}
    if status == "ok":
        best = max(p["val_acc"] for p in curve)
        rec.update(params=params, epochs_run=epochs, steps_run=STEPS_PER_EPOCH * epochs,
                   best_val_acc=best, best_epoch=epochs, converged=epochs < s.epochs,
                   stop_reason="plateau" if epochs < s.epochs else "cap",
                   flops_spent=fps * curve[-1]["samples"],
                   train_acc=acc + 0.02, val_acc=best, test_acc=acc,
                   train_loss=0.5, val_loss=0.6, test_loss=0.6,
                   train_samples_per_s=speed * (1 + rng.normal(0, 0.02)),
                   infer_samples_per_s=3 * speed, block_step_ms_median=1.0, block_step_ms_max=2.0,
                   peak_rss_mb=300 + params / 1e3 * (1.2 if s.framework == "tf" else 1.0),
                   model_mem_mb=3e-5 * params ** 0.95 * (1.2 if s.framework == "tf" else 1.0)
                   * (1 + rng.normal(0, 0.02)),
                   peak_device_mem_mb=None, curve=curve)
    else:
        rec.update(params=params, message=f"{status}: synthetic failure", curve=curve[:1],
                   flops_spent=fps * curve[0]["samples"])
    return rec


def _chosen(grid: list[dict]) -> float:
    """The grid's winner as the engine picks it: best validation accuracy, failures last,
    ties to the smaller rate."""
    def score(r):
        ok = r["status"] == "ok"
        return (r["best_val_acc"] if ok else -math.inf, -r["lr"])
    return max(grid, key=score)["lr"]


def smoke_records(statuses: dict | None = None) -> list[dict]:
    """The synthetic study's runs, every one ok unless `statuses` maps (family, size) ->
    status (applied to every run of that family and size, the grid's too)."""
    statuses = statuses or {}
    out: dict[str, dict] = {}

    def add(s: RunSpec, role: str = "", k: int = 0) -> None:
        out.setdefault(s.run_id, make_record(s, statuses.get((s.family, s.size), "ok"),
                                             lr_role=role, grid_size=k))

    for fam in FAMILIES:
        chosen = {}
        for size in SIZES:  # the learning-rate grid: adam + none, seed 0, PyTorch
            grid = [make_record(spec(fam, "torch", size, lr=lr),
                                statuses.get((fam, size), "ok")) for lr in LR_GRID]
            chosen[size] = _chosen(grid)
            for lr in LR_GRID:
                if lr != chosen[size]:
                    add(spec(fam, "torch", size, lr=lr), "grid", len(LR_GRID))
        for fw, seeds in SEEDS.items():
            for size in SIZES:
                for seed in seeds:
                    add(spec(fam, fw, size, seed=seed, lr=chosen[size]), "chosen",
                        len(LR_GRID))
            for opt in OPTIMIZERS:
                for reg in ("none", "dropout"):
                    for seed in seeds:
                        if opt == "adam":  # adam's rate at xs was chosen; sgd's configured
                            add(spec(fam, fw, SWEEP_SIZE, opt, reg, seed, chosen[SWEEP_SIZE]),
                                "chosen", len(LR_GRID))
                        else:
                            add(spec(fam, fw, SWEEP_SIZE, opt, reg, seed))
    return list(out.values())


def write_summary(records: list[dict], path: Path) -> Path:
    rows = [aggregate.flatten(r) for r in records]
    aggregate.write_table(rows, path.with_suffix(".csv"), path)
    return path


def frame(records: list[dict], tmp_path: Path, name: str = "s.parquet") -> pd.DataFrame:
    """The normalised summary table of `records`, through parquet as the report reads it."""
    return tables.load_summary(write_summary(records, tmp_path / name))


CNN_XS = {"family": "cnn", "framework": "torch", "dataset": "mnist1d", "size": "xs"}


def write_tuning_study(tune_dir: Path, name: str = "cnn_adam", multi: bool = True,
                       cell: dict | None = CNN_XS) -> Path:
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
        best = {"metrics": ["val_acc", "train_samples_per_s"], "cell": cell,
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
    return [dict(r, tuned="cnn_adam", run_id=r["run_id"] + "-tuned", lr=0.0123, test_acc=0.99,
                 lr_role="", lr_grid_size=0)
            for r in recs if r["family"] == "cnn" and r["size"] == "xs"
            and r["optimizer"] == "adam" and r["regulariser"] == "none"
            and r["lr_role"] == "chosen"]


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


def _figures(page) -> list:
    return [p for p in page.panels if p.fig is not None]


def _assert_same(csv: list, plotted: list, what: str) -> None:
    assert len(csv) == len(plotted), what
    if all(v is None or isinstance(v, (int, float, np.number)) for v in plotted):
        # None: a point plotly skips (Optuna's colour-bar carrier); NaN in the table
        plotted = [math.nan if v is None else v for v in plotted]
        np.testing.assert_allclose(np.asarray(csv, float), np.asarray(plotted, float),
                                   rtol=1e-12, err_msg=what)
    else:
        assert [str(v) for v in csv] == [html.unescape(str(v)) for v in plotted], what


def test_csv_rows_are_exactly_the_plotted_points(tmp_path):
    df = tables.load_summary(write_summary(smoke_records(), tmp_path / "s.parquet"))
    studies = [tuning_studies.load_study(write_tuning_study(tmp_path / "tune"))]
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
                if trace.type == "parcoords":  # Optuna's parallel coordinates
                    for dim in trace.dimensions:
                        _assert_same(list(rows[dim.label]), list(dim.values), panel.key)
                    n_checked += 1
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


def test_time_to_target_from_the_curve():
    row = {"curve": json.dumps([{"epoch": 1, "elapsed_s": 2.0, "val_acc": 0.5},
                                {"epoch": 2, "elapsed_s": 4.0, "val_acc": 0.8},
                                {"epoch": 3, "elapsed_s": 6.0, "val_acc": 0.9}]),
           "best_val_acc": 0.9}
    assert curve_data.time_to(row, 0.75) == 4.0
    assert curve_data.time_to(row, 0.5) == 2.0
    assert math.isinf(curve_data.time_to(row, 0.95))
    assert math.isinf(curve_data.time_to({"curve": "", "best_val_acc": math.nan}, 0.1))


def test_tuning_study_parts(tmp_path):
    st = tuning_studies.load_study(write_tuning_study(tmp_path))
    assert not st.problem and st.source.startswith("the trials table")
    assert st.objectives == ["values_val_acc", "values_train_samples_per_s"]
    assert st.directions == ["maximize", "maximize"]
    s = tuning.pruning_savings(st)
    assert s["pruned"] == 4 and s["failed"] == 1 and s["trials"] == 16  # the void one dropped
    # pruned trials ran 3 s where a completed one took a median of 17 s ...
    done = [10.0 + n for n in range(16) if n % 4 != 3 and n != 5]
    assert s["saved_s"] == pytest.approx(4 * (np.median(done) - 3.0))
    # ... and 1 epoch of a budget of 4
    assert s["epochs_saved"] == 4 * 3 and s["epochs_budget"] == 4
    single = tuning_studies.load_study(write_tuning_study(tmp_path, "single", multi=False))
    assert single.objectives == ["value"] and single.directions == ["maximize"]
    assert tuning.pruning_savings(single)["saved_s"] == pytest.approx(s["saved_s"])
    # the in-memory Study rebuilt from the table: void trial left out, states kept
    assert len(st.optuna.trials) == 16 and len(st.optuna.best_trials) >= 1
    # directions are the study's own, never guessed from a name
    d = write_tuning_study(tmp_path, "silent", multi=False)
    (d / "best.json").write_text(json.dumps({"params": {"lr": 0.003}}))
    assert "states the objectives" in tuning_studies.load_study(d).problem


def test_tuning_study_without_table_is_explained(tmp_path):
    (tmp_path / "tune" / "half").mkdir(parents=True)
    write_tuning_study(tmp_path / "tune", "stale")
    df = tables.load_summary(write_summary(smoke_records()[:4], tmp_path / "s.parquet"))
    page = tuning.tuning_page(df, tuning_studies.find_studies(tmp_path / "tune", ["half", "gone"]))
    text = "".join(map(str, page.blocks))
    assert "no trials table" in text and "gone cannot be shown: its folder does not exist" in text
    assert "stale" not in text  # a study the workflow no longer names is not shown


def test_tuned_runs_stay_on_the_tuning_page(full):
    out = full
    for csv in (out / "data").glob("scale-*.csv"):
        assert not (pd.read_csv(csv)["y"] == 0.99).any()
    text = visible_text((out / "tuning.html").read_text())
    assert re.search(r"PyTorch\s+3 \(seeds 0-2\)\s+0\.990 \[0\.990, 0\.990\]", text)
    assert "cnn xs on mnist1d, trials in PyTorch: PyTorch tuning bought +0." in text
    assert "Pruning stopped 4 of 16 trials early. In epochs: 52 trained, 12 not" in text


def _finals(recs: list[dict], study: str, size: str, delta: float) -> list[dict]:
    """Final runs of `study` at `size`: the scale recipe's runs there (same seeds, both
    frameworks) again, test accuracy + `delta`."""
    return [dict(r, tuned=study, run_id=f"{r['run_id']}-{study}", test_acc=r["test_acc"] + delta,
                 lr_role="", lr_grid_size=0)
            for r in recs if r["family"] == "cnn" and r["size"] == size
            and r["optimizer"] == "adam" and r["regulariser"] == "none"
            and r["lr_role"] == "chosen"]


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """cnn tuned at xs (its parameters lose 0.1 to the baseline) and at m (they gain 0.1),
    and xs's parameters run at m as well as m's own (a transfer with no difference)."""
    tmp = tmp_path_factory.mktemp("two")
    recs = smoke_records()
    finals = (_finals(recs, "cnn_xs", "xs", -0.1) + _finals(recs, "cnn_m", "m", 0.1)
              + _finals(recs, "cnn_xs", "m", 0.1))
    summary = write_summary(recs + finals, tmp / "results" / "summary.parquet")
    tune_dir = tmp / "results" / "tune"
    write_tuning_study(tune_dir, "cnn_xs", cell=CNN_XS)
    write_tuning_study(tune_dir, "cnn_m", cell=dict(CNN_XS, size="m"))
    report.build_report(summary, tmp / "reports", tune_dir)
    return tmp


def test_every_tuned_cell_is_judged_against_its_baseline(two_sizes):
    df = tables.load_summary(two_sizes / "results" / "summary.parquet")
    studies = tuning_studies.find_studies(two_sizes / "results" / "tune")
    by = {st.name: tuning.judge(df, st) for st in studies}
    assert [r["framework"] for r in by["cnn_xs"]] == ["torch", "tf", tables.POOLED]
    for r in by["cnn_xs"]:  # the same seeds 0.1 lower: worse in each framework and pooled
        assert r["verdict"][0] == "worse" and r["diff"].value == pytest.approx(-0.1)
        assert r["n_a"] == r["n_b"] == (6 if r["framework"] == tables.POOLED else 3)
    assert all(r["verdict"][0] == "gain" for r in by["cnn_m"])
    text = visible_text((two_sizes / "reports" / "tuning.html").read_text())
    head = text[text.index("Did tuning pay?"):text.index("What each study cost")]
    # the defect is stated first, plainly
    assert re.search(r"Tuning made the model worse in cnn xs on mnist1d, trials in PyTorch "
                     r"\(PyTorch: tuning made it worse: -0\.100 \[-0\.1\d\d, -0\.0\d\d\]\)", head)
    assert re.search(r"cnn m on mnist1d, trials in PyTorch: PyTorch tuning bought \+0\.100 "
                     r"\[\+0\.0\d\d, \+0\.1\d\d\]; TensorFlow tuning bought .*; pooled tuning "
                     r"bought \+0\.100", head)


def test_no_clear_gain_where_the_interval_holds_zero_and_too_few_runs_say_so():
    iv = stats.diff_t_ci([0.80, 0.82, 0.78], [0.81, 0.79, 0.80])
    kind, text = tuning.verdict(iv)
    assert kind == "unclear" and text == f"no clear gain (+0.000 [{iv.lo:+.3f}, {iv.hi:+.3f}])"
    two = stats.diff_t_ci([0.9, 0.91], [0.7, 0.71])  # far apart, but two runs a side
    assert two.has_ci and tuning.verdict(two)[0] == "unclear"
    assert "too few runs" in tuning.verdict(two)[1]


def test_transfer_and_slope_across_tuned_sizes(two_sizes):
    text = visible_text((two_sizes / "reports" / "tuning.html").read_text())
    assert ("cnn on mnist1d: size xs's best parameters (study cnn_xs) run at size m against "
            "that size's own (study cnn_m): PyTorch: no clear difference (transferred") in text
    scale = visible_text((two_sizes / "reports" / "scale.html").read_text())
    assert "cnn on mnist1d: tuned against untuned test accuracy, per size" in scale
    # gains -0.1 at xs and +0.1 at m: tuning steepens the slope by 0.2
    assert re.search(r"pooled, gain per size: xs: tuning made it worse: -0\.100 \[.*\]; m: "
                     r"tuning bought \+0\.100 \[.*\]\. Gain at m minus gain at xs: \+0\.200 "
                     r"\[\+0\.1\d\d, \+0\.2\d\d\]: tuning steepens the slope", scale)
    data = pd.read_csv(two_sizes / "reports" / "data" / "tuned-cnn-mnist1d.csv")
    tuned = data[data["trace"] == "pooled tuned"]
    assert list(tuned["size"]) == ["xs", "m"] and (tuned["ci_hi"] <= 1).all()
    assert set(data.loc[data["trace"] == "pooled untuned", "size"]) == {"xs", "s", "m"}
    # no tuned size in gru: no such figure
    assert "gru on mnist1d: tuned against untuned" not in scale


def test_a_journal_study_is_drawn_by_optuna_and_costed_against_the_grid(tmp_path):
    import optuna

    from bench import tune

    defn = tune.make_definition({"trials": 12, "epochs": 20}, dict(CNN_XS))
    d = tmp_path / "tune" / defn["name"]
    d.mkdir(parents=True)
    (d / "study.json").write_text(json.dumps(defn))
    study = optuna.create_study(study_name=defn["name"], storage=tune.open_storage(defn, d),
                                directions=defn["directions"],
                                sampler=optuna.samplers.RandomSampler(seed=0))
    dists = tune.distributions(defn["space"])
    for n in range(12):
        t = study.ask(dists)
        t.set_user_attr("flops_spent", 1e9)
        if n % 4 == 3:
            study.tell(t, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(t, 0.9 - 0.05 * abs(math.log10(t.params["lr"]) + 2.5))
    best = {"cell": CNN_XS, "metrics": ["val_acc"], "directions": ["maximize"],
            "states": {"COMPLETE": 9, "PRUNED": 3}, "best_params": study.best_params}
    (d / "best.json").write_text(json.dumps(dict(best, flops_spent=1.2e10, trials_pruned=3)))
    st = tuning_studies.load_study(d)
    assert not st.problem and "journal" in st.source and len(st.optuna.trials) == 12
    hist = tuning_optuna.history_panel(st, "h")
    assert hist.fig is not None and len(hist.data) >= 9  # completed trials and best line
    imp = tuning_optuna.importance_panel(st, "i")  # 9 completed trials: too few, and why
    assert imp.fig is None and "at least 10 completed trials" in imp.message
    assert tuning_optuna.parallel_panel(st, "p").fig is not None
    df = frame(smoke_records(), tmp_path)
    grid, k = tuning.grid_flops(df, CNN_XS, "adam")
    assert k == len(LR_GRID) and grid > 0
    row = tuning.cost_row(df, st)
    assert row[2:5] == [12, "25%", "0.012"] and row[6] == f"{1.2e10 / grid:.3g}x"
    # an older folder: no flops_spent anywhere, said so instead of a number
    (d / "best.json").write_text(json.dumps(best))
    old = tuning_studies.load_study(d)
    old.trials = old.trials.drop(columns="user_attrs_flops_spent")
    assert tuning.cost_row(df, old)[4] == "not recorded"


# ---------------------------------------------------------------------------- what enters


def _study(recs: list[dict], **match) -> list[dict]:
    """The study runs (no grid run) of `recs` matching every key=value."""
    return [r for r in recs if r["lr_role"] != "grid"
            and all(r.get(k) == v for k, v in match.items())]


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


def _flat(recs: list[dict]) -> list[dict]:
    """Every study run's test accuracy 0.80 +- 0.02 by seed, the same at every size and
    cell, and throughput the same in both frameworks: nothing differs."""
    out = []
    for r in recs:
        r = dict(r)
        if r["status"] == "ok" and r["lr_role"] != "grid":
            k = int(r["seed"]) % 1000
            r["test_acc"] = 0.80 + 0.02 * (k - 1)
            r["train_samples_per_s"] = 1000.0 * (1 + 0.05 * (k - 1))
        out.append(r)
    return out


def test_headline_findings_name_a_winner_only_where_the_interval_excludes_zero(tmp_path):
    flat = overview.findings(frame(_flat(smoke_records()), tmp_path))
    assert "cnn on mnist1d (pooled, 12 runs): no clear winner: m (18.7k params) and xs " \
           "(1.33k params) overlap (difference +0.000, 95% CI [" in flat[0]
    assert "beats" not in flat[0]
    assert "no clear winner: PyTorch and TensorFlow overlap (PyTorch/TensorFlow ratio " \
           "1.00x, 95% CI" in flat[1]
    assert "clearly faster in 0, TensorFlow in 0, neither in 6" in flat[1]
    assert flat[2].count("no clear winner") == 2 and "beats" not in flat[2]
    # a clear gap: adam + dropout 0.1 above every other cell
    recs = _flat(smoke_records())
    for r in recs:
        if r["optimizer"] == "adam" and r["regulariser"] == "dropout":
            r["test_acc"] += 0.1
    won = overview.findings(frame(recs, tmp_path, "won.parquet"))
    assert re.search(r"cnn \(size xs, pooled\): best adam \+ dropout \(0\.900\), runner-up "
                     r"adam \+ none \(0\.800\): adam \+ dropout beats adam \+ none by \+0\.100 "
                     r"\(95% CI \[\+0\.0\d+, \+0\.1\d+\]\)", won[2])
    # the default synthetic study: accuracy grows with size, TensorFlow is 1.5x faster
    found = overview.findings(frame(smoke_records(), tmp_path, "default.parquet"))
    assert "m (38.5k params) beats xs (1.08k params)" in found[0]
    assert re.search(r"TensorFlow is 1\.5\dx faster than PyTorch \(95% CI", found[1])
    assert "TensorFlow in 6, neither in 0" in found[1]


def test_vs_published_table_verdicts(tmp_path):
    recs = smoke_records()
    for r in _study(recs, size="m", optimizer="adam", regulariser="none"):
        k = int(r["seed"]) % 1000
        r["test_acc"] = 0.95 + 0.005 * (k - 1) if r["family"] == "cnn" else 0.88 + 0.02 * (k - 1)
    t = overview.published_table(frame(recs, tmp_path)).set_index(["family", "framework"])
    assert set(t.loc["cnn", "verdict"]) == {"reaches"}
    assert (t.loc["cnn", "size"] == "m").all() and (t.loc["cnn", "published"] == 0.94).all()
    # n = 3 per framework: 0.88 +- 0.049 reaches 0.91; pooled n = 6: 0.88 +- 0.019 does not
    assert t.loc[("gru", "torch"), "verdict"] == "within interval"
    assert t.loc[("gru", "tf"), "verdict"] == "within interval"
    assert t.loc[("gru", "pooled"), "verdict"] == "below"
    assert t.loc[("gru", "pooled"), "n_seeds"] == 6
    assert t.loc[("gru", "pooled"), "mean"] == pytest.approx(0.88)
    assert overview.verdict(0.93, math.nan, 0.94) == "below, no interval"
    page = overview.overview_page(frame(recs, tmp_path, "o.parquet"), "s", [])
    text = "".join(str(b) for b in page.blocks) + "".join(p.caption for p in page.panels)
    assert "Greydanus 2020" in text and "within interval" in text
    published = overview.published_table(frame(_study(recs, family="cnn"), tmp_path, "c.parquet"))
    assert published.set_index("family").loc["gru", "verdict"] == "not run"


def test_converged_share_is_counted_on_the_overview_and_in_captions(full):
    index = visible_text((full / "index.html").read_text())
    # size m runs to its cap still improving: 6 runs per family in the scale figure, none of
    # the 18 more sweep runs (size xs)
    assert "12 of 72 runs ended at their epoch cap still improving" in index
    scale = visible_text((full / "scale.html").read_text())
    assert scale.count("6 of 18 runs ended at their epoch cap still improving") >= 4
    sweep = visible_text((full / "sweep.html").read_text())
    assert "0 of 24 runs ended at their epoch cap still improving" in sweep


def test_memory_is_the_models_own_beside_its_estimate(tmp_path):
    recs = smoke_records()
    df = frame(recs, tmp_path)
    panel = scale.scale_panel(df, "cnn", "mnist1d", "k")
    data = panel.data
    mem = data[data["trace"] == "tf memory"]
    want = [np.mean([r["model_mem_mb"] for r in _study(recs, family="cnn", framework="tf",
                                                       size=s, regulariser="none",
                                                       optimizer="adam")]) for s in SIZES]
    np.testing.assert_allclose(mem["y"], want, rtol=1e-9)
    est = next(t for t in panel.fig.data if t.meta == "estimate memory")
    assert est.line.dash == "dash"
    # synthetic: measured grows as N^0.95, the estimate as N^1
    assert "TensorFlow: measured ∝ N^0.9" in panel.caption
    assert "growing slower than the estimate" in panel.caption
    assert "Estimate ∝ N^1.00" in panel.caption
    base = scale.baseline_panel(df, "b")
    assert "framework runtime, not the model" in base.title + str(base.body)
    med = base.data.set_index("framework")["median_rss_start_mb"]
    assert med["torch"] == pytest.approx(350, abs=5) and med["tf"] == pytest.approx(600, abs=5)


def test_frontier_picks_the_best_size_per_budget():
    def run(rid, size, flops, accs):
        return [{"run_id": rid, "framework": "torch", "size": size, "params": 1.0, "seed": 0,
                 "epoch": e + 1, "flops": f, "val_acc": a}
                for e, (f, a) in enumerate(zip(flops, accs, strict=True))]

    pts = pd.DataFrame(
        run("a1", "xs", [1e9, 2e9, 3e9, 4e9], [0.50, 0.60, 0.62, 0.63])
        + run("a2", "xs", [1e9, 2e9, 3e9, 4e9], [0.50, 0.60, 0.62, 0.63])
        + run("b1", "s", [4e9, 8e9, 12e9, 16e9], [0.40, 0.65, 0.70, 0.72])
        # a second s run dips at 12e9: the frontier uses the best so far, 0.7 there
        + run("b2", "s", [4e9, 8e9, 12e9, 16e9], [0.40, 0.70, 0.60, 0.72])
        + run("c1", "m", [2e10, 4e10, 6e10, 8e10], [0.30, 0.60, 0.75, 0.80]))
    front, segs = curve_data.frontier(pts)
    assert [s for s, _, _ in segs] == ["xs", "s", "m"]
    assert segs[0][1:] == (1e9, 4e9) and segs[1][1:] == (8e9, 4e10) and segs[2][1:] == (6e10, 8e10)
    at = front.set_index("flops")
    assert at.loc[4e9, "size"] == "xs" and at.loc[4e9, "val_acc"] == pytest.approx(0.63)
    assert at.loc[12e9, "val_acc"] == pytest.approx(0.70)  # mean of best-so-far 0.70, 0.70
    assert at.loc[4e10, "size"] == "s" and at.loc[6e10, "size"] == "m"
    assert scale_budget.frontier_sentence(segs) == (
        "Best size by budget (leads held over less than 2x of compute left out): xs up to 4e9 "
        "FLOPs, s from 8e9 to 4e10, m from 6e10.")


def test_frontier_sentence_leaves_out_lead_changes_that_are_noise():
    # s and xs trade the lead within 1.2x of compute (seed noise where the curves run
    # together); m takes over for good at 6.8e9 and l holds the last budgets
    segs = [("xs", 1e8, 1.5e9), ("s", 1.5e9, 1.5e9), ("xs", 1.6e9, 1.8e9), ("s", 1.9e9, 4.6e9),
            ("m", 4.8e9, 4.8e9), ("s", 5.1e9, 6.6e9), ("m", 6.8e9, 3.6e10), ("l", 4.2e10, 5e10)]
    stable = scale_budget.stable_segments(segs)
    assert [s for s, _, _ in stable] == ["xs", "s", "m", "l"]
    assert stable[1][1:] == (1.9e9, 6.6e9) and stable[3] == ("l", 4.2e10, 5e10)
    assert scale_budget.stable_segments(stable) == stable  # nothing left to merge


def test_compute_panel_plots_every_chosen_run_against_flops(full):
    df = tables.load_summary(full.parent / "results" / "summary.parquet")
    panel = scale_budget.compute_panel(df, "gru", "mnist1d", "k")
    runs = [t for t in panel.fig.data if t.meta != "frontier"]
    assert len(runs) == 18  # 3 sizes x 2 frameworks x 3 seeds at the chosen lr
    r = next(r for r in df.itertuples() if r.run_id == runs[0].meta)
    assert runs[0].x[0] == pytest.approx(r.train_flops_per_sample * STEPS_PER_EPOCH * BATCH)
    assert "Best size by budget (leads held over less than 2x of compute left out): xs up to" \
        in panel.caption


def _grid_unit(size: str, curves: dict, tests: dict, fps: float, stop: dict | None = None):
    """A constructed grid at seed 0 in PyTorch: lr -> val curve (4-epoch cap), the best
    validation rate chosen, plus two more seeds and one TensorFlow run at the chosen rate."""
    best = max(curves, key=lambda lr: (max(curves[lr]), -lr))
    out = []
    for lr, accs in curves.items():
        r = make_record(spec("cnn", "torch", size, lr=lr), lr_role="chosen" if lr == best
                        else "grid", grid_size=len(curves))
        n = (stop or {}).get(lr, len(accs))
        r.update(epochs=4, train_flops_per_sample=fps, best_val_acc=max(accs[:n]),
                 test_acc=tests[lr], flops_spent=fps * 1000 * n,
                 curve=[{"epoch": e + 1, "samples": 1000 * (e + 1), "val_acc": a}
                        for e, a in enumerate(accs[:n])])
        out.append(r)
    for fw, seed in (("torch", 1), ("torch", 2), ("tf", 1000)):
        r = make_record(spec("cnn", fw, size, seed=seed, lr=best), lr_role="chosen",
                        grid_size=len(curves))
        r.update(best_val_acc=0.0, test_acc=0.0)  # must not enter the grid
        out.append(r)
    return out


def test_lr_panel_marks_the_chosen_rate_and_counts_the_race(tmp_path):
    recs = (_grid_unit("xs", {0.001: [0.1, 0.2, 0.5, 0.8], 0.01: [0.3, 0.5, 0.6, 0.7],
                              0.1: [0.2, 0.3, 0.4, 0.5]},
                       {0.001: 0.78, 0.01: 0.79, 0.1: 0.5}, fps=100.0)
            + _grid_unit("s", {0.001: [0.2, 0.3, 0.4, 0.5], 0.01: [0.4, 0.6, 0.7, 0.9],
                               0.1: [0.5, 0.55, 0.6, 0.6]},
                         {0.001: 0.5, 0.01: 0.9, 0.1: 0.6}, fps=300.0, stop={0.1: 2}))
    df = frame(recs, tmp_path)
    units = curve_data.lr_units(df, "cnn", "mnist1d")
    assert [(u["size"], u["chosen"], u["k"], len(u["members"])) for u in units] == [
        ("xs", 0.001, 3, 3), ("s", 0.01, 3, 3)]
    panel = scale_budget.lr_panel(df, "cnn", "mnist1d", "k")
    xs_val = next(t for t in panel.fig.data if t.meta == "xs val")
    assert list(xs_val.x) == [0.001, 0.01, 0.1] and list(xs_val.y) == [0.8, 0.7, 0.5]
    assert list(xs_val.marker.symbol) == ["star", "circle", "circle"]
    s_test = next(t for t in panel.fig.data if t.meta == "s test")
    assert list(s_test.marker.symbol) == ["circle", "star", "circle"]
    assert list(s_test.y) == [0.5, 0.9, 0.6]
    chosen = panel.data[panel.data["chosen"]]
    pairs = sorted(zip(chosen["size"], chosen["x"], strict=True))  # val and test panels
    assert pairs == [("s", 0.01), ("s", 0.01), ("xs", 0.001), ("xs", 0.001)]
    cap = panel.caption
    assert ("grid of 3 learning rates at seed 0 in PyTorch (regulariser none; 2 units), "
            "chosen by best validation accuracy; test accuracy never used") in cap
    assert "the grid's best validation accuracy in 2 of 2 units" in cap
    assert "differs from the chosen one in 1 of 2 units (by up to 0.010 test accuracy)" in cap
    # epoch 1: xs picks 0.01 (not 0.001), s picks 0.1 (not 0.01); epoch 2: s picks 0.01.
    # Compute: xs 3 runs x 4 epochs x 1e5 FLOPs, s (4 + 4 + 2) epochs x 3e5 = 4.2e6 in all;
    # to epoch 1: 1.2e6 (29%), to epoch 2: 0.6e6 + 1.8e6 (57%)
    assert ("A race stopped at 25% of the epochs would pick the same rate in 0 of 2 cases, at "
            "29% of the grid's compute.") in cap
    assert ("A race stopped at 50% of the epochs would pick the same rate in 1 of 2 cases, at "
            "57% of the grid's compute.") in cap
    assert scale_budget.lr_panel(df[df["lr_role"] != "grid"], "cnn", "mnist1d", "k") is None


def test_lr_grid_run_from_the_summary_names_the_grid_members(tmp_path):
    """A race: its runs are all 'grid'; the study's own run at the winning rate is 'chosen'
    but not a grid run (lr_grid_run False), so its full-length compute is not the grid's."""
    recs = _grid_unit("xs", {0.001: [0.1, 0.2, 0.5, 0.8], 0.01: [0.3, 0.5, 0.6, 0.7]},
                      {0.001: 0.78, 0.01: 0.79}, fps=100.0)
    race = [dict(r, lr_role="grid", lr_grid_run=True, run_id=r["run_id"] + "-race")
            for r in recs[:2]]  # the two rates at seed 0
    own = [dict(r, lr_grid_run=False) for r in recs if r["lr_role"] == "chosen"]
    df = frame(race + own, tmp_path)
    (unit,) = curve_data.lr_units(df, "cnn", "mnist1d")
    assert sorted(unit["members"]["run_id"]) == sorted(r["run_id"] for r in race)


def test_a_table_without_the_new_columns_still_renders_and_says_so(tmp_path):
    """Records without lr roles, model memory, convergence or cumulative samples."""
    new = ["converged", "stop_reason", "model_mem_mb", "model_mem_est_mb", "rss_start_mb",
           "flops_spent", "lr_role", "lr_grid_size", "n_classes", "best_epoch"]
    recs = [r for r in smoke_records() if r["lr_role"] != "grid"]
    for r in recs:
        for k in new:
            r.pop(k, None)
        r["curve"] = [{k: v for k, v in p.items() if k != "samples"} for p in r["curve"]]
    out = build(tmp_path, recs)
    scale = visible_text((out / "scale.html").read_text())
    assert "Model memory (peak above the runtime baseline): not recorded." in scale
    assert "Whether runs converged was not recorded." in scale
    assert "No learning-rate grid in this study" in scale
    # each size ran at its own lr and none is marked chosen: the recipe keeps its lr
    assert "Recipe: adam (lr 0.01) + none;" in scale
    assert "Best size by budget" in scale  # FLOPs from steps x batch
    for text in pages_text(out).values():
        assert "could not be built" not in text


# ---------------------------------------------------------------------------- generation

SEQ_DATASET = "en_fr_numbers"
SEQ_EM = {"xs": 0.2, "s": 0.5, "m": 0.8}  # greedy exact match on test, mean over seeds
SEQ_BEAM_EM, SEQ_BEAM_BLEU = 0.005, 0.5  # beam minus greedy on test (+0.5 points of EM)
SEQ_DECODE_RATIO, SEQ_LATENCY_RATIO = 2.0, 1.5  # PyTorch 2x the tokens/s, TF 1.5x the ms
SEQ_EXAMPLES = [("twenty-one", "vingt et un"), ("eighty-one", "quatre-vingt-un"),
                ("seventy", "soixante-dix")]
SEQ_LONG = [("one hundred thousand", "cent mille"),
            ("two hundred thousand and one", "deux cent mille un"),
            ("nine hundred thousand", "neuf cent mille")]


def seq2seq_record(framework: str, size: str, seed: int, status: str = "ok",
                   em: dict | None = None) -> dict:
    """A seq2seq run record: the classifier record's common fields, then translation
    quality with known trends (exact match `em[size]` +- 0.01 by seed, the same offsets in
    both frameworks, so per-framework and pooled means are exactly `em[size]`), beam search
    +0.005 exact match and +0.5 BLEU on test (nothing on test_long, where exact match is 0),
    PyTorch decoding twice TensorFlow's tokens/s and TensorFlow's latency 1.5x PyTorch's."""
    em = em or SEQ_EM
    s = RunSpec.create(family="seq2seq", framework=framework, dataset=SEQ_DATASET, size=size,
                       optimizer="adam", regulariser="none", seed=seed, lr=0.003,
                       epochs=EPOCHS, batch_size=32)
    rec = make_record(s, status)
    rec.update(n_classes=62)  # the vocabulary: chance of an exact match is still 0
    if status != "ok":
        return rec
    k = seed % 1000 - 1  # -1, 0, +1
    params = rec["params"]
    e = em[size] + 0.01 * k
    bleu, chrf = 20 + 60 * e, 40 + 50 * e
    bleu_long = 5 + 10 * SIZES.index(size) + k
    tok = 5e6 * params ** -0.5 * (1 + 0.02 * k) / (1 if framework == "torch" else
                                                   SEQ_DECODE_RATIO)
    lat = (5 + params / 1e4) * (1 + 0.02 * k) * (1 if framework == "torch" else
                                                 SEQ_LATENCY_RATIO)
    mark = f"[{framework} {seed}]"
    rec.update(
        test_acc=e, val_acc=e + 0.01 * k + (0.002 if framework == "torch" else 0.0),
        exact_match=e, bleu=bleu, chrf=chrf,
        exact_match_long=0.0, bleu_long=bleu_long, chrf_long=30.0 + k,
        beam_exact_match=e + SEQ_BEAM_EM + 0.001 * k, beam_bleu=bleu + SEQ_BEAM_BLEU + 0.1 * k,
        beam_chrf=chrf + 0.3, beam_exact_match_long=0.0, beam_bleu_long=bleu_long + 0.2 * k,
        beam_chrf_long=30.0 + k, beam_width=4, length_penalty=1.0,
        decode_tokens_per_s=tok, decode_tokens_per_s_min=0.95 * tok,
        decode_tokens_per_s_max=1.05 * tok, decode_batch=64, decode_latency_ms=lat,
        decode_latency_ms_p90=1.2 * lat, train_tokens_per_s=18 * rec["train_samples_per_s"],
        examples=[{"test": "test", "source": src, "reference": ref, "greedy": ref,
                   "beam": ref} for src, ref in SEQ_EXAMPLES]
        + [{"test": "test_long", "source": src, "reference": ref, "greedy": f"{ref} {mark}",
            "beam": f"{ref} mille"} for src, ref in SEQ_LONG])
    return rec


def seq2seq_records(failed: tuple | None = ("torch", "m", 1), em: dict | None = None) -> list:
    """Both frameworks on disjoint seeds at sizes xs, s, m; `failed` = (framework, size,
    seed) of one diverged run (None: every run ok)."""
    out = []
    for fw, seeds in SEEDS.items():
        for size in SIZES:
            for seed in seeds:
                bad = failed is not None and (fw, size, seed) == failed
                out.append(seq2seq_record(fw, size, seed, "diverged" if bad else "ok", em))
    return out


def _gen_panel(page, name: str):
    return next(p for p in page.panels if p.key.startswith(f"generation-{name}-"))


@pytest.fixture(scope="module")
def gen_report(tmp_path_factory):
    """The seq2seq runs beside the cnn runs of the smoke study, rendered."""
    tmp = tmp_path_factory.mktemp("gen")
    cnn = [r for r in smoke_records() if r["family"] == "cnn"]
    return build(tmp, cnn + seq2seq_records())


def test_generation_page_is_built_linked_and_the_other_pages_cope(gen_report):
    out = gen_report
    assert "generation.html" in report.PAGE_FILES
    texts = pages_text(out)
    for name, text in texts.items():
        assert 'href="generation.html"' in text, name
        assert "could not be built" not in text, name
    gen = texts["generation.html"]
    assert '<a href="generation.html" class="here" aria-current="page">Generation</a>' in gen
    assert gen.count("plotly-graph-div") == 3  # quality, speed, beam; examples is a table
    key = "seq2seq-en-fr-numbers"
    for panel in ("quality", "speed", "beam", "examples"):
        assert (out / "data" / f"generation-{panel}-{key}.csv").is_file()
        assert f'href="data/generation-{panel}-{key}.csv"' in gen
    # the scale page calls seq2seq's accuracy exact match; the sweep has nothing to sweep
    scale = visible_text(texts["scale.html"])
    assert "seq2seq on en_fr_numbers: exact match, throughput and memory" in scale
    assert "seq2seq: test accuracy is the greedy exact match" in scale
    assert "No optimizer x regulariser sweep ran for seq2seq on en_fr_numbers" in (
        visible_text(texts["sweep.html"]))
    index = visible_text(texts["index.html"])
    assert "seq2seq on en_fr_numbers (pooled, 12 runs): m (172k params) beats xs" in index
    assert "for seq2seq test accuracy is the greedy exact match, at chance 0" in index
    assert "Generation: translation quality" in index
    # the published comparison stays with the MNIST-1D classifiers
    pub = pd.read_csv(out / "data" / "published.csv")
    assert set(pub["family"]) == {"cnn", "gru"}


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


def test_generation_quality_means_and_failures_at_zero(gen_report):
    pts = pd.read_csv(gen_report / "data" / "generation-quality-seq2seq-en-fr-numbers.csv")
    recs = seq2seq_records()
    pooled = pts[pts["framework"] == tables.POOLED].set_index(["metric", "size"])
    assert pooled.loc[("exact_match", "s"), "y"] == pytest.approx(SEQ_EM["s"])
    assert pooled.loc[("exact_match", "s"), "n_seeds"] == 6
    # the diverged PyTorch m run enters exact match at 0 (not 1/62), on both test sets
    ok_m = [r["exact_match"] for r in recs if r["size"] == "m" and r["status"] == "ok"]
    assert len(ok_m) == 5
    at = pooled.loc[("exact_match", "m")]
    assert at["y"] == pytest.approx(sum(ok_m) / 6) and at["n_failed"] == 1
    assert pooled.loc[("exact_match_long", "m"), "y"] == 0.0
    torch_m = pts[(pts["trace"] == "torch exact_match") & (pts["size"] == "m")].iloc[0]
    # PyTorch seeds 0 and 2 at 0.79 and 0.81, seed 1 diverged: at 0
    assert torch_m["y"] == pytest.approx((2 * SEQ_EM["m"] + 0.0) / 3)
    assert torch_m["n_failed"] == 1 and torch_m["n_seeds"] == 3
    # BLEU and chrF: ok runs only, per framework, never pooled
    bleu = pts[(pts["trace"] == "torch bleu") & (pts["size"] == "m")].iloc[0]
    assert bleu["n_seeds"] == 2 and bleu["y"] == pytest.approx(np.mean(
        [r["bleu"] for r in recs if r["framework"] == "torch" and r["size"] == "m"
         and r["status"] == "ok"]))
    assert not ((pts["framework"] == tables.POOLED) & pts["metric"].str.contains("bleu|chrf")).any()
    df = tables.normalise(pd.DataFrame([{"family": "seq2seq", "status": "oom", "n_classes": 62},
                                        {"family": "cnn", "status": "oom", "n_classes": 10}]))
    assert list(df["chance"]) == [0.0, 0.1] and list(df["acc_stat"]) == [0.0, 0.1]


def test_generation_captions_follow_the_data(tmp_path):
    page = generation.generation_page(frame(seq2seq_records(), tmp_path))
    for panel in _figures(page):  # the CSV rows are the plotted points
        assert len(panel.fig.data) >= 4, panel.key
        for trace in panel.fig.data:
            rows = panel.data[panel.data["trace"] == trace.meta]
            for axis in ("x", "y"):
                _assert_same(list(rows[axis]), list(getattr(trace, axis)),
                             f"{panel.key} {trace.meta}")
    quality = _gen_panel(page, "quality").caption
    # m: 0.8 +- 0.01 by seed and one run at 0 (the 6 runs' mean 2/3); xs 0.2 +- 0.01
    assert re.search(r"pooled, 12 runs: m \(172k params\) beats xs \(6\.69k params\) by "
                     r"\+0\.467 exact match \(95% Welch CI \[\+0\.\d+, \+0\.\d+\]\)", quality)
    assert "Exact match on test_long stays near 0, as expected" in quality
    assert "1 of 18 runs failed (exact match counted at 0; excluded from BLEU and chrF)" in (
        quality)
    speed = _gen_panel(page, "speed")
    assert speed.caption.count("throughput ratio 2.00x: PyTorch is 2.00x faster than "
                               "TensorFlow (95% CI") == 3
    assert speed.caption.count("(latency ratio TensorFlow/PyTorch 1.50x) PyTorch is 1.50x "
                               "faster than TensorFlow") == 3
    ratio = speed.data[speed.data["trace"] == "ratio decode_tokens_per_s"]
    # exact where both frameworks ran the same seeds' offsets; at m PyTorch lost seed 1
    np.testing.assert_allclose(ratio["y"], SEQ_DECODE_RATIO, rtol=1e-3)
    np.testing.assert_allclose(ratio["y"].iloc[:2], SEQ_DECODE_RATIO, rtol=1e-9)
    beam = _gen_panel(page, "beam")
    helps = beam.caption.split("Beam search helps (interval above zero): ")[1].split(". ")[0]
    assert re.fullmatch(r"exact match on test at xs \+0\.005 \[\+0\.004, \+0\.006\], "
                        r"s \+0\.005 \[.*?\], m \+0\.005 \[.*?\]; "
                        r"BLEU on test at xs \+0\.50 \[.*?\], s \+0\.50 \[.*?\], "
                        r"m \+0\.50 \[.*?\]", helps)
    unclear = beam.caption.split("No clear difference (interval includes zero): ")[1]
    assert "exact match on test_long at xs +0.000" in unclear and "BLEU on test_long" in unclear
    assert "hurts" not in beam.caption
    # every size alike: no claim, and the caption says so
    flat = generation.generation_page(frame(seq2seq_records(None, {s: 0.5 for s in SIZES}),
                                            tmp_path, "flat.parquet"))
    quality = _gen_panel(flat, "quality").caption
    assert ("pooled, 12 runs: no clear difference in exact match between m (172k params) and "
            "xs (6.69k params) (difference +0.000, 95% Welch CI [") in quality
    assert "beats" not in quality


def test_generation_examples_table_escapes_the_sentences(tmp_path):
    recs = seq2seq_records()
    bad = "<b>vingt & un</b>"
    for r in recs:
        if r["status"] == "ok":
            r["examples"][0]["greedy"] = bad
    from bench.report.html import render_page

    page = generation.generation_page(frame(recs, tmp_path))
    text = render_page(page, "")
    sec = re.search(r'<section class="panel" id="generation-examples-.*?</section>', text,
                    flags=re.S).group(0)
    assert "&lt;b&gt;vingt &amp; un&lt;/b&gt;" in sec and "<b>" not in sec
    shown = visible_text(sec)
    for src, ref in SEQ_EXAMPLES + SEQ_LONG:
        assert src in shown and ref in shown
    # the best of the largest size by validation exact match: PyTorch seed 2
    assert "cent mille [torch 2]" in shown and "Run torch m adam+none seed 2" in shown
    ex = _gen_panel(page, "examples").data
    assert len(ex) == 6 and set(ex["test"]) == {"test", "test_long"}
    assert set(ex["seed"]) == {2} and list(ex["exact"])[:3] == ["beam", "greedy and beam",
                                                                 "greedy and beam"]


def test_generation_page_without_seq2seq_runs_says_so(tmp_path):
    page = generation.generation_page(frame([r for r in smoke_records() if r["family"] == "cnn"],
                                            tmp_path))
    text = "".join(map(str, page.blocks))
    assert "holds no seq2seq runs" in text and not page.panels
    failed = [seq2seq_record("torch", "xs", 0, "oom"), seq2seq_record("tf", "xs", 1000, "error")]
    page = generation.generation_page(frame(failed, tmp_path, "failed.parquet"))
    assert "None of the 2 seq2seq runs finished with status ok" in "".join(map(str, page.blocks))
    assert not page.panels


def test_generation_page_copes_with_seq2seq_records_without_the_new_fields(tmp_path):
    """Records without translation quality, decoding speed or examples (an older engine):
    each panel says what is missing; a failed run alone is no exact-match point at 0."""
    new = tables.NUMBER_COLUMNS[tables.NUMBER_COLUMNS.index("exact_match"):] + ["examples"]
    recs = [{k: v for k, v in r.items() if k not in new} for r in seq2seq_records()]
    page = generation.generation_page(frame(recs, tmp_path))
    assert [p.fig for p in page.panels] == [None] * 4
    text = " ".join(p.message for p in page.panels)
    for what in ("translation quality", "decoding speed", "both greedy and beam-search scores",
                 "decoded examples"):
        assert f"recorded {what}" in text or f"recorded its {what}" in text, what
    # one framework at one size, one seed: no interval, no ratio, no size trend
    one = [r for r in seq2seq_records() if r["framework"] == "tf" and r["size"] == "s"
           and r["seed"] == 1000]
    page = generation.generation_page(frame(one, tmp_path, "one.parquet"))
    assert "only one size has successful runs" in _gen_panel(page, "quality").caption
    assert "no framework ratio" in _gen_panel(page, "speed").caption
    assert "Beam search helps nowhere" in _gen_panel(page, "beam").caption


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
