"""The smoke study's PyTorch CNN on a real SLURM: `--profile workflow/profiles/slurm`, every
job through sbatch (training, the lr grid, a tuning study, aggregate, report), on a single-node
cluster on loopback that the test starts and stops itself (tests/slurm_cluster.py). Every
run record must arrive, and the runs must be the local smoke study's. (The whole smoke study
through SLURM took 4-8 minutes of CPU; the other families add no path through the profile.)

Needs Debian's `slurm-wlm` and `munge` (`.ci/run` installs them); skipped with the reason
where they are missing. Root is not needed: the daemons run as the user running the tests.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import copy_workflow, snakemake, study_variant
from slurm_cluster import PROBE, Cluster, missing_binaries, short_dir

MISSING = missing_binaries()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(MISSING), reason=(
        f"SLURM/MUNGE not installed (missing {', '.join(MISSING)}): "
        "apt-get install slurm-wlm munge, as .ci/run does")),
]

# Options for this cluster only, not for the profile (a real cluster keeps the defaults):
# without an accounting database `sacct` cannot answer, so job states come from `squeue`
# (which lists a finished job for MinJobAge seconds); and poll every few seconds instead of
# from 40 s up to 3 min, so that a few minutes of jobs do not wait minutes for the poll.
TEST_ARGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "3",
    "--seconds-between-status-checks", "3",
)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = Cluster(short_dir(tmp_path_factory.mktemp("slurm")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _records(wd: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (wd / "results/runs").glob("*.json")}


def _by_kind(records: dict[str, dict]):
    """Planned runs by id (with their status); tuned final runs by (study, seed): their ids
    hash the best parameters, which depend on how the two workers interleaved."""
    plain = {k: r["status"] for k, r in records.items() if not r.get("tuned")}
    tuned = sorted((r["tuned"], r["seed"]) for r in records.values() if r.get("tuned"))
    return plain, tuned


def _max_cpus_at_once(jobs: list[dict]) -> int:
    """The most CPUs that SLURM jobs held at the same time (start/end in whole seconds)."""
    events = []
    for j in jobs:
        start, end = (datetime.fromisoformat(j[k]) for k in ("start", "end"))
        events += [(start, int(j["cpus"])), (end, -int(j["cpus"]))]
    held = peak = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
        held += d
        peak = max(peak, held)
    return peak


def test_smoke_study_on_slurm_writes_the_local_runs(slurm, smoke_workflow, tmp_path,
                                                     monkeypatch):
    local, _ = smoke_workflow
    wd = copy_workflow(tmp_path)
    cfg = study_variant(wd, "cnn_torch", **{
        "study.families": ["cnn"], "study.sweep_families": ["cnn"], "study.frameworks": ["torch"],
        "study.datasets": ["mnist1d"], "study.family_settings": {}})
    for k, v in slurm.env().items():
        monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    p = snakemake(wd, "--profile", "workflow/profiles/slurm", "--configfile", cfg, *TEST_ARGS)
    wall = time.monotonic() - t0
    out = p.stdout + p.stderr
    (tmp_path / "snakemake.log").write_text(out)
    assert p.returncode == 0, out[-6000:] + "\n" + slurm.logs()

    # every record arrived, and they are the local run's records of the same runs
    want_plain, want_tuned = _by_kind({k: r for k, r in _records(local).items()
                                       if r["family"] == "cnn" and r["framework"] == "torch"})
    got_plain, got_tuned = _by_kind(_records(wd))
    assert got_plain == want_plain
    assert got_tuned == want_tuned and got_tuned
    assert (wd / "results/summary.parquet").exists() and (wd / "reports/index.html").exists()

    # every job went through sbatch and completed; SLURM kept the node's CPUs the limit
    submitted = set(re.findall(r"submitted with SLURM jobid (\d+)", out))
    jobs = {j["id"]: j for j in slurm.jobs() if j["name"] != PROBE}
    assert submitted and submitted == set(jobs)
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}
    rules = {re.sub(r"^rule_|_wildcards_.*$", "", j["comment"]) for j in jobs.values()}
    assert {"train_job", "tune_create", "tune_worker", "tune_export", "tune_final",
            "aggregate", "report"} <= rules
    peak = _max_cpus_at_once(list(jobs.values()))
    assert peak <= slurm.cpus
    print(f"\nsnakemake on SLURM: {wall:.0f} s, {len(jobs)} jobs, at most {peak} of "
          f"{slurm.cpus} CPUs at once")
