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


# ---- report (workflow/rules/report.smk)


def report_tune_inputs(wildcards):
    """The exported trials and best parameters of every configured tuning study."""
    return [f"results/tune/{name}/{f}" for name in sorted(globals().get("TUNE", {}))
            for f in ("best.json", "trials.parquet")]


def report_tune_args(wildcards):
    names = sorted(globals().get("TUNE", {}))
    if not names:
        return ""
    return "--tune-dir results/tune " + " ".join(f"--study {shlex.quote(n)}" for n in names)


def _page(name, file, caption):
    return report(f"reports/{file}", caption=f"../report/{caption}.rst",
                  category="Benchmark report", labels={"page": name})
