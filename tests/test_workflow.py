"""The Snakemake workflow end to end on config/smoke.yaml, in a temporary directory."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, snakemake

from bench.config import check_config
from bench.study import plan

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _smoke_plan():
    cfg = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    return plan(check_config(cfg, ROOT / "workflow/schemas/config.schema.yaml"))


def test_smoke_study_writes_every_record_and_the_summary(smoke_workflow):
    wd, _ = smoke_workflow
    specs = _smoke_plan()
    everything = {p.stem: json.loads(p.read_text()) for p in (wd / "results/runs").glob("*.json")}
    # final runs of the tuning studies carry the study's name in `tuned`
    records = {k: r for k, r in everything.items() if not r.get("tuned")}
    assert set(records) == {s.run_id for s in specs}
    for s in specs:
        r = records[s.run_id]
        assert r["status"] == "ok", r.get("message")
        assert r["family"] == s.family and r["framework"] == s.framework
        assert r["params"] > 0 and r["train_samples_per_s"] > 0 and r["infer_samples_per_s"] > 0
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["curve"] and r["curve"][-1]["epoch"] == r["epochs_run"]
    df = pd.read_csv(wd / "results/summary.csv")
    assert len(df) == len(everything) and set(df["run_id"]) == set(everything)
    assert {"status", "params", "test_acc", "train_samples_per_s", "peak_rss_mb", "curve"} <= set(
        df.columns
    )
    assert (df["status"] == "ok").all()
    pq = pd.read_parquet(wd / "results/summary.parquet")
    assert len(pq) == len(df)
    # every job's process cost is recorded by Snakemake's benchmark directive
    bench_files = list((wd / "results/benchmarks/train").glob("*.tsv"))
    assert bench_files and all("s\th:m:s" in f.read_text() for f in bench_files)
    # no temporary record files left behind
    assert not list((wd / "results/runs").glob(".*"))


def test_rerun_with_nothing_changed_does_nothing(smoke_workflow):
    wd, _ = smoke_workflow
    p = snakemake(wd, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Nothing to be done" in p.stdout + p.stderr


def test_rerun_after_adding_a_seed_trains_only_the_new_runs(copy_smoke):
    wd = copy_smoke
    before = {p.name: p.stat().st_mtime_ns for p in (wd / "results/runs").glob("*.json")}
    cfg = yaml.safe_load((wd / "config/smoke.yaml").read_text())
    cfg["study"]["seeds"] = [0, 1, 2]
    cfg["study"]["families"] = ["cnn"]
    cfg["study"]["frameworks"] = ["torch"]
    (wd / "config/more.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake(wd, "--cores", "2", "--configfile", "config/more.yaml")
    assert p.returncode == 0, p.stderr[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in (wd / "results/runs").glob("*.json")}
    new = set(after) - set(before)
    assert new and all("-s2-" in n for n in new)
    assert all(after[n] == before[n] for n in before), "finished runs were recomputed"
    log = "".join(f.read_text() for f in (wd / "results/logs/train").glob("torch-cnn-*"))
    assert "kept (ok)" in log


def test_dry_run_and_lint_are_clean(tmp_path):
    wd = copy_workflow(tmp_path)
    p = snakemake(wd, "-n")
    assert p.returncode == 0, p.stderr[-2000:]
    p = snakemake(wd, "--lint")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Lints for" not in p.stdout + p.stderr, p.stdout + p.stderr


BAD = [
    ({"study": {"familys": ["cnn"]}}, "familys"),
    ({"threads": "two"}, "threads"),
    ({"study": {"families": ["cnn", "rnn"]}}, "rnn"),
    ({"study": {"optimizers": {"adamm": {"lr": 0.1}}}}, "adamm"),
    ({"study": {"datasets": ["cifar"]}}, "cifar"),
    ({"study": {"sizes": []}}, "study.sizes"),
    ({"study": {"datasets": ["mnist"]}}, "mnist.npz"),
    ({"study": {"regularisers": ["none; touch /tmp/pwned"]}}, "regularisers"),
    ({"data_dir": "$(touch pwned)"}, "data_dir"),
]


@pytest.mark.parametrize("override,needle", BAD, ids=[b[1] for b in BAD])
def test_bad_config_stops_before_any_job_with_one_line(tmp_path, override, needle):
    wd = copy_workflow(tmp_path)
    cfg = yaml.safe_load((wd / "config/smoke.yaml").read_text())
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k].update(v)
        else:
            cfg[k] = v
    (wd / "config/bad.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake(wd, "--cores", "1", "--configfile", "config/bad.yaml")
    assert p.returncode != 0
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], p.stdout + p.stderr
    assert not (wd / "results").exists()
    assert not (wd / "pwned").exists()
