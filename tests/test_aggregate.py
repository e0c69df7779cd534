"""bench.study.aggregate: run records -> one tidy table, one row per run."""

import json

import pandas as pd
import pytest

from bench import __version__
from bench.registry import SpecError
from bench.spec import RunSpec
from bench.study import aggregate
from bench.study.records import write_json_atomic


def test_flatten_nested_dict_and_list():
    rec = {"run_id": "r", "env": {"cpu": {"model": "x", "n": 2}, "gpu": None},
           "curve": [{"epoch": 1, "val_acc": 0.5}], "status": "ok"}
    assert aggregate.flatten(rec) == {
        "run_id": "r", "env.cpu.model": "x", "env.cpu.n": 2, "env.gpu": None,
        "curve": '[{"epoch":1,"val_acc":0.5}]', "status": "ok",
    }
    assert json.loads(aggregate.flatten(rec)["curve"]) == rec["curve"]
    assert aggregate.flatten({}) == {}


def _record(spec: RunSpec, status="ok", **kw):
    rec = {"run_id": spec.run_id, **spec.to_dict(), "status": status, "params": 1234,
           "test_acc": 0.9 if status == "ok" else None, "train_samples_per_s": 1e4,
           "peak_rss_mb": 300.0, "curve": [{"epoch": 1, "val_acc": 0.5}],
           "env": {"host": "h"}, "bench_version": __version__}
    rec.update(kw)
    return rec


@pytest.fixture
def study(tmp_path):
    runs = tmp_path / "runs"
    specs = [RunSpec("cnn", "torch", "digits", "xs", seed=k) for k in range(4)]
    statuses = ["ok", "diverged", "oom", "ok"]
    for s, st in zip(specs, statuses, strict=True):
        write_json_atomic(runs / f"{s.run_id}.json", _record(s, st, test_loss=float("nan")))
    ids = [s.run_id for s in specs]
    b1, b2 = tmp_path / "b1.json", tmp_path / "b2.json"
    b1.write_text(json.dumps(ids[:3]))
    b2.write_text(json.dumps(ids[2:]))  # overlaps b1 in one run
    return {"runs": runs, "ids": ids, "jobs": [str(b1), str(b2)], "statuses": statuses}


def test_main_writes_one_row_per_run(tmp_path, study, capsys):
    csv, pq = tmp_path / "out" / "summary.csv", tmp_path / "out" / "summary.parquet"
    assert aggregate.main(study["jobs"], str(study["runs"]), str(csv), str(pq)) == 0
    df = pd.read_csv(csv)
    assert list(df["run_id"]) == study["ids"]
    assert list(df["status"]) == study["statuses"]  # failed runs kept, not dropped
    lead = [c for c in aggregate.LEADING if c in df.columns]
    assert lead == aggregate.LEADING  # every leading column present in these records ...
    assert list(df.columns[: len(lead)]) == lead  # ... and first, in order
    rest = list(df.columns[len(lead):])
    assert rest == sorted(rest)
    assert "env.host" in df.columns and "curve" in df.columns
    assert df["test_loss"].isna().all()
    pdf = pd.read_parquet(pq)
    assert list(pdf.columns) == list(df.columns)
    assert list(pdf["run_id"]) == study["ids"]
    assert not list((tmp_path / "out").glob(".*.tmp"))
    err = capsys.readouterr().err
    assert "4 runs" in err and "diverged 1" in err and "oom 1" in err


def test_main_csv_only(tmp_path, study):
    csv = tmp_path / "summary.csv"
    assert aggregate.main(study["jobs"], str(study["runs"]), str(csv), None) == 0
    assert len(pd.read_csv(csv)) == 4
    assert not list(tmp_path.glob("*.parquet"))


def test_missing_and_unreadable_records_warn(tmp_path, study, capsys):
    (study["runs"] / f"{study['ids'][0]}.json").unlink()
    (study["runs"] / f"{study['ids'][1]}.json").write_text('{"run_id": "x", "sta')
    csv = tmp_path / "summary.csv"
    assert aggregate.main(study["jobs"], str(study["runs"]), str(csv), None) == 0
    assert list(pd.read_csv(csv)["run_id"]) == study["ids"][2:]
    err = capsys.readouterr().err
    assert "warning: 2 run record(s) missing or unreadable" in err
    assert study["ids"][0] in err


def test_no_records_at_all_still_writes_header(tmp_path, capsys):
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps(["nope-1", "nope-2"]))
    csv = tmp_path / "summary.csv"
    assert aggregate.main([str(batch)], str(tmp_path / "runs"), str(csv), None) == 0
    assert list(pd.read_csv(csv).columns) == aggregate.LEADING
    assert "warning" in capsys.readouterr().err


def test_collect_splits_found_and_missing(study):
    rows, missing = aggregate.collect(study["ids"] + ["ghost"], study["runs"])
    assert [r["run_id"] for r in rows] == study["ids"]
    assert missing == ["ghost"]


def test_a_record_of_another_version_is_refused_in_one_line(tmp_path, study):
    path = study["runs"] / f"{study['ids'][3]}.json"
    old = json.loads(path.read_text())
    write_json_atomic(path, {**old, "bench_version": "0.2.0"})
    csv = tmp_path / "summary.csv"
    with pytest.raises(SpecError, match=r"recorded by bench 0\.2\.0, this is") as e:
        aggregate.main(study["jobs"], str(study["runs"]), str(csv), None)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not csv.exists()  # nothing written from a mixed table


def test_lr_roles_mark_chosen_and_grid_runs(tmp_path):
    runs = tmp_path / "runs"
    specs = [RunSpec("gru", "torch", "mnist1d", "xs", lr=lr) for lr in (0.001, 0.003, 0.01)]
    specs.append(RunSpec("gru", "tf", "mnist1d", "xs", lr=0.003, seed=1000))
    specs.append(RunSpec("gru", "torch", "mnist1d", "s", lr=0.003))  # a unit with no grid
    for s in specs:
        write_json_atomic(runs / f"{s.run_id}.json", _record(s))
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps([s.run_id for s in specs]))
    sel = tmp_path / "lr.json"
    grid = [{"run_id": s.run_id, "lr": s.lr} for s in specs[:3]]
    unit = {"family": "gru", "dataset": "mnist1d", "size": "xs", "optimizer": "adam",
            "lr": 0.003, "grid": grid, "race": False}
    sel.write_text(json.dumps({"units": [unit]}))
    csv = tmp_path / "summary.csv"
    aggregate.main([str(batch)], str(runs), str(csv), None, [str(sel)])
    df = pd.read_csv(csv, keep_default_na=False)
    # a full grid: its run at the chosen rate is also a study run (seed 0 of torch)
    assert list(df["lr_role"]) == ["grid", "chosen", "grid", "chosen", ""]
    assert list(df["lr_grid_run"]) == [True, True, True, False, False]
    assert list(df["lr_grid_size"]) == [3, 3, 3, 3, 0]
    # a race: its runs stopped early, so even the winner's race run is not a study run
    sel.write_text(json.dumps({"units": [{**unit, "race": True}]}))
    aggregate.main([str(batch)], str(runs), str(csv), None, [str(sel)])
    df = pd.read_csv(csv, keep_default_na=False)
    assert list(df["lr_role"]) == ["grid", "grid", "grid", "chosen", ""]
