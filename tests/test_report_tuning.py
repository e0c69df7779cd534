"""The tuning page (bench.report.tuning, tuning_studies, tuning_optuna): studies read from disk,
judged against their baselines, costed against the grid, drawn by Optuna."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from report_data import (
    CNN_XS,
    LR_GRID,
    frame,
    smoke_records,
    visible_text,
    write_summary,
    write_tuning_study,
)

from bench.report import tables, tuning, tuning_judge, tuning_optuna, tuning_studies
from bench.study import stats

pytestmark = pytest.mark.usefixtures("strict")


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


def test_every_tuned_cell_is_judged_against_its_baseline(two_sizes):
    df = tables.load_summary(two_sizes / "results" / "summary.parquet")
    studies = tuning_studies.find_studies(two_sizes / "results" / "tune")
    by = {st.name: tuning_judge.judge(df, st) for st in studies}
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


def test_the_best_trials_validation_accuracy_is_called_biased_beside_fresh_seeds(two_sizes):
    """The best of many trials on one validation set overstates its parameters: the page
    says so, with the standard error of one estimate and the same parameters' validation
    accuracy on the final runs' seeds beside the baseline's."""
    df = tables.load_summary(two_sizes / "results" / "summary.parquet")
    st = next(s for s in tuning_studies.find_studies(two_sizes / "results" / "tune")
              if s.name == "cnn_m")
    own, base = tuning_judge.own_runs(df, "cnn_m", "m"), tuning_judge.baseline_runs(df, st.cell)
    text = visible_text((two_sizes / "reports" / "tuning.html").read_text())
    part = text[text.index("Study cnn_m"):]
    assert (f"Selection: the best trial's validation accuracy, 0.860, is the highest of 11 "
            f"completed trials on the same 400 validation samples (one estimate's standard "
            f"error is about 0.017), a maximum that tends to overstate its parameters. On the "
            f"final runs' 6 seeds they reach {own['best_val_acc'].mean():.3f} on validation "
            f"(the baseline {base['best_val_acc'].mean():.3f} over its 6); the test "
            f"comparison below is the one to trust.") in part
    assert tuning.selection_text(df.iloc[0:0], st) == ""  # no runs: nothing to set beside it


def test_no_clear_gain_where_the_interval_holds_zero_and_too_few_runs_say_so():
    iv = stats.diff_t_ci([0.80, 0.82, 0.78], [0.81, 0.79, 0.80])
    kind, text = tuning_judge.verdict(iv)
    assert kind == "unclear" and text == f"no clear gain (+0.000 [{iv.lo:+.3f}, {iv.hi:+.3f}])"
    two = stats.diff_t_ci([0.9, 0.91], [0.7, 0.71])  # far apart, but two runs a side
    assert two.has_ci and tuning_judge.verdict(two)[0] == "unclear"
    assert "too few runs" in tuning_judge.verdict(two)[1]


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


def test_a_study_that_cannot_be_judged_says_why_in_the_headline():
    from pathlib import Path

    gone = tuning_studies.Study("cnn_gone", Path(), problem="its folder does not exist")
    text = tuning_judge.headline(pd.DataFrame(), [gone])
    assert "cnn_gone: not judged (its folder does not exist)." in text
    assert tuning_judge.headline(pd.DataFrame(), []) is None


def test_the_pooled_headline_names_a_framework_whose_verdict_differs():
    from pathlib import Path

    st = tuning_studies.Study("cnn_m", Path(), definition={"cell": dict(CNN_XS, size="m")})
    gain, unclear = stats.diff_t_ci([0.95, 0.96, 0.97], [0.90, 0.91, 0.92]), \
        stats.diff_t_ci([0.95, 0.91, 0.97], [0.94, 0.92, 0.93])
    res = [{"framework": "torch", "verdict": tuning_judge.verdict(unclear)},
           {"framework": "tf", "verdict": tuning_judge.verdict(gain)},
           {"framework": tables.POOLED, "verdict": tuning_judge.verdict(gain)}]
    line = tuning_judge.verdict_line(st, res, pooled_only=True)
    assert "pooled tuning bought +0.050" in line
    assert line.endswith(f"(PyTorch alone: {tuning_judge.verdict(unclear)[1]})")
    assert "TensorFlow" not in line  # it agrees with the pooled verdict
    assert "alone" not in tuning_judge.verdict_line(st, res[1:], pooled_only=True)
