"""The overview page (bench.report.overview): headline findings, the published comparison,
convergence."""

from __future__ import annotations

import math
import re

import pytest
from report_data import _flat, _study, frame, smoke_records, visible_text

from bench.report import overview

pytestmark = pytest.mark.usefixtures("strict")


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


def test_the_overview_states_what_tuning_bought_where_a_study_ran(two_sizes, tmp_path):
    """A user reads the overview first: each study's pooled verdict is a headline finding,
    a loss as plainly as a gain; without studies there is no tuning finding."""
    text = visible_text((two_sizes / "reports" / "index.html").read_text())
    head = text[text.index("Headline findings"):text.index("Against published results")]
    assert re.search(r"Tuning \(each Optuna study's best parameters on fresh seeds .*\): cnn m "
                     r"on mnist1d, trials in PyTorch: pooled tuning bought \+0\.100 "
                     r"\[\+0\.0\d\d, \+0\.1\d\d\]; cnn xs on mnist1d, trials in PyTorch: pooled "
                     r"tuning made it worse: -0\.100 \[-0\.1\d\d, -0\.0\d\d\]\.", head)
    assert "PyTorch tuning" not in head  # the pooled verdict only; frameworks on the page
    assert len(overview.findings(frame(smoke_records(), tmp_path))) == 3
