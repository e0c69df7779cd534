"""The scale page (bench.report.scale, scale_budget, curve_data): memory, the lr chosen per size,
accuracy against compute and its frontier, time to target."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from report_data import (
    BATCH,
    SIZES,
    STEPS_PER_EPOCH,
    _study,
    build,
    frame,
    make_record,
    pages_text,
    smoke_records,
    spec,
    visible_text,
)

from bench.report import curve_data, scale, scale_budget, tables

pytestmark = pytest.mark.usefixtures("strict")


def test_time_to_target_from_the_curve():
    row = {"curve": json.dumps([{"epoch": 1, "elapsed_s": 2.0, "val_acc": 0.5},
                                {"epoch": 2, "elapsed_s": 4.0, "val_acc": 0.8},
                                {"epoch": 3, "elapsed_s": 6.0, "val_acc": 0.9}]),
           "best_val_acc": 0.9}
    assert curve_data.time_to(row, 0.75) == 4.0
    assert curve_data.time_to(row, 0.5) == 2.0
    assert math.isinf(curve_data.time_to(row, 0.95))
    assert math.isinf(curve_data.time_to({"curve": "", "best_val_acc": math.nan}, 0.1))


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
