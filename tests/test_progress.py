"""The study's progress line (bench.study.progress): runs done of the study's, and the time left
estimated from finished runs like the ones left."""

import json
import os
import time

from bench.spec import RunSpec
from bench.study.plan import Job
from bench.study.progress import line, write_plan
from bench.study.records import write_json_atomic


def spec(family, size, seed=0, framework="torch"):
    return RunSpec.create(family=family, framework=framework, dataset="mnist1d", size=size,
                          seed=seed)


def finish(tmp_path, batch, walls, t):
    """`batch`'s job done: a record per run (wall_s) written at time t, then its done file."""
    for s, w in zip(batch.specs, walls, strict=True):
        path = tmp_path / "runs" / f"{s.run_id}.json"
        write_json_atomic(path, {"run_id": s.run_id, "status": "ok", "wall_s": w})
        os.utime(path, (t, t))
    write_json_atomic(tmp_path / "jobs" / f"{batch.name}.json",
                      [s.run_id for s in batch.specs])


def test_done_runs_and_time_left_from_runs_like_the_ones_left(tmp_path):
    gru = Job("torch-gru-1of2", "torch", tuple(spec("gru", "m", k) for k in range(3)))
    gru2 = Job("torch-gru-2of2", "torch", tuple(spec("gru", "m", k) for k in (3, 4)))
    cnn = Job("torch-cnn-1of1", "torch", tuple(spec("cnn", "xs", k) for k in range(2)))
    plan = tmp_path / "plan.json"
    write_plan(plan, [gru, gru2, cnn])
    start = json.loads(plan.read_text())["started"]
    dirs = (plan, tmp_path / "jobs", tmp_path / "runs")
    assert line(*dirs, now=start + 1) == ("study: 0 of 7 training runs done (0%), time left "
                                          "not yet known")
    # the GRU job took 3 x 100 s and the CNN's 2 x 10 s on two cores: 320 s of runs in 160 s
    finish(tmp_path, gru, [100, 100, 100], start + 150)
    finish(tmp_path, cnn, [10, 10], start + 160)
    # two GRU m runs left, 100 s each like the finished ones, two at a time: 100 s, 2 min
    assert line(*dirs, now=start + 160) == ("study: 5 of 7 training runs done (71%), about "
                                            "2 min left")
    # a job in flight counts its own finished runs
    s0 = gru2.specs[0]
    write_json_atomic(tmp_path / "runs" / f"{s0.run_id}.json",
                      {"run_id": s0.run_id, "status": "ok", "wall_s": 100.0})
    got = line(*dirs, job="torch-gru-2of2", finished=(s0.run_id,), now=start + 260)
    assert got.startswith("study: 6 of 7 training runs done (86%), about ")
    finish(tmp_path, gru2, [100, 100], start + 300)
    assert line(*dirs, now=start + 300) == "study: 7 of 7 training runs done (100%)"


def test_kept_records_of_an_earlier_invocation_do_not_fake_parallelism(tmp_path):
    a = Job("torch-gru-1of2", "torch", (spec("gru", "m", 0),))
    b = Job("torch-gru-2of2", "torch", (spec("gru", "m", 1),))
    plan = tmp_path / "plan.json"
    finish(tmp_path, a, [100], time.time() - 3600)  # kept from yesterday's run
    write_plan(plan, [a, b])
    got = line(plan, tmp_path / "jobs", tmp_path / "runs")
    assert got == "study: 1 of 2 training runs done (50%), time left not yet known"


def test_no_plan_no_line(tmp_path):
    assert line(tmp_path / "missing.json", tmp_path, tmp_path) is None
