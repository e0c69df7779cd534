"""bench.study.runner: which records a batch keeps, redoes or retries, and how it writes them.

Most tests replace `train.run` with a fake that returns a record at once, so they check the
runner's rules, its stderr lines and its writes in milliseconds; one runs a real tiny
PyTorch model through the same path.
"""

import fcntl
import json
from pathlib import Path

import pytest

from bench import __version__, backend_api, train
from bench import data as data_mod
from bench.registry import SpecError
from bench.spec import RunSpec
from bench.study import runner
from bench.study.records import FINAL_STATUSES, write_json_atomic
from bench.translation.weights_file import path_for

TINY = dict(family="cnn", framework="torch", dataset="digits", size="xs", epochs=1,
            max_steps=3, warmup_steps=0, block_steps=1, block_seconds=0.0)
FAILS = 13  # the fake trainer raises for this seed


@pytest.fixture
def fake(monkeypatch):
    """A trainer that records its calls; the first run of a process warms up once."""
    calls: dict[str, list] = {"run": [], "warm": [], "load": []}

    def run(spec, data, backend, on_epoch=None, mem_limit_mb=0.0, save_weights=None,
            compile_cache=None):
        calls["run"].append({"run_id": spec.run_id, "data": data, "backend": backend,
                             "mem_limit_mb": mem_limit_mb, "save_weights": save_weights,
                             "compile_cache": compile_cache})
        if spec.seed == FAILS:
            raise RuntimeError("boom\nsecond line")
        if save_weights:
            Path(save_weights).write_bytes(b"weights")
        return {"run_id": spec.run_id, **spec.to_dict(), "status": "ok",
                "bench_version": __version__, "test_acc": 0.5}

    monkeypatch.setattr(train, "run", run)
    monkeypatch.setattr(train, "prime_runtime", lambda spec, data, backend:
                        calls["warm"].append(spec.framework))
    monkeypatch.setattr(backend_api, "load_backend", lambda fw: f"backend-{fw}")
    monkeypatch.setattr(data_mod, "load", lambda name, data_dir, allow_pickle:
                        calls["load"].append((name, data_dir, allow_pickle)) or f"data-{name}")
    monkeypatch.setattr(runner, "_WARM", set())
    return calls


def _specs(*seeds: int) -> list[RunSpec]:
    return [RunSpec.create(**TINY, seed=s) for s in seeds]


def _run(tmp_path: Path, specs, **kw) -> int:
    return runner.run_specs(specs, tmp_path / "runs", data_dir="data", allow_pickle=False, **kw)


def _lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("[")]


def _record(tmp_path: Path, spec: RunSpec) -> dict:
    return json.loads((tmp_path / "runs" / f"{spec.run_id}.json").read_text())


def _put(tmp_path: Path, spec: RunSpec, **fields) -> Path:
    path = tmp_path / "runs" / f"{spec.run_id}.json"
    write_json_atomic(path, {"run_id": spec.run_id, **spec.to_dict(), "status": "ok",
                             "bench_version": __version__, "test_acc": 0.9, **fields})
    return path


def test_a_new_batch_runs_each_spec_once_and_writes_its_record(tmp_path, fake, capsys):
    specs = _specs(0, 1)
    assert _run(tmp_path, specs, mem_limit_mb=512) == 0
    assert _lines(capsys) == [f"[1/2] {specs[0].run_id}: running",
                              f"[2/2] {specs[1].run_id}: running"]
    assert [c["run_id"] for c in fake["run"]] == [s.run_id for s in specs]
    assert all(c["mem_limit_mb"] == 512 and c["save_weights"] is None for c in fake["run"])
    # compile: best's choices live beside the records, shared by every job of the study
    assert all(c["compile_cache"] == tmp_path / "runs" / "compile" for c in fake["run"])
    assert all(c["data"] == "data-digits" and c["backend"] == "backend-torch"
               for c in fake["run"])
    assert fake["load"] == [("digits", "data", False)]  # one load for the batch
    assert fake["warm"] == ["torch"]  # one warm-up for the process
    for s in specs:
        assert _record(tmp_path, s)["status"] == "ok"
    assert not list((tmp_path / "runs").glob(".*.tmp"))
    assert _run(tmp_path, _specs(2)) == 0 and fake["warm"] == ["torch"]  # still warm


@pytest.mark.parametrize("status", FINAL_STATUSES)
def test_a_final_record_is_kept(tmp_path, fake, capsys, status):
    [spec] = _specs(0)
    path = _put(tmp_path, spec, status=status)
    before = path.read_bytes()
    assert _run(tmp_path, [spec]) == 0
    assert _lines(capsys) == [f"[1/1] {spec.run_id}: kept ({status})"]
    assert fake["run"] == [] and path.read_bytes() == before


def test_an_error_record_is_retried(tmp_path, fake, capsys):
    [spec] = _specs(0)
    _put(tmp_path, spec, status="error")
    assert _run(tmp_path, [spec]) == 0
    assert _lines(capsys) == [f"[1/1] {spec.run_id}: running (retrying status error)"]
    assert _record(tmp_path, spec)["test_acc"] == 0.5


def test_a_record_of_another_bench_version_is_redone(tmp_path, fake, capsys):
    [spec] = _specs(0)
    _put(tmp_path, spec, bench_version="0.2.0")
    assert _run(tmp_path, [spec]) == 0
    assert _lines(capsys) == [f"[1/1] {spec.run_id}: running (record of bench 0.2.0 redone: "
                              f"this is {__version__}, which measures differently)"]
    assert _record(tmp_path, spec)["bench_version"] == __version__


def test_save_model_redoes_an_ok_record_whose_weights_are_missing(tmp_path, fake, capsys):
    ok, diverged, saved = _specs(0, 1, 2)
    _put(tmp_path, ok)
    _put(tmp_path, diverged, status="diverged")  # nothing to test: no weights to keep
    path_for(_put(tmp_path, saved)).write_bytes(b"kept")
    assert _run(tmp_path, [ok, diverged, saved], save_model=True) == 0
    assert _lines(capsys) == [
        f"[1/3] {ok.run_id}: running (redone: --save-model and its weights were not kept)",
        f"[2/3] {diverged.run_id}: kept (diverged)",
        f"[3/3] {saved.run_id}: kept (ok)"]
    record_path = tmp_path / "runs" / f"{ok.run_id}.json"
    assert [c["save_weights"] for c in fake["run"]] == [path_for(record_path)]
    assert path_for(record_path).read_bytes() == b"weights"
    assert _run(tmp_path, [ok]) == 0 and len(fake["run"]) == 1  # without it: kept either way


def test_an_unreadable_record_is_replaced_and_partial_writes_removed(tmp_path, fake, capsys,
                                                                     monkeypatch):
    from bench.study import records

    [spec] = _specs(0)
    path = tmp_path / "runs" / f"{spec.run_id}.json"
    path.parent.mkdir()
    path.write_text('{"run_id": "x", "sta')
    dead = path.with_name(f".{path.name}.k1ll3d.tmp")
    dead.write_text("{")
    monkeypatch.setattr(records, "_PROCESS_START", dead.stat().st_mtime + 1)  # older: dead
    assert _run(tmp_path, [spec]) == 0
    assert _lines(capsys) == [f"[1/1] {spec.run_id}: running (unreadable record replaced) "
                              "(1 partial write(s) removed)"]
    assert _record(tmp_path, spec)["status"] == "ok" and not dead.exists()


def test_an_exception_is_recorded_as_error_and_the_batch_goes_on(tmp_path, fake, capsys):
    bad, good = _specs(FAILS, 0)
    assert _run(tmp_path, [bad, good]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err  # the log shows where
    rec = _record(tmp_path, bad)
    assert rec["status"] == "error" and rec["message"] == "RuntimeError: boom"
    assert rec["bench_version"] == __version__ and rec["seed"] == FAILS
    assert _record(tmp_path, good)["status"] == "ok"
    assert _run(tmp_path, [bad, good]) == 1  # an error is retried, the ok run is kept
    assert [c["run_id"] for c in fake["run"]] == [bad.run_id, good.run_id, bad.run_id]


def test_the_old_record_stays_whole_until_the_new_one_replaces_it(tmp_path, fake, monkeypatch):
    [spec] = _specs(0)
    path = _put(tmp_path, spec, status="error")
    old = path.read_bytes()
    seen = []
    fake_run = train.run

    def run(spec, *args, **kw):
        seen.append(path.read_bytes())  # what a reader sees while the run trains
        return fake_run(spec, *args, **kw)

    monkeypatch.setattr(train, "run", run)
    assert _run(tmp_path, [spec]) == 0
    assert seen == [old] and json.loads(path.read_text())["status"] == "ok"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp left


def test_a_missing_framework_is_an_input_error_with_the_install_command(tmp_path, fake,
                                                                       monkeypatch):
    def missing(fw):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setattr(backend_api, "load_backend", missing)
    spec = RunSpec.create(**{**TINY, "framework": "tf"})
    with pytest.raises(SpecError, match=r"framework 'tf' is not installed \(tensorflow\); "
                                        r"pip install -e '\.\[tf\]'"):
        _run(tmp_path, [spec])
    assert not (tmp_path / "runs" / f"{spec.run_id}.json").exists()


def test_measuring_slots_for_holds_a_cpu_slot_of_the_job_thread_count(tmp_path, monkeypatch):
    from bench.measure.slots import available_cores

    monkeypatch.setenv("BENCH_SLOT_DIR", str(tmp_path))
    monkeypatch.setenv("BENCH_SLOTS", "1")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    specs = [RunSpec.create(**TINY, threads=available_cores())]  # one slot on this machine
    with runner.measuring_slots_for(specs) as waited:
        assert 0 <= waited < 5
        [lock] = (tmp_path).glob("bench-slots-*/cpu-0.lock")
        with open(lock, "w") as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on the way out


@pytest.mark.slow
def test_a_real_tiny_run_writes_its_record_and_weights_and_is_kept_after(tmp_path, capsys):
    pytest.importorskip("torch")
    [spec] = _specs(0)
    assert _run(tmp_path, [spec], save_model=True) == 0
    rec = _record(tmp_path, spec)
    assert rec["status"] == "ok" and rec["run_id"] == spec.run_id and rec["steps_run"] == 3
    assert path_for(tmp_path / "runs" / f"{spec.run_id}.json").is_file()
    capsys.readouterr()
    assert _run(tmp_path, [spec], save_model=True) == 0
    assert _lines(capsys) == [f"[1/1] {spec.run_id}: kept (ok)"]


def test_device_cuda_without_a_gpu_fails_in_one_line_and_auto_records_its_choice(tmp_path):
    import subprocess
    import sys

    import torch

    base = [sys.executable, "-m", "bench", "train", "--family", "cnn", "--framework",
            "torch", "--dataset", "digits", "--size", "xs", "--epochs", "1",
            "--max-steps", "3", "--warmup-steps", "0", "--block-steps", "1",
            "--block-seconds", "0"]
    out = tmp_path / "cuda.json"
    p = subprocess.run(base + ["--device", "cuda", "--out", str(out)], capture_output=True,
                       text=True, timeout=300)
    if torch.cuda.is_available():  # a GPU machine: the run is there, on the GPU
        assert p.returncode == 0 and json.loads(out.read_text())["device"] == "cuda"
    else:  # never a silent fall back to the CPU, and nothing written
        assert p.returncode == 2 and not out.exists()
        assert p.stderr.strip().splitlines()[-1] == (
            "python -m bench train: error: device 'cuda' requested but no GPU is visible "
            "to torch")
    p = subprocess.run(base + ["--device", "auto", "--out", str(tmp_path / "auto.json")],
                       capture_output=True, text=True, timeout=300)
    rec = json.loads((tmp_path / "auto.json").read_text())
    assert p.returncode == 0 and rec["device_requested"] == "auto"
    assert rec["device"] == ("cuda" if torch.cuda.is_available() else "cpu")


def _curve(accs):
    return [{"epoch": e, "val_acc": a} for e, a in enumerate(accs, 1)]


def test_a_grid_rate_behind_an_earlier_one_stops_at_the_drop_epoch():
    s = _specs(0)[0]
    leader = [(0.01, _curve([0.5, 0.7, 0.8, 0.85, 0.9]))]
    check = runner.behind(s.with_(lr=0.1), leader, ((4, 0.03),))
    slow = [0.4, 0.6, 0.75, 0.8]  # mean of epochs 2-4: 0.717 against the leader's 0.783
    assert [check(e, p) for e, p in enumerate(_curve(slow), 1)][:3] == [False] * 3
    why = runner.behind(s.with_(lr=0.1), leader, ((4, 0.03),))
    got = [why(e, p) for e, p in enumerate(_curve(slow), 1)][-1]
    assert got.startswith("stopped at epoch 4: validation accuracy 0.717 (mean of 3 epochs), "
                          "more than 0.03 below lr 0.01's 0.783")
    # within the margin it trains on; without an earlier rate long enough it is never judged
    close = runner.behind(s, leader, ((4, 0.03),))
    assert not any(close(e, p) for e, p in enumerate(_curve([0.5, 0.68, 0.78, 0.84]), 1))
    assert runner.behind(s, [(0.01, _curve([0.9] * 3))], ((4, 0.03),)) is None
    assert runner.behind(s, [], ((4, 0.03),)) is None


def test_each_rung_judges_a_grid_rate_at_its_own_epoch_and_margin():
    """Rungs (10, 0.05), (20, 0.03): a rate 4 points behind at epoch 10 trains on and
    stops at 20 if still 4 behind; one 6 points behind stops at 10; an earlier rate that
    was itself stopped at 10 is a rival at 10 only."""
    s = _specs(0)[0].with_(lr=0.1)
    rungs = ((10, 0.05), (20, 0.03))
    leader = [(0.01, _curve([0.9] * 25))]

    def stops(accs, earlier=leader):
        check = runner.behind(s, earlier, rungs)
        return next((e for e, p in enumerate(_curve(accs), 1) if check(e, p)), None)

    assert stops([0.86] * 25) == 20
    assert stops([0.84] * 25) == 10
    assert stops([0.86] * 10 + [0.9] * 15) is None  # caught up by epoch 18-20
    short = [(0.01, _curve([0.9] * 10))]  # stopped at 10 itself: judged against at 10 only
    assert stops([0.86] * 25, short) is None and stops([0.84] * 25, short) == 10


def test_grid_runs_judge_each_rate_against_the_earlier_rates_of_its_unit(tmp_path, fake,
                                                                         monkeypatch):
    """run_specs hands each run a judge built from the finished runs of its unit only."""
    seen = {}

    def run(spec, data, backend, on_epoch=None, **kw):
        seen[spec.run_id] = on_epoch
        return {"run_id": spec.run_id, "status": "ok", "curve": _curve([0.5] * 25)}

    monkeypatch.setattr(train, "run", run)
    a = _specs(0)[0]
    other_unit = _specs(1)[0]
    specs = [a.with_(lr=0.01), a.with_(lr=0.03), other_unit, a.with_(lr=0.003)]
    runner.run_specs(specs, tmp_path / "runs", data_dir="data", allow_pickle=False,
                     drop=((20, 0.03),))
    first, second, other, third = (seen[s.run_id] for s in specs)
    assert first is None  # the first rate of a unit has nothing to fall behind
    assert callable(second) and callable(third)
    assert other is None  # another seed: another unit
