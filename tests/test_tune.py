"""bench.tune: Optuna studies with exact trial budgets, pruning, resume and export.

Most tests train a fake model (a learning curve computed from the learning rate) so they
check the study machinery in a second; the `slow` ones train real PyTorch models in worker
subprocesses exactly as the workflow runs them, and kill one with SIGKILL mid-trial.
"""

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench import tune
from bench.config import check_config
from bench.registry import SpecError
from bench.tune.common import import_optuna
from bench.tune.liveness import _start_ticks
from bench.tune.storage import trial_id

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
CELL = {"family": "gru", "framework": "torch", "dataset": "mnist1d", "size": "xs"}
FAST_MEASURE = {"measure": {"warmup_steps": 2, "block_steps": 5, "block_seconds": 0.02}}

# A worker process with a fake trainer: accuracy peaks at lr = 3e-3; lr > 0.02 diverges
# (NaN loss) and lr < 2e-4 raises, when FAKE_EDGES is set.
FAKE_WORKER = textwrap.dedent('''
    import math, os, sys, time
    from bench import tune
    from bench.tune.common import import_optuna

    def fake(spec, on_epoch):
        edges = os.environ.get("FAKE_EDGES") == "1"
        if edges and spec.lr < 2e-4:
            raise RuntimeError("fake failure")
        q = math.exp(-abs(math.log10(spec.lr) + 2.5))
        t0, curve = time.time(), []
        for e in range(1, spec.epochs + 1):
            time.sleep(float(os.environ.get("FAKE_SLEEP", "0.005")))
            if edges and spec.lr > 0.02 and e == 2:
                return {"status": "diverged", "message": "loss became nan", "epochs_run": 1,
                        "curve": curve}
            p = {"epoch": e, "step": 10 * e, "train_loss": 1.0, "val_loss": 1.0,
                 "val_acc": q * (1 - 0.5 ** e), "elapsed_s": time.time() - t0 + 1e-3}
            curve.append(p)
            if on_epoch(e, p):
                return {"status": "pruned", "val_acc": p["val_acc"], "epochs_run": e,
                        "curve": curve}
        return {"status": "ok", "val_acc": curve[-1]["val_acc"], "epochs_run": len(curve),
                "train_samples_per_s": 100.0 * spec.batch_size, "peak_rss_mb": 100.0,
                "curve": curve}

    if __name__ == "__main__":
        gate = os.environ.get("FAKE_GATE")
        if gate:  # start with the others: optuna imported, then wait for the gate to open
            import_optuna()
            open(f"{gate}.{sys.argv[2]}", "w").close()
            while not os.path.exists(gate):
                time.sleep(0.005)
        tune.run_worker(sys.argv[1], int(sys.argv[2]), train_fn=fake,
                        done=sys.argv[3] if len(sys.argv) > 3 else None)
''')


def _fake():
    """The fake trainer of FAKE_WORKER, for workers run in this process."""
    ns: dict = {}
    exec(compile(FAKE_WORKER, "fake_worker", "exec"), ns)
    return ns["fake"]


@pytest.fixture(autouse=True)
def _own_slots(tmp_path, monkeypatch):
    """Workers in this process take CPU slots of their own, not the machine's."""
    monkeypatch.setenv("BENCH_SLOT_DIR", str(tmp_path / "slots"))


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SLOT_DIR": str(tmp_path / "slots")}


def _definition(**tune_kw) -> dict:
    t = {"trials": 6, "epochs": 4, "heartbeat_s": 1, "grace_s": 5,
         "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.05, "log": True},
                   "batch_size": {"type": "categorical", "choices": [32, 64]}}}
    t.update(tune_kw)
    return tune.make_definition(t, CELL, FAST_MEASURE)


def _create(tmp_path: Path, defn: dict) -> Path:
    study_dir = tmp_path / "tune" / defn["name"]
    tune.create(defn, study_dir / "study.json")
    return study_dir


def _start_fake_workers(tmp_path: Path, study_dir: Path, k: int, together: bool = False,
                        **env) -> list[subprocess.Popen]:
    """K worker processes with the fake trainer; worker i writes its summary to done-i.json.

    `together`: each imports optuna, then all start at one moment (a gate file), so they
    really race for the first tickets instead of starting one import time apart.
    """
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    gate = tmp_path / "gate"
    if together:
        env["FAKE_GATE"] = str(gate)
        for f in tmp_path.glob("gate*"):
            f.unlink()
    procs = [subprocess.Popen([sys.executable, str(script), str(study_dir), str(i),
                               str(tmp_path / f"done-{i}.json")],
                              env={**_env(tmp_path), **env}, cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for i in range(k)]
    deadline = time.time() + 120
    while together and not all(Path(f"{gate}.{i}").exists() for i in range(k)):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            break  # a worker died before the gate: _wait_workers shows why
        time.sleep(0.01)
    if together:
        gate.touch()
    return procs


def _wait_workers(procs: list[subprocess.Popen]) -> list[str]:
    logs = [p.communicate(timeout=120)[1] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    return logs


def _fake_workers(tmp_path: Path, study_dir: Path, k: int, **env) -> list[str]:
    return _wait_workers(_start_fake_workers(tmp_path, study_dir, k, **env))


def _trials(study_dir: Path):
    defn = tune.read_definition(study_dir)
    return defn, tune.load(defn, study_dir).get_trials()


def _assert_exact_budget(study_dir: Path) -> dict:
    defn, trials = _trials(study_dir)
    n = defn["trials"]
    p = tune.progress(trials, n)
    assert p["finished"] == n and p["running"] == 0 and p["waiting"] == 0
    counted = [t for t in trials if not tune.is_void(t)]
    assert len(counted) == n  # no extra trial beyond the budget
    assert sorted(t.system_attrs[tune.TICKET] for t in counted) == list(range(n))
    assert all(t.state.is_finished() for t in counted)
    return p


def _ran(tmp_path: Path, workers) -> dict[int, list[int]]:
    """The trial numbers each worker ran, from its done-i.json summary."""
    return {i: [r["number"] for r in json.loads((tmp_path / f"done-{i}.json").read_text())["ran"]]
            for i in workers}


def _assert_each_trial_ran_once(tmp_path: Path, study_dir: Path, k: int) -> set[int]:
    """Every trial was run by exactly one of the k workers (their done-i.json summaries);
    returns the workers that ran at least one trial."""
    _, trials = _trials(study_dir)
    ran = _ran(tmp_path, range(k))
    numbers = [n for ns in ran.values() for n in ns]
    assert sorted(numbers) == sorted(t.number for t in trials)  # none twice, none skipped
    for i, ns in ran.items():
        assert all(trials[n].user_attrs["worker"] == i for n in ns)
    return {i for i, ns in ran.items() if ns}


def _most_at_once(trials) -> int:
    """The most trials that were running at the same moment."""
    events = sorted([(t.datetime_start, 1) for t in trials]
                    + [(t.datetime_complete, -1) for t in trials])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


# ---------------------------------------------------------------------------- config


def _smoke_config(**tune_kw) -> dict:
    """config/smoke.yaml with one study, of CELL, unless `studies` says otherwise."""
    cfg = yaml.safe_load((ROOT / "config/smoke.yaml").read_text())
    cfg["tune"]["studies"] = [{**{k: CELL[k] for k in ("family", "framework", "dataset")},
                               "sizes": [CELL["size"]]}]
    cfg["tune"].update(tune_kw)
    return cfg


@pytest.mark.parametrize("space, message", [
    ([{"name": "lr", "type": "float", "low": 0.1, "high": 0.01}],
     "config key tune.space.lr: low 0.1 > high 0.01"),
    ([{"name": "lr", "type": "gauss", "low": 0.1, "high": 0.2}],
     "config key tune.space[0].type: 'gauss' is not one of float, int, categorical"),
    ([{"name": "lr", "type": "float", "low": 0, "high": 0.1, "log": True}],
     "config key tune.space.lr: a log distribution needs low > 0"),
    ([{"name": "optimizer", "type": "categorical", "choices": ["adam", "adamm"]}],
     "config key tune.space.optimizer: choice 'adamm' is not a valid optimizer"),
    ([{"name": "dropout", "type": "float", "low": 0.0, "high": 1.5}],
     "config key tune.space.dropout: high 1.5 is not a valid dropout"),
    ([{"name": "learning_rate", "type": "float", "low": 0.1, "high": 0.2}],
     "config key tune.space[0].name: 'learning_rate' is not one of lr"),
    ([{"name": "lr", "type": "categorical", "choices": [0.1]}],
     "config key tune.space.lr: distribution 'categorical' does not fit lr"),
    ([{"name": "lr", "type": "float", "low": 0.1, "high": 0.2}] * 2,
     "config key tune.space[1]: parameter 'lr' is listed twice"),
])
def test_a_bad_search_space_is_one_clear_error(space, message):
    cfg = _smoke_config(space=space)
    with pytest.raises(SpecError) as e:
        tune.plan_studies(check_config(cfg, SCHEMA))
    assert str(e.value).startswith(message), str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_distribution_outside_the_workflow_is_a_clear_error():
    with pytest.raises(SpecError, match=r"space.lr: unknown distribution 'gauss'; allowed: "):
        tune.parse_space({"lr": {"type": "gauss", "low": 1, "high": 2}}, {**CELL})


def test_cli_rejects_a_bad_definition_with_exit_2_and_writes_nothing(tmp_path, bench_cmd):
    defn = _definition()
    defn["space"]["lr"] = {"type": "float", "low": 0.1, "high": 0.001, "log": True}
    out = tmp_path / "s" / "study.json"
    p = subprocess.run([*bench_cmd, "tune-create", "--definition", json.dumps(defn),
                        "--out", str(out)], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "python -m bench tune-create: error: definition.space.lr: low 0.1 > high 0.001"]
    assert not out.parent.exists()


def test_plan_names_are_stable_and_budget_changes_keep_the_study():
    cfg = check_config(_smoke_config(), SCHEMA)
    [s] = tune.plan_studies(cfg)
    assert s.name.startswith("gru-torch-mnist1d-xs-acc-") and s.workers == 2
    assert tune.plan_studies(cfg)[0].definition == s.definition
    more = check_config(_smoke_config(trials=9, workers=3), SCHEMA)
    assert tune.plan_studies(more)[0].name == s.name  # continues the same study
    other = check_config(_smoke_config(epochs=3), SCHEMA)
    assert tune.plan_studies(other)[0].name != s.name  # a different study
    assert tune.worker_files(s) == [f"results/tune/{s.name}/workers/{k}.json" for k in (0, 1)]
    default = check_config(yaml.safe_load((ROOT / "config/config.yaml").read_text()), SCHEMA)
    assert tune.plan_studies(default), "the default config runs at least one study"


def test_a_study_outside_the_workflow_takes_the_schema_defaults():
    """tune.DEFAULTS and DEFAULT_SPACE are read from the config schema: a config that names
    only the cells plans exactly the definition make_definition builds from nothing."""
    cfg = _smoke_config()
    cfg["tune"] = {"studies": [{**{k: CELL[k] for k in ("family", "framework", "dataset")},
                                "sizes": [CELL["size"]]}]}
    cfg = check_config(cfg, SCHEMA)
    [s] = tune.plan_studies(cfg)
    assert s.definition == tune.make_definition({}, CELL, cfg)
    assert cfg["tune"]["space"] == tune.DEFAULT_SPACE
    # the defaults the README's tuning table states
    d = tune.DEFAULTS
    assert (d["trials"], d["workers"], d["seed"], d["heartbeat_s"], d["grace_s"]) == (
        20, 2, 100, 30, 300)
    # null: the study's budget, seeds and frameworks
    assert {k: d[k] for k in ("epochs", "patience", "min_epochs", "max_steps", "final_seeds",
                              "final_frameworks")} == dict.fromkeys(
        ("epochs", "patience", "min_epochs", "max_steps", "final_seeds", "final_frameworks"))
    assert set(s.definition["space"]) == {e["name"] for e in tune.DEFAULT_SPACE}


def test_a_trial_trains_as_the_study_runs_do_and_finals_use_the_study_seeds():
    """Issue: 4-epoch trials rewarded whatever learns fastest in 4 epochs, and the final runs
    shared the trials' seed. A trial now has the study's cap, patience, min_epochs and the
    family's settings; the finals run in every framework on the seeds the untuned runs of
    the cell have, and never on the trials' seed."""
    from bench.study.plan import plan

    cfg = _smoke_config()
    for k in ("epochs", "max_steps", "final_seeds"):
        cfg["tune"].pop(k)
    cfg["study"]["family_settings"]["gru"] = {"lr_warmup": 7}
    cfg = check_config(cfg, SCHEMA)
    [s] = tune.plan_studies(cfg)
    base = s.definition["base"]
    study = cfg["study"]
    assert (base["epochs"], base["patience"], base["min_epochs"], base["lr_warmup"]) == (
        study["epochs"], study["patience"], study["min_epochs"], 7)
    assert base["optimizer"] == study["centre"]["optimizer"]
    assert s.definition["final_seeds"] == {"torch": [0, 1], "tf": [1000, 1001]}
    untuned = {(r.framework, r.seed) for r in plan(cfg)
               if (r.family, r.size, r.dataset) == ("gru", "xs", "mnist1d")}
    finals = {(fw, x) for fw, seeds in s.definition["final_seeds"].items() for x in seeds}
    assert finals == untuned
    assert s.definition["seed"] not in {x for _, x in finals}
    with pytest.raises(SpecError, match="trials' seed 1000 is also a final seed of tf"):
        tune.plan_studies(check_config(_smoke_config(seed=1000), SCHEMA))
    # a tuned fixed-length schedule trains its whole cap, as in the study
    spec = tune.spec_for(s.definition, {"lr_schedule": "cosine"})
    assert spec.patience == 0 and tune.spec_for(s.definition, {}).patience == study["patience"]


def test_two_sizes_of_one_entry_give_a_transfer_check_at_the_largest(tmp_path):
    cfg = check_config(_smoke_config(studies=[
        {"family": "gru", "framework": "torch", "dataset": "mnist1d", "sizes": ["s", "xs"]}]),
        SCHEMA)
    small, big = tune.plan_studies(cfg)
    assert (small.definition["cell"]["size"], big.definition["cell"]["size"]) == ("xs", "s")
    assert (small.transfer_from, big.transfer_from) == ("", small.name)
    assert tune.final_files([big]) == [f"results/tune/{big.name}/final-torch.json",
                                       f"results/tune/{big.name}/final-tf.json"]
    dirs = {}
    for st, lr in ((small, 0.004), (big, 0.02)):
        dirs[st.name] = _create(tmp_path, st.definition)
        (dirs[st.name] / "best.json").write_text(json.dumps({"best_params": {"lr": lr}}))
    specs = tune.final_specs(dirs[big.name], "tf", transfer_from=dirs[small.name])
    # smoke.yaml's final_seeds [0]: tf, the second framework, runs 0 + 1000
    assert [(x.size, x.lr, x.seed, x.tuned, x.framework) for x in specs] == [
        ("s", 0.02, 1000, big.name, "tf"), ("s", 0.004, 1000, small.name, "tf")]
    only_tf = tune.make_definition({"final_frameworks": ["tf"], "epochs": 2}, CELL, cfg)
    with pytest.raises(SpecError, match="no final runs in 'torch'"):
        tune.final_specs(_create(tmp_path / "one", only_tf), "torch")


@pytest.mark.slow
def test_snakemake_schedules_create_workers_export_final(tmp_path):
    shutil.copy(ROOT / "Snakefile", tmp_path / "Snakefile")
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, tmp_path / name)
    p = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile",
                        "config/smoke.yaml"], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    counts = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # smoke.yaml: one entry of two sizes, 2 workers each, one final job per framework of
    # each study (a process imports one framework)
    assert counts["tune_create"] == 2 and counts["tune_worker"] == 4
    assert counts["tune_export"] == 2 and counts["tune_final"] == 4


# ---------------------------------------------------------------------------- budget


def test_racing_workers_end_with_exactly_n_trials(tmp_path):
    defn = _definition(trials=7, epochs=2)
    study_dir = _create(tmp_path, defn)
    _fake_workers(tmp_path, study_dir, 3, FAKE_SLEEP="0")
    p = _assert_exact_budget(study_dir)
    assert p["void"] == 0
    tune.create(defn, study_dir / "study.json")  # creating again changes nothing
    _fake_workers(tmp_path, study_dir, 1)  # nor does a worker started late
    assert len(_trials(study_dir)[1]) == 7


def test_eight_workers_at_once_end_with_exactly_n_trials(tmp_path):
    """Eight worker processes released at one moment race for 24 tickets; no CPU slots (as
    under SLURM), so all eight pop tickets at the same time."""
    defn = _definition(trials=24, epochs=2)
    study_dir = _create(tmp_path, defn)
    _wait_workers(_start_fake_workers(tmp_path, study_dir, 8, together=True,
                                      FAKE_SLEEP="0.05", BENCH_SLOTS="0"))
    p = _assert_exact_budget(study_dir)
    _, trials = _trials(study_dir)
    assert p["void"] == 0 and len(trials) == 24  # no duplicate, no lost, no extra trial
    assert len(_assert_each_trial_ran_once(tmp_path, study_dir, 8)) >= 4
    assert _most_at_once(trials) >= 4  # they did run at once


def test_tickets_reissued_twice_at_once_run_once(tmp_path):
    from optuna.trial import TrialState, create_trial

    defn = _definition(trials=3)
    study_dir = _create(tmp_path, defn)
    sa, sb = tune.open_storage(defn, study_dir), tune.open_storage(defn, study_dir)
    a, b = tune.load(defn, study_dir, sa), tune.load(defn, study_dir, sb)  # two processes
    # both pop the same ticket: exactly one wins
    t = a.get_trials()[0]
    tid = trial_id(sa, a, t.number)
    assert trial_id(sb, b, t.number) == tid
    assert sa.set_trial_state_values(tid, TrialState.RUNNING) is True
    assert sb.set_trial_state_values(tid, TrialState.RUNNING) is False
    # its worker dies; two workers reap it and both reissue the ticket
    sa.set_trial_system_attr(tid, tune.OWNER, {"host": "gone", "pid": 1})
    sa.set_trial_system_attr(tid, tune.HEARTBEAT, time.time() - 60)
    assert tune.reap(a, sa, defn) == 1 and tune.reap(b, sb, defn) == 0
    assert tune.issue_tickets(a, 3) == 1
    # b reissued it at the same moment (before it could see a's copy)
    b.add_trial(create_trial(state=TrialState.WAITING,
                             system_attrs={"fixed_params": {}, tune.TICKET: 0}))
    _fake_workers(tmp_path, study_dir, 2)
    p = _assert_exact_budget(study_dir)
    _, trials = _trials(study_dir)
    assert sorted(tune.VOID in t.system_attrs and t.system_attrs[tune.VOID]
                  for t in trials if tune.is_void(t)) == ["duplicate", "lost"]
    assert p["void"] == 2


@pytest.mark.parametrize("kind", ["journal", "rdb"])
def test_the_optuna_behaviour_tickets_and_reaping_rely_on_is_still_there(tmp_path, kind):
    """What bench.tune needs of Optuna beyond its documented surface (the `fixed_params`
    system attribute is private: pyproject pins the tested Optuna range), checked so that an
    upgrade fails here, naming what moved, rather than as lost or doubled trials."""
    optuna = import_optuna()
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    def open_storage():
        if kind == "rdb":
            return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
        return optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "j.log")))

    mine, theirs = open_storage(), open_storage()  # two workers' storages
    study = optuna.create_study(study_name="contract", storage=mine)
    study.enqueue_trial({"lr": 0.01})
    assert study.get_trials()[0].system_attrs.get("fixed_params") == {"lr": 0.01}, (
        "Optuna no longer keeps a waiting trial's parameters in system_attrs['fixed_params'] "
        "(see enqueue_trial); bench.tune.tickets.issue_tickets writes them there to retry a "
        "lost trial with its parameters")
    study.add_trial(create_trial(state=TrialState.WAITING,
                                 system_attrs={"fixed_params": {"lr": 0.02}, tune.TICKET: 0}))
    tid = trial_id(mine, study, 1)
    assert mine.set_trial_state_values(tid, TrialState.RUNNING) is True
    assert theirs.set_trial_state_values(tid, TrialState.RUNNING) is False, (
        "storage.set_trial_state_values(WAITING -> RUNNING) no longer returns False to the "
        "loser of a race; bench.tune.tickets.claim relies on it for exactly N trials")
    trial = optuna.Trial(study, tid)
    assert trial.suggest_float("lr", 1e-4, 1.0, log=True) == 0.02, (
        "a trial popped from a waiting trial no longer suggests its system_attrs"
        "['fixed_params']; a retried ticket would not rerun the lost trial's parameters")
    study.tell(trial, 0.5)
    for write in (lambda: theirs.set_trial_system_attr(tid, tune.VOID, "lost"),
                  lambda: theirs.set_trial_state_values(tid, TrialState.FAIL)):
        with pytest.raises(UpdateFinishedTrialError):  # reap: it finished meanwhile
            write()
    assert study.get_trials()[1].state == TrialState.COMPLETE


# ---------------------------------------------------------------------------- outcomes


def test_pruned_diverged_and_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    defn = _definition(trials=10, epochs=4, pruner={"name": "median", "startup_trials": 2},
                       sampler={"name": "random", "seed": 3},
                       space={"lr": {"type": "float", "low": 5e-5, "high": 0.1, "log": True}})
    study_dir = _create(tmp_path, defn)
    os.environ["FAKE_EDGES"] = "1"
    try:
        tune.run_worker(study_dir, 0, train_fn=_fake())
    finally:
        del os.environ["FAKE_EDGES"]
    _assert_exact_budget(study_dir)
    _, trials = _trials(study_dir)
    by_status = {}
    for t in trials:
        by_status.setdefault(t.user_attrs["status"], []).append(t)
    assert {"ok", "pruned"} <= set(by_status), {k: len(v) for k, v in by_status.items()}
    for t in by_status["pruned"]:
        assert t.state.name == "PRUNED" and t.user_attrs["epochs_trained"] < 4
        assert t.intermediate_values  # the validation curve that decided it
    for t in by_status.get("diverged", []):
        assert t.state.name == "PRUNED"
    for t in by_status.get("error", []):
        assert t.state.name == "FAIL" and "fake failure" in t.user_attrs["message"]
    assert by_status.get("diverged") or by_status.get("error"), "lr range reaches the edges"
    best = tune.export(study_dir)
    df = pd.read_csv(study_dir / "trials.csv")
    assert len(df) == 10 and set(df["state"]) >= {"COMPLETE", "PRUNED"}
    assert {"number", "value", "params_lr", "user_attrs_epochs_trained", "duration",
            "counted"} <= set(df.columns)
    assert len(pd.read_parquet(study_dir / "trials.parquet")) == 10
    assert best["directions"] == ["maximize"] and not best["multi_objective"]
    assert best["best_value"] == df.loc[df["state"] == "COMPLETE", "value"].max()
    assert best["epochs_trained"] == df["user_attrs_epochs_trained"].sum()


def test_multi_objective_study_gives_a_pareto_front_and_prunes_dominated_trials(tmp_path):
    defn = _definition(trials=12, epochs=4, objective="accuracy_throughput",
                       pruner={"name": "hyperband", "startup_trials": 2})
    study_dir = _create(tmp_path, defn)
    tune.run_worker(study_dir, 0, train_fn=_fake())
    _assert_exact_budget(study_dir)
    best = tune.export(study_dir)
    assert best["multi_objective"] and best["directions"] == ["maximize", "maximize"]
    assert best["metrics"] == ["val_acc", "train_samples_per_s"]
    front = best["pareto_front"]
    assert front and best["best_trial"] in [p["number"] for p in front]
    df = pd.read_csv(study_dir / "trials.csv")
    assert {"values_val_acc", "values_train_samples_per_s"} <= set(df.columns)
    pruned = df[df["state"] == "PRUNED"]
    assert len(pruned) and pruned["user_attrs_pruned_by"].notna().all()
    assert (pruned["user_attrs_epochs_trained"] < 4).all()


def test_rdb_storage_from_an_environment_variable(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    defn = _definition(trials=3, storage="rdb", rdb_url_env="BENCH_TEST_OPTUNA_URL")
    assert url not in json.dumps(defn)  # the URL stays out of files and command lines
    os.environ["BENCH_TEST_OPTUNA_URL"] = url
    try:
        study_dir = _create(tmp_path, defn)
        tune.run_worker(study_dir, 0, train_fn=_fake())
        _assert_exact_budget(study_dir)
        assert not (study_dir / "journal.log").exists()
    finally:
        del os.environ["BENCH_TEST_OPTUNA_URL"]


# ---------------------------------------------------------------------------- liveness


def test_owner_liveness_on_this_machine_and_elsewhere():
    me = tune.owner_info(0)
    assert tune.owner_alive(me, None, 5)
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    gone = {**me, "pid": p.pid, "start": _start_ticks(p.pid) or "x"}
    p.wait()
    assert not tune.owner_alive(gone, time.time(), 5)  # dead pid: no heartbeat can save it
    assert not tune.owner_alive({**me, "start": "1"}, time.time(), 5)  # pid reused
    other = {**me, "host": "elsewhere"}
    assert tune.owner_alive(other, time.time() - 2, 5)
    assert not tune.owner_alive(other, time.time() - 10, 5)


# ---------------------------------------------------------------------------- real training


def _real_definition(**kw) -> dict:
    # batch 256: 14 short steps per epoch on MNIST-1D, so a trial has several epochs in ~1 s;
    # 8 of them leave the killing test a window of 6 epochs to see worker 1 mid-trial in
    # (with 4 it missed the 2-epoch window once, on one loaded core)
    t = {"trials": 4, "workers": 2, "epochs": 8, "final_seeds": [0, 1],
         "heartbeat_s": 1, "grace_s": 5, "pruner": {"name": "none"},
         "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
                   "batch_size": {"type": "categorical", "choices": [256]}}}
    t.update(kw)
    return tune.make_definition(t, CELL, {**FAST_MEASURE, "threads": 1})


def _bench(tmp_path, *args):
    p = subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT,
                       env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.mark.slow
def test_two_real_workers_one_killed_mid_trial_then_rerun_export_and_final(tmp_path):
    """The workflow's path with real PyTorch training, one framework import per process."""
    pytest.importorskip("torch")
    defn = _real_definition()
    study_dir = tmp_path / "tune" / defn["name"]
    _bench(tmp_path, "tune-create", "--definition", json.dumps(defn), "--out",
           study_dir / "study.json")
    workers = [subprocess.Popen([sys.executable, "-m", "bench", "tune-worker", "--study-dir",
                                 str(study_dir), "--worker", str(k)], cwd=ROOT,
                                env=_env(tmp_path), stderr=subprocess.DEVNULL) for k in (0, 1)]
    victim = None
    deadline = time.time() + 240
    while victim is None and time.time() < deadline and workers[1].poll() is None:
        time.sleep(0.05)
        trials = _trials(study_dir)[1]
        if not any(t.state.name == "COMPLETE" for t in trials):
            continue
        for t in trials:  # worker 1 mid-trial: an epoch reported, two or more to come
            owner = t.system_attrs.get(tune.OWNER) or {}
            if (t.state.name == "RUNNING" and owner.get("worker") == 1 and t.intermediate_values
                    and max(t.intermediate_values) <= defn["base"]["epochs"] - 2):
                victim = t
    assert victim is not None, "worker 1 never got into a trial after one had finished"
    workers[1].send_signal(signal.SIGKILL)
    workers[1].wait()
    before = {t.number: t for t in _trials(study_dir)[1] if t.state.name == "COMPLETE"}
    assert workers[0].wait(timeout=300) == 0
    # the rerun, same as the killed job's command (here in this process: one import less);
    # it completes the study, or finds that worker 0 already retried the lost trial
    tune.run_worker(study_dir, 1)
    _assert_exact_budget(study_dir)
    _, trials = _trials(study_dir)
    lost = [t for t in trials if tune.is_void(t)]
    assert [(t.number, t.system_attrs[tune.VOID]) for t in lost] == [(victim.number, "lost")]
    assert 1 <= len(lost[0].intermediate_values) < defn["base"]["epochs"]  # mid-trial
    retry = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].params == lost[0].params  # its budget retried with its parameters
    for number, t in before.items():  # finished trials were not rerun
        assert trials[number].datetime_complete == t.datetime_complete
    assert len(trials) == 4 + 1

    _bench(tmp_path, "tune-export", "--study-dir", study_dir)
    best = json.loads((study_dir / "best.json").read_text())
    assert set(best["best_params"]) == {"lr", "batch_size"} and best["void_trials"] == 1
    df = pd.read_csv(study_dir / "trials.csv")
    assert len(df) == 5 and df["counted"].sum() == 4 and list(df["void"].fillna("")).count("lost")
    runs = tmp_path / "runs"
    assert tune.run_final(study_dir, "torch", runs, [0, 1], study_dir / "final.json") == 0
    ids = json.loads((study_dir / "final.json").read_text())
    assert len(ids) == 2
    for rid in ids:
        rec = json.loads((runs / f"{rid}.json").read_text())
        assert rec["status"] == "ok" and rec["tuned"] == defn["name"]
        assert rec["lr"] == pytest.approx(best["best_params"]["lr"])
    mtimes = [(runs / f"{rid}.json").stat().st_mtime for rid in ids]
    assert tune.run_final(study_dir, "torch", runs, [0, 1]) == 0
    assert [(runs / f"{rid}.json").stat().st_mtime for rid in ids] == mtimes  # not rerun


@pytest.mark.slow
def test_real_training_is_pruned_through_the_shared_loop(tmp_path):
    pytest.importorskip("torch")
    defn = _real_definition(trials=2, pruner={"name": "threshold", "threshold": 0.99,
                                              "min_epochs": 1})
    study_dir = _create(tmp_path, defn)
    tune.run_worker(study_dir, 0)
    _, trials = _trials(study_dir)
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    for t in trials:
        assert t.user_attrs["status"] == "pruned" and t.user_attrs["epochs_trained"] == 1
        assert list(t.intermediate_values) == [1]
    with pytest.raises(RuntimeError, match="no trial completed"):
        tune.export(study_dir)


def test_definition_round_trip_keeps_the_name():
    defn = _definition()
    again = tune.check_definition(copy.deepcopy(defn))
    assert again == defn
    bad = {**defn, "name": "gru-torch-mnist1d-xs-acc-00000000"}
    with pytest.raises(SpecError, match="does not match its definition"):
        tune.check_definition(bad)


@pytest.mark.slow
def test_a_translation_model_tunes_like_the_other_families(tmp_path):
    """seq2seq on en_fr_numbers through the same worker, export and final run; its own
    regulariser (label smoothing) is tunable."""
    pytest.importorskip("torch")
    cell = {"family": "seq2seq", "framework": "torch", "dataset": "en_fr_numbers", "size": "xs"}
    t = {"trials": 2, "workers": 1, "epochs": 2, "final_seeds": [0], "pruner": {"name": "none"},
         "space": {"lr": {"type": "float", "low": 3e-3, "high": 1e-2, "log": True},
                   "label_smoothing": {"type": "float", "low": 0.0, "high": 0.2},
                   "batch_size": {"type": "categorical", "choices": [64]}}}
    defn = tune.make_definition(t, cell, {**FAST_MEASURE, "threads": 1})
    study_dir = _create(tmp_path, defn)
    tune.run_worker(study_dir, 0)
    _, trials = _trials(study_dir)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    assert len({t.params["label_smoothing"] for t in trials}) == 2
    best = tune.export(study_dir)
    runs = tmp_path / "runs"
    assert tune.run_final(study_dir, "torch", runs, [0]) == 0
    (rec_path,) = runs.glob("seq2seq-*.json")
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "ok" and rec["tuned"] == defn["name"]
    assert rec["label_smoothing"] == pytest.approx(best["best_params"]["label_smoothing"])
    assert 0 <= rec["exact_match"] <= 1 and "bleu" in rec


def test_a_family_that_cannot_read_the_dataset_is_one_clear_error():
    cell = {**CELL, "family": "seq2seq"}
    with pytest.raises(SpecError, match="'seq2seq' cannot read dataset 'mnist1d'"):
        tune.make_definition({}, cell, {})
