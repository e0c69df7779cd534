"""File names of a study's folder, results/tune/<study>/, and the paths the workflow
(workflow/rules/tune.smk) schedules, kept here so the rules stay plain."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definition import TuneStudy

DEFINITION_FILE, JOURNAL_FILE = "study.json", "journal.log"
BEST_FILE, CSV_FILE, PARQUET_FILE = "best.json", "trials.csv", "trials.parquet"


def quoted_definition(study: TuneStudy) -> str:
    """The definition as one shell-quoted JSON argument."""
    import shlex

    return shlex.quote(json.dumps(study.definition, sort_keys=True, separators=(",", ":")))


def worker_files(study: TuneStudy) -> list[str]:
    return [f"results/tune/{study.name}/workers/{k}.json" for k in range(study.workers)]


def final_files(studies) -> list[str]:
    """Done files of the final runs of every study, one per framework (the aggregate rule's
    extra input)."""
    return [f"results/tune/{s.name}/final-{fw}.json"
            for s in sorted(studies, key=lambda s: s.name) for fw in s.final_frameworks]
