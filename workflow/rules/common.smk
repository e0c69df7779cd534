# The study grid: config -> validated settings -> runs -> jobs (batches of runs).
# The expansion lives in bench.study so the tests check exactly what is scheduled here.

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from bench.config import check_config  # noqa: E402
from bench.study import batches, plan  # noqa: E402

try:
    config = check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    RUNS = plan(config)
except ValueError as e:  # one line naming the key/value; no traceback, no job started
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
BATCHES = {b.name: b for b in batches(RUNS, config["runs_per_job"])}


def batch_specs(wildcards):
    """The batch's specs as one shell-quoted JSON argument (a params change reruns the job)."""
    specs = [s.to_dict() for s in BATCHES[wildcards.batch].specs]
    return shlex.quote(json.dumps(specs, sort_keys=True, separators=(",", ":")))


def batch_threads(wildcards):
    return config["threads"]


def train_resources():
    r = dict(config["resources"])
    if config["device"] == "cuda":
        r["gpu"] = 1
    return r
