"""File names of a study's folder, results/tune/<study>/, and the paths the workflow
(workflow/rules/tune.smk) schedules, kept here so the rules stay plain."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definition import TuneStudy

DEFINITION_FILE, JOURNAL_FILE = "study.json", "journal.log"
BEST_FILE, CSV_FILE, PARQUET_FILE = "best.json", "trials.csv", "trials.parquet"
TUNE_DIR = "results/tune"  # one folder per study under it, named by study_name


def study_folder(study: str) -> str:
    """results/tune/<study>; `study` may be a Snakemake wildcard ("{study}")."""
    return f"{TUNE_DIR}/{study}"


def study_file(study: str, name: str) -> str:
    """A file of a study's folder, e.g. study_file("{study}", BEST_FILE)."""
    return f"{study_folder(study)}/{name}"


def quoted_definition(study: TuneStudy) -> str:
    """The definition as one shell-quoted JSON argument."""
    import shlex

    return shlex.quote(json.dumps(study.definition, sort_keys=True, separators=(",", ":")))


def worker_files(study: TuneStudy) -> list[str]:
    return [study_file(study.name, f"workers/{k}.json") for k in range(study.workers)]


def final_files(studies) -> list[str]:
    """Done files of the final runs of every study, one per framework (the aggregate rule's
    extra input)."""
    return [study_file(s.name, f"final-{fw}.json")
            for s in sorted(studies, key=lambda s: s.name) for fw in s.final_frameworks]
