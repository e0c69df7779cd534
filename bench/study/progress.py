"""The study's progress, one line per training job: runs done of the study's runs, and an
estimate of the time left.

The workflow writes the study's plan (every training run: grid and study, with its family,
framework, size and FLOPs per sample) when it starts (`write_plan`, from Snakemake's
`onstart`). A job then counts the plan's runs that have a final record and estimates the rest
from the wall time of finished runs like them: the median of the same family, framework and
size, else of the same family and framework scaled by FLOPs, else of every finished run
scaled by FLOPs. Dividing by the parallelism seen so far (finished runs' wall time over the
time since the plan was written) makes the estimate hold on a laptop and on a cluster alike.
Framework-neutral; reads records only.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from ..sizes import flops_per_sample
from .records import read_record, write_json_atomic


def write_plan(path: str | Path, jobs) -> None:
    """The study's training jobs (bench.study.plan.Job) and their runs, with the time now."""
    plan = {b.name: [{"family": s.family, "framework": s.framework, "size": s.size,
                          "flops": flops_per_sample(s.family, s.size, s.dataset)}
                         for s in b.specs] for b in jobs}
    write_json_atomic(Path(path), {"started": time.time(), "jobs": plan})


def _estimate(run: dict, done: list[tuple[dict, float]]) -> float:
    def near(match) -> list[float]:
        return [w * run["flops"] / max(r["flops"], 1.0) for r, w in done if match(r)]

    for match in (lambda r: (r["family"], r["framework"], r["size"]) == (
                      run["family"], run["framework"], run["size"]),
                  lambda r: (r["family"], r["framework"]) == (run["family"], run["framework"]),
                  lambda r: True):
        got = near(match)
        if got:
            return statistics.median(got)
    return 0.0


def line(plan_path: str | Path, jobs_dir: str | Path, runs_dir: str | Path,
         job: str = "", finished: tuple[str, ...] = (), now: float | None = None) -> str | None:
    """'study: 57 of 182 training runs done (31%), about 12 min left' (None without a plan).

    Done: the runs of jobs whose done file is in `jobs_dir`, and this job's (`job`)
    `finished` run ids; the runs of jobs still going elsewhere count as left. A run's id
    is known only once its job has chosen its learning rate, so the plan lists runs by
    what they are, and their records are found through the done files."""
    try:
        plan = json.loads(Path(plan_path).read_text())
    except (OSError, ValueError):
        return None
    done, left = [], []
    busy = 0.0  # run time finished since the plan was written (kept records are older)
    for name, runs in plan["jobs"].items():
        ids = list(finished) if name == job else _done_ids(Path(jobs_dir) / f"{name}.json")
        for run, rid in zip(runs, ids, strict=False):
            path = Path(runs_dir) / f"{rid}.json"
            rec = read_record(path)
            wall = float(rec.get("wall_s") or 0.0) if rec else 0.0
            done.append((run, wall))
            if rec and path.stat().st_mtime >= plan["started"]:
                busy += wall
        left += runs[len(ids):]
    total = len(done) + len(left)
    share = 100 * len(done) / max(total, 1)
    text = f"study: {len(done)} of {total} training runs done ({share:.0f}%)"
    if not left:
        return text
    elapsed = (now or time.time()) - plan["started"]
    if busy <= 0 or elapsed <= 0:
        return text + ", time left not yet known"
    parallel = max(busy / elapsed, 1.0)
    seconds = sum(_estimate(r, done) for r in left) / parallel
    return text + f", about {_duration(seconds)} left"


def _done_ids(path: Path) -> list[str]:
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return ids if isinstance(ids, list) else []


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
