"""The Snakemake workflow end to end on config/smoke.yaml, in a temporary directory."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, snakemake, snakemake_env, study_variant, writes_denied

from bench.config import check_config
from bench.study.plan import lr_grid_runs, plan, unit_of

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _smoke_config(path: Path = ROOT / "config/smoke.yaml"):
    cfg = yaml.safe_load(path.read_text())
    return check_config(cfg, ROOT / "workflow/schemas/config.schema.yaml")


def _job_ids(wd: Path, grid: bool | None = None) -> set[str]:
    """Run ids the finished jobs list (grid=True: the learning-rate grid jobs only)."""
    out = set()
    for f in (wd / "results/jobs").glob("*.json"):
        if grid is None or f.name.startswith("lr-") == grid:
            out |= set(json.loads(f.read_text()))
    return out


def test_smoke_study_writes_every_record_and_the_summary(smoke_workflow):
    wd, proc = smoke_workflow
    config = _smoke_config()
    specs = plan(config)
    everything = {p.stem: json.loads(p.read_text()) for p in (wd / "results/runs").glob("*.json")}
    # final runs of the tuning studies carry the study's name in `tuned`
    records = {k: r for k, r in everything.items() if not r.get("tuned")}
    assert set(records) == _job_ids(wd)
    assert _job_ids(wd, grid=True) == {s.run_id for s in lr_grid_runs(config, specs)}
    # every planned run ran once, at the rate chosen for its unit on validation
    chosen = {}
    for f in (wd / "results/lr").glob("*.json"):
        for u in json.loads(f.read_text())["units"]:
            chosen[(u["family"], u["dataset"], u["size"], u["optimizer"])] = u["lr"]
    study = _job_ids(wd, grid=False)
    assert len(study) == len(specs)
    # each training job prints the study's progress; the last one, every run done
    n = len(study) + len(_job_ids(wd, grid=True))
    progress = [ln for ln in proc.stdout.splitlines() if "training runs done" in ln]
    assert f"study: {n} of {n} training runs done (100%)" in progress[-1]
    assert any(re.search(r"about [\d.]+ (s|min|h) left", ln) for ln in progress)
    assert {s.with_(lr=chosen[unit_of(s)]).run_id for s in specs} == study
    for s in specs:
        r = records[s.with_(lr=chosen[unit_of(s)]).run_id]
        assert r["status"] == "ok", r.get("message")
        assert r["family"] == s.family and r["framework"] == s.framework
        inference = "decode_tokens_per_s" if s.family == "seq2seq" else "infer_samples_per_s"
        assert r["params"] > 0 and r["train_samples_per_s"] > 0 and r[inference] > 0
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["curve"] and r["curve"][-1]["epoch"] == r["epochs_run"]
        assert r["stop_reason"] in ("plateau", "cap") and r["converged"] == (
            r["stop_reason"] == "plateau")
        assert r["val_acc"] == max(p["val_acc"] for p in r["curve"])  # tested at the best
    grid = [records[i] for i in _job_ids(wd, grid=True)]
    for key, lr in chosen.items():  # the chosen rate won on validation among its unit's runs
        unit = [g for g in grid if (g["family"], g["dataset"], g["size"], g["optimizer"]) == key]
        assert len(unit) == len(config["study"]["lr_grid"])
        assert max(unit, key=lambda g: (g["best_val_acc"], -g["lr"]))["lr"] == lr
    df = pd.read_csv(wd / "results/summary.csv")
    assert len(df) == len(everything) and set(df["run_id"]) == set(everything)
    roles = df.set_index("run_id")["lr_role"].fillna("")
    assert (roles[list(study)] == "chosen").all()
    assert set(roles[list(_job_ids(wd, grid=True) - study)]) == {"grid"}
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


def test_save_model_keeps_weights_the_translate_verb_reads(smoke_workflow, bench_cmd):
    wd, _ = smoke_workflow
    runs = wd / "results/runs"
    for rec in runs.glob("*.json"):
        r = json.loads(rec.read_text())
        if r["status"] == "ok":  # save_model: true in the smoke config
            assert (runs / r["weights_file"]).is_file(), rec.name
    s2s = sorted(runs.glob("seq2seq-tf-*.json"))
    assert s2s
    p = subprocess.run([*bench_cmd, "translate", "--run", str(s2s[0]), "--framework", "torch",
                        "one hundred and eighty-one", "seventy-one"], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    assert len(p.stdout.splitlines()) == 2


def test_rerun_with_nothing_changed_does_nothing(copy_smoke):
    wd = copy_smoke  # a copy: the shared study stays read-only while other workers copy it
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


def test_a_definition_lost_by_a_failed_create_is_created_again(copy_smoke):
    """Snakemake removes a job's outputs before it runs, so a tune_create that fails or is
    killed on a rerun leaves its study without study.json, while the workers' and finals'
    outputs stand. The finals read it (the transfer check reads the smaller study's), so
    the next run must create it again rather than fail at the final with 'run tune-create'."""
    wd = copy_smoke
    small = sorted((wd / "results/tune").glob("cnn-torch-mnist1d-xs-*"))[0]
    large = sorted((wd / "results/tune").glob("cnn-torch-mnist1d-s-*"))[0]
    (small / "study.json").unlink()
    best = json.loads((small / "best.json").read_text())["best_params"]
    # the finals must run (as after a config change), the transfer check's among them
    p = snakemake(wd, "--cores", "2", "--configfile", "config/smoke.yaml",
                  "--forcerun", "tune_final")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "creating Optuna study " + small.name in p.stdout + p.stderr
    assert (small / "study.json").exists() and (large / "final-torch.json").exists()
    # created again, it resumed its journal: the same trials, the same best parameters
    assert json.loads((small / "best.json").read_text())["best_params"] == best


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
    ({"runs_per_job": 5000}, "runs_per_job"),
    ({"tune": {"objective": "speed"}}, "speed"),
    ({"tune": {"studies": [{"family": "cnn", "framework": "jax", "dataset": "mnist1d",
                            "sizes": ["s"]}]}}, "jax"),
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


# ---------------------------------------------------------------------------- faults


def _records(wd: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (wd / "results/runs").glob("*.json")}


def _kill_everything_in(wd: Path) -> None:
    """SIGKILL every process working in `wd`: Snakemake and the jobs it started."""
    for pid in [int(d) for d in os.listdir("/proc") if d.isdigit()]:
        try:
            if Path(f"/proc/{pid}/cwd").resolve() == wd.resolve():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass


def test_kill_9_mid_study_then_the_documented_rerun_completes(tmp_path):
    wd = copy_workflow(tmp_path)
    runs = wd / "results/runs"
    # the smoke study's PyTorch CNN: its grid is the whole study's (the grid runs in the
    # first framework) and the kill lands in it; TensorFlow would add jobs, not paths
    cfg = study_variant(wd, "cnn", **{"study.families": ["cnn"], "study.frameworks": ["torch"]})
    config = _smoke_config(wd / cfg)
    grid = {s.run_id for s in lr_grid_runs(config, plan(config))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", cfg],
        cwd=wd, env=snakemake_env(wd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while len(list(runs.glob("*.json"))) < 3 and time.time() < deadline:
        assert proc.poll() is None, "the study ended before it could be killed"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake, and jobs left in its process group
    _kill_everything_in(wd)  # and jobs it started in sessions of their own
    proc.wait()
    finished = _records(wd)
    assert 3 <= len(finished) < len(grid)  # killed in the middle of the grid
    # What a writer killed mid-write could leave, were writes not atomic: a truncated record
    # of an unfinished run and a temporary file. Neither may ever be read as a result.
    torn = sorted(grid - {n.removesuffix(".json") for n in finished})[0]
    (runs / f"{torn}.json").write_text(json.dumps({"run_id": torn, "status": "ok"})[:-1] + ", ")
    (runs / f".{torn}.json.k1ll3d.tmp").write_text('{"run_id": "')

    t0 = time.time()
    # README "Resuming after a crash": unlock, then the same command with --rerun-incomplete.
    p = snakemake(wd, "--unlock")
    assert p.returncode == 0, p.stderr[-2000:]
    p = snakemake(wd, "--cores", "2", "--configfile", cfg, "--rerun-incomplete")
    assert p.returncode == 0, p.stderr[-3000:]
    print(f"recovery: {time.time() - t0:.1f} s after {len(finished)} finished runs")
    after = _records(wd)
    assert {n: after[n] for n in finished} == finished, "a finished run was recomputed"
    plain = {n: json.loads(b) for n, b in after.items()}
    want = _job_ids(wd)
    assert len(want) > len(grid) and grid <= want
    assert want <= {n.removesuffix(".json") for n in plain}
    assert all(plain[f"{r}.json"]["status"] == "ok" for r in want)
    assert plain[f"{torn}.json"]["curve"], "the torn record was not trained again"
    assert not list(runs.glob(".*.tmp"))
    df = pd.read_csv(wd / "results/summary.csv")
    assert want <= set(df["run_id"]) and (df["status"] == "ok").all()
    assert (wd / "reports/index.html").exists()


def test_diverged_and_oom_runs_are_recorded_and_reported(copy_smoke):
    wd = copy_smoke
    cfg = study_variant(
        wd, "faulty", **{"study.families": ["cnn"], "study.frameworks": ["torch"],
                         "study.seeds": [0, 1, 2], "study.optimizers": {
                             "adam": {"lr": 0.003}, "sgd": {"lr": 1e12}},
                         "mem_limit_mb": 1, "tune.studies": []},
    )
    before = _records(wd)
    # New runs: sgd at lr 1e12 (and its grid's 5e11) diverges; a new adam run passes the
    # 1 MB memory limit; adam runs kept from the smoke study stay ok.
    p = snakemake(wd, "--cores", "2", "--configfile", cfg)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(wd / "results/summary.csv").set_index("run_id")
    kept = {n.removesuffix(".json") for n in before}
    sgd, adam = df[df["optimizer"] == "sgd"], df[df["optimizer"] == "adam"]
    assert len(sgd) and (sgd["status"] == "diverged").all()
    new_adam = ~adam.index.isin(kept)
    assert new_adam.any() and (~new_adam).any()
    assert (adam.loc[new_adam, "status"] == "oom").all()
    assert (adam.loc[~new_adam, "status"] == "ok").all()
    n_bad = int((df["status"] != "ok").sum())
    assert df.loc[df["status"] == "diverged", "message"].str.contains("loss became").all()
    assert df.loc[df["status"] == "oom", "message"].str.contains("exceeded the limit").all()
    assert all(_records(wd)[n] == b for n, b in before.items() if n[:-5] in df.index)
    page = (wd / "reports/index.html").read_text()
    assert f"Runs that did not finish ok ({n_bad})" in page
    for run_id in df.index[df["status"] != "ok"]:
        assert df.loc[run_id, "message"][:40] in page


def test_a_record_that_cannot_be_written_stops_its_job_and_keeps_the_rest(copy_smoke):
    wd = copy_smoke
    runs = wd / "results/runs"
    before = _records(wd)
    summary = (wd / "results/summary.csv").read_bytes()
    cfg = study_variant(wd, "more", **{"study.seeds": [0, 1, 2], "study.families": ["cnn"],
                                        "study.frameworks": ["torch"]})
    with writes_denied(runs):
        p = snakemake(wd, "--cores", "2", "--configfile", cfg)
        assert p.returncode != 0
        logs = list((wd / "results/logs/train").glob("torch-cnn-*"))  # jobs with new runs
        assert logs
        for log in logs:
            errors = [ln for ln in log.read_text().splitlines() if "error:" in ln]
            assert len(errors) == 1, log.read_text()[-2000:]
            assert "cannot write results/runs/" in errors[0]
            assert "not permitted" in errors[0] or "Permission denied" in errors[0]  # root/user
        assert _records(wd) == before
        assert (wd / "results/summary.csv").read_bytes() == summary
        assert not list(runs.glob(".*.tmp"))
    t0 = time.time()
    p = snakemake(wd, "--cores", "2", "--configfile", cfg)  # the same command, once fixed
    assert p.returncode == 0, p.stderr[-3000:]
    print(f"recovery: {time.time() - t0:.1f} s")
    after = _records(wd)
    assert {n: after[n] for n in before} == before
    new = set(after) - set(before)
    assert len(new) == 5 and all("-s2-" in n for n in new)  # seed 2 of cnn/torch's 5 cells
