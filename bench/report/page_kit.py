"""What every page module shares: unique panel keys, a panel that shows its own error in place of
the page failing, the empty-table messages, one panel per (family, dataset).
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable

import pandas as pd

from . import tables
from .html import Page, Panel

# Tests set this to re-raise; the workflow shows a message in place of a panel that fails.
STRICT = False


class Keys:
    """Unique, file-name-safe panel keys."""

    def __init__(self):
        self.seen: set[str] = set()

    def __call__(self, *parts) -> str:
        base = re.sub(r"[^a-z0-9]+", "-", "-".join(map(str, parts)).lower()).strip("-") or "x"
        key, i = base, 2
        while key in self.seen:
            key, i = f"{base}-{i}", i + 1
        self.seen.add(key)
        return key


def safe(key: str, title: str, build: Callable[[], Panel | None]) -> Panel | None:
    """Build a panel; on an unexpected error show the error in its place instead of crashing."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001
        if STRICT:
            raise
        traceback.print_exc(file=sys.stderr)
        return Panel(key, title, message=f"This figure could not be built: "
                     f"{type(e).__name__}: {e}")


def no_runs(page: Page, df: pd.DataFrame) -> bool:
    if df.empty:
        page.message("The summary table holds no runs: nothing ran yet, or every job failed "
                      "before writing a record.")
        return True
    if tables.ok_rows(df).empty:
        page.message(f"None of the {len(df)} runs finished with status ok "
                     f"({status_line(df)}); there is nothing to plot. The overview lists "
                     "the failures and their messages.")
        return True
    return False


def short(v) -> str:
    """Parameter values for a table: floats to 4 significant digits."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def status_line(df: pd.DataFrame) -> str:
    c = df["status"].value_counts()
    return ", ".join(f"{k} {v}" for k, v in c.items())


def panel_per_group(page: Page, df: pd.DataFrame, prefix: str, panel) -> Page:
    """One figure per (family, dataset), each built by `panel(df, family, dataset, key)`."""
    keys = Keys()
    for family, dataset in tables.groups(df):
        k = keys(prefix, family, dataset)
        page.add(safe(k, f"{family} on {dataset}",
                      lambda f=family, d=dataset, k=k: panel(df, f, d, k)))
    return page
