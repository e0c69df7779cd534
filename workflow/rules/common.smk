# The study grid: config -> validated settings -> runs -> jobs (groups of runs).
# The expansion lives in bench.study.plan so the tests check exactly what is scheduled here.

import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)

from bench.config import check_config  # noqa: E402
from bench import __version__ as BENCH_VERSION  # noqa: E402
from bench.study.plan import jobs, race_epochs  # noqa: E402
from bench.tune.paths import BEST_FILE, PARQUET_FILE, TUNE_DIR, study_file, study_folder  # noqa: E402

try:
    config = check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
    GRID_JOBS, STUDY_JOBS = jobs(config)
except ValueError as e:  # one line naming the key/value; no traceback, no job started
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
JOBS = {b.name: b for b in GRID_JOBS + STUDY_JOBS}
# Every training job reads it to print the study's progress and time left (bench.study.progress).
STUDY_PLAN = "results/plan.json"


onstart:
    from bench.study.progress import write_plan

    write_plan(STUDY_PLAN, GRID_JOBS + STUDY_JOBS)

# Learning-rate selections, one per (family, dataset) with a grid: results/lr/<fam>-<ds>.json
LR_GROUPS = sorted({f"{b.family}-{b.dataset}" for b in GRID_JOBS})


def lr_file(job):
    return f"results/lr/{job.family}-{job.dataset}.json"


def job_lr_input(wildcards):
    """A study job whose rates are chosen on validation waits for its selection file."""
    b = JOBS[wildcards.job]
    return [lr_file(b)] if b.choose_lr else []


def job_lr_arg(wildcards):
    b = JOBS[wildcards.job]
    return f"--lr-from {shlex.quote(lr_file(b))}" if b.choose_lr else ""


def grid_jobs_of(wildcards):
    """The grid jobs of one (family, dataset), whose records the selection reads."""
    return [f"results/jobs/{b.name}.json" for b in GRID_JOBS
            if f"{b.family}-{b.dataset}" == wildcards.group]


def job_drop_arg(wildcards):
    """A grid job stops rates that fall behind an earlier one (study.lr_grid_drop)."""
    drop = JOBS[wildcards.job].drop
    return "--drop-behind " + ",".join(f"{e}:{m}" for e, m in drop) if drop else ""


def job_specs(wildcards):
    """The job's specs as one shell-quoted JSON argument (a params change reruns the job)."""
    specs = [s.to_dict() for s in JOBS[wildcards.job].specs]
    return shlex.quote(json.dumps(specs, sort_keys=True, separators=(",", ":")))


def job_threads(wildcards):
    return config["threads"]


def train_resources():
    r = dict(config["resources"])
    if config["device"] == "cuda":
        r["gpu"] = 1
    return r


# ---- tuning (workflow/rules/tune.smk)


def final_inputs(wildcards):
    """The study's definition and best parameters, and for a transfer check the smaller
    study's too: tune-final reads all of them, and a definition that a failed or killed
    tune_create left missing must be created again, not reported missing at the final."""
    study = TUNE[wildcards.study]
    names = [study.name] + ([study.transfer_from] if study.transfer_from else [])
    return [study_file(n, f) for n in names for f in (DEFINITION_FILE, BEST_FILE)]


def final_transfer_arg(wildcards):
    src = TUNE[wildcards.study].transfer_from
    return f"--transfer-from {study_folder(src)}" if src else ""


# ---- report (workflow/rules/report.smk)


def report_tune_inputs(wildcards):
    """The exported trials and best parameters of every configured tuning study."""
    return [study_file(name, f) for name in sorted(globals().get("TUNE", {}))
            for f in (BEST_FILE, PARQUET_FILE)]


def report_tune_args(wildcards):
    names = sorted(globals().get("TUNE", {}))
    if not names:
        return ""
    return f"--tune-dir {TUNE_DIR} " + " ".join(f"--study {shlex.quote(n)}" for n in names)


def report_pages():
    """The report rule's page outputs, one per page of bench.report.PAGES, each flagged
    for `snakemake --report` with its caption and its place in the order."""
    from bench.report import PAGES

    return {p.caption: report(f"reports/{p.file}", caption=f"../report/{p.caption}.rst",
                              category="Benchmark report",
                              labels={"page": f"{i} {p.title.lower()}"})
            for i, p in enumerate(PAGES, 1)}
