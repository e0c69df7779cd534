"""bench.study.lr_select: the learning rate of every unit is chosen on validation, never on test."""

import json
import os
import re
import subprocess
import sys

import pytest

from bench import __version__
from bench.registry import SpecError
from bench.spec import RunSpec
from bench.study.lr_select import choose, load_choices, resolve, select_main
from bench.study.records import write_json_atomic


def _rec(lr, val, test=0.5, status="ok", size="xs", optimizer="adam"):
    s = RunSpec.create(family="gru", framework="torch", dataset="mnist1d", size=size,
                       optimizer=optimizer, lr=lr)
    return {"run_id": s.run_id, **s.to_dict(), "status": status, "best_val_acc": val,
            "test_acc": test, "bench_version": __version__}


def test_best_validation_wins_and_test_is_never_looked_at():
    recs = [_rec(0.001, 0.80, test=0.99), _rec(0.003, 0.90, test=0.10), _rec(0.01, 0.85)]
    (unit,) = choose(recs)
    assert unit["lr"] == 0.003 and unit["best_val_acc"] == 0.90
    assert [g["lr"] for g in unit["grid"]] == [0.001, 0.003, 0.01]


def test_failures_rank_last_and_ties_go_to_the_smaller_rate():
    recs = [_rec(0.01, None, status="diverged"), _rec(0.003, 0.7), _rec(0.001, 0.7)]
    assert choose(recs)[0]["lr"] == 0.001
    recs = [_rec(0.01, 0.99, status="diverged"), _rec(0.003, 0.2)]
    assert choose(recs)[0]["lr"] == 0.003  # a diverged run's val never counts
    every = choose([_rec(0.01, None, status="diverged"), _rec(0.1, None, status="oom")])[0]
    assert every["all_failed"] is True and every["lr"] == 0.01


def test_units_are_chosen_apart():
    recs = [_rec(0.001, 0.9), _rec(0.01, 0.8), _rec(0.001, 0.5, size="s"),
            _rec(0.01, 0.6, size="s"), _rec(0.1, 0.4, optimizer="sgd")]
    got = {(u["size"], u["optimizer"]): u["lr"] for u in choose(recs)}
    assert got == {("xs", "adam"): 0.001, ("s", "adam"): 0.01, ("xs", "sgd"): 0.1}


def test_selection_file_round_trip_and_resolve(tmp_path):
    runs = tmp_path / "runs"
    recs = [_rec(0.001, 0.9), _rec(0.01, 0.8)]
    for r in recs:
        write_json_atomic(runs / f"{r['run_id']}.json", r)
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps([r["run_id"] for r in recs]))
    out = tmp_path / "lr" / "gru-mnist1d.json"
    assert select_main([str(batch)], str(runs), str(out)) == 0
    choices = load_choices(out)
    assert choices == {("gru", "mnist1d", "xs", "adam"): 0.001}
    spec = RunSpec.create(family="gru", framework="tf", dataset="mnist1d", size="xs", seed=1000)
    assert resolve(spec, choices, str(out)).lr == 0.001
    with pytest.raises(SpecError, match="no learning rate for gru mnist1d s adam"):
        resolve(spec.with_(size="s"), choices, str(out))
    (runs / f"{recs[0]['run_id']}.json").unlink()
    with pytest.raises(SpecError, match="grid record"):
        select_main([str(batch)], str(runs), str(out))
    out.write_text("{not json")
    with pytest.raises(SpecError, match="cannot read learning-rate selection"):
        load_choices(out)


@pytest.mark.parametrize("change,needle", [
    ({"bench_version": "0.2.0"}, "recorded by bench 0.2.0"),
    ({"status": "error", "message": "RuntimeError: boom"}, "status error (RuntimeError: boom)"),
])
def test_a_stale_or_crashed_grid_record_stops_the_selection(tmp_path, change, needle):
    runs = tmp_path / "runs"
    recs = [_rec(0.001, 0.9), {**_rec(0.01, 0.8), **change}]
    for r in recs:
        write_json_atomic(runs / f"{r['run_id']}.json", r)
    batch = tmp_path / "b.json"
    batch.write_text(json.dumps([r["run_id"] for r in recs]))
    out = tmp_path / "lr.json"
    with pytest.raises(SpecError, match=re.escape(needle)) as e:
        select_main([str(batch)], str(runs), str(out))
    assert "--forcerun train_job" in str(e.value) and not out.exists()


def _run_job(tmp_path, specs, *extra):
    # Slots of its own: in the machine-wide folder it waited out a study running beside the
    # suite, which held every CPU slot, and timed out.
    return subprocess.run(
        [sys.executable, "-m", "bench", "run-job", "--specs",
         json.dumps([s.to_dict() for s in specs]), "--out-dir", str(tmp_path / "runs"), *extra],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BENCH_SLOT_DIR": str(tmp_path / ".slots")})


TINY = dict(family="cnn", framework="torch", dataset="digits", size="xs", epochs=1,
            max_steps=3, warmup_steps=0, block_steps=1, block_seconds=0.0)


def test_run_job_takes_the_chosen_rate_and_redoes_records_of_another_version(tmp_path):
    sel = tmp_path / "lr.json"
    sel.write_text(json.dumps({"units": [{"family": "cnn", "dataset": "digits", "size": "xs",
                                          "optimizer": "adam", "lr": 0.02, "grid": []}]}))
    spec = RunSpec.create(**TINY)
    p = _run_job(tmp_path, [spec], "--lr-from", str(sel))
    assert p.returncode == 0, p.stderr[-2000:]
    chosen = spec.with_(lr=0.02)
    path = tmp_path / "runs" / f"{chosen.run_id}.json"
    rec = json.loads(path.read_text())
    assert rec["lr"] == 0.02 and rec["bench_version"] == __version__
    write_json_atomic(path, {**rec, "bench_version": "0.2.0", "test_acc": -1.0})
    p = _run_job(tmp_path, [spec], "--lr-from", str(sel))
    assert "record of bench 0.2.0 redone" in p.stderr
    again = json.loads(path.read_text())
    assert again["bench_version"] == __version__ and again["test_acc"] >= 0
    p = _run_job(tmp_path, [spec], "--lr-from", str(sel))
    assert "kept (ok)" in p.stderr  # a current record is kept
    p = _run_job(tmp_path, [spec.with_(size="s")], "--lr-from", str(sel))
    assert p.returncode == 2 and "no learning rate for cnn digits s adam" in p.stderr


def test_run_job_refuses_a_malformed_drop_rung_in_one_line(tmp_path):
    p = _run_job(tmp_path, [RunSpec.create(**TINY)], "--drop-behind", "10:0.05,20")
    assert p.returncode == 2 and not (tmp_path / "runs").exists()
    assert p.stderr.strip().splitlines()[-1].endswith(
        "--drop-behind '10:0.05,20': use EPOCH:MARGIN[,EPOCH:MARGIN...], e.g. 10:0.05,20:0.03")
