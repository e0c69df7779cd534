"""What every tuning module shares: the lazy optuna import and the `[tune]` log line.

Optuna is imported only inside the functions that need it, so that building the
`python -m bench` parser (which loads the tune verbs) stays cheap.
"""

from __future__ import annotations

import sys
import warnings


def import_optuna():
    """Import optuna quietly (experimental-feature warnings would fill every log)."""
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def log(msg: str) -> None:
    print(f"[tune] {msg}", file=sys.stderr, flush=True)
