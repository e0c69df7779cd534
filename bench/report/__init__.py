"""HTML reports: `python -m bench report` turns the summary table (and any tuning studies)
into plotly pages under reports/ that open from the file system with no network.

Pages: index.html (overview), scale.html, frameworks.html, sweep.html, curves.html,
generation.html (translation models), tuning.html; data/<panel>.csv holds the numbers behind
each figure. This module only registers the verb; pandas, plotly and optuna are imported when
the verb runs.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SETTINGS_DIR = "settings"


@dataclass(frozen=True)
class PageInfo:
    """One page of the report: its file, its title in the navigation bar, and its name: the
    caption for `snakemake --report` (workflow/report/<name>.rst) and the module of
    bench.report whose `page(inputs)` builds it (each page's rows, statistics, captions and
    figures live in that module)."""

    file: str
    title: str
    caption: str

    @property
    def module(self) -> str:
        return self.caption


@dataclass(frozen=True)
class Inputs:
    """What a page is built from: the normalised summary table, the loaded tuning studies,
    where the table came from, the measurement settings (description, runs, link or None
    for these pages) and the decode-speed table, each page taking what it needs."""

    df: object
    studies: list = ()
    source: str = "the summary table"
    settings: list | None = None
    decode: dict | None = None


# The one list of pages: the navigation bar, the verb, the workflow's outputs and the
# tests all read it.
PAGES = (
    PageInfo("index.html", "Overview", "overview"),
    PageInfo("scale.html", "Scale vs performance", "scale"),
    PageInfo("frameworks.html", "Frameworks", "frameworks"),
    PageInfo("sweep.html", "Optimizers & regularisers", "sweep"),
    PageInfo("curves.html", "Learning curves", "curves"),
    PageInfo("generation.html", "Generation", "generation"),
    PageInfo("tuning.html", "Tuning", "tuning"),
)
PAGE_FILES = tuple(p.file for p in PAGES)


def add_parsers(sub) -> None:
    p = sub.add_parser("report", help="summary table (+ tuning studies) -> HTML pages under "
                                      "--out, browsable offline")
    p.add_argument("--summary", default="results/summary.parquet",
                   help="the aggregate table (parquet or CSV)")
    p.add_argument("--out", default="reports", help="output folder (index.html and pages)")
    p.add_argument("--tune-dir", default=None,
                   help="folder of tuning studies, one sub-folder each, e.g. results/tune "
                        "(default: none)")
    p.add_argument("--study", action="append", default=None, metavar="NAME",
                   help="show only this study of --tune-dir (repeatable; default: every "
                        "sub-folder)")
    p.add_argument("--decode-speed", default="results/decode_speed.json", metavar="JSON",
                   help="the table `python -m bench decode-speed` wrote, shown on the "
                        "Generation page when the file exists (default "
                        "results/decode_speed.json)")
    p.set_defaults(func=_cmd)


def _cmd(a) -> int:
    if not Path(a.summary).is_file():
        print(f"python -m bench report: error: summary table {a.summary!r} not found",
              file=sys.stderr)
        return 2
    from .generation_decode import DecodeSpeedError

    try:
        sizes = build_report(a.summary, a.out, a.tune_dir, a.study, a.decode_speed)
    except DecodeSpeedError as e:
        print(f"python -m bench report: error: {e}", file=sys.stderr)
        return 2
    total = sum(sizes.values())
    print(f"report: {len(sizes)} pages, {total / 1e6:.1f} MB -> {a.out}/index.html",
          file=sys.stderr)
    return 0


def build_pages(df, studies, source: str = "the summary table", settings=None, decode=None):
    """All pages for a normalised summary table and loaded tuning studies. `settings` lists
    (description, runs, link or None for these pages) of every measurement setting;
    `decode`, a decode-speed table for the Generation page."""
    inputs = Inputs(df, list(studies), source, settings, decode)
    return [importlib.import_module(f".{p.module}", __name__).page(inputs) for p in PAGES]


def build_report(summary: str | Path, out: str | Path, tune_dir: str | Path | None = None,
                 studies: list[str] | None = None,
                 decode_speed: str | Path | None = None) -> dict[str, int]:
    """Write every page and its CSVs; returns {page file: bytes}. `decode_speed`: the JSON
    of `python -m bench decode-speed`, shown on the Generation page if the file exists."""
    import plotly
    from plotly.offline import get_plotlyjs

    from . import generation_decode, settings, tables, tuning_studies
    from .html import write_page

    t0 = time.perf_counter()
    df = tables.load_summary(summary)
    studies = tuning_studies.find_studies(tune_dir, studies)
    decode = generation_decode.load_decode_speed(decode_speed) if decode_speed else None
    if decode is not None:
        print(f"report: decode-speed table {decode_speed} on the Generation page",
              file=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Stale CSVs from an earlier report would be misleading: the data folder is rebuilt.
    data_dir = out / "data"
    if data_dir.is_dir():
        for f in data_dir.glob("*.csv"):
            f.unlink()
    js = get_plotlyjs()
    footer = (f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m bench report` "
              f"from {summary} ({len(df)} runs) with plotly {plotly.__version__}; "
              f"tuning studies: {len(studies)}.")
    # Runs on other hardware or settings are never drawn beside these: the most common
    # setting gets the pages here, every other one its own under settings/<n>/.
    parts = settings.split_by_setting(df)
    settings_dir = out / SETTINGS_DIR
    if settings_dir.is_dir():
        shutil.rmtree(settings_dir)
    links = [f"{SETTINGS_DIR}/{i}/index.html" for i in range(1, len(parts))]
    sizes = {}
    for i, (setting, part) in enumerate(parts):
        here = out if i == 0 else settings_dir / str(i)
        up = "" if i == 0 else "../../"
        listing = [(settings.describe_setting(st), len(p), None if j == i else
                    up + ("index.html" if j == 0 else links[j - 1]))
                   for j, (st, p) in enumerate(parts)] if setting else None
        for page in build_pages(part, studies if i == 0 else [], str(summary), listing,
                                decode if i == 0 else None):
            written = write_page(here, page, js, footer)
            if i == 0:
                sizes[page.file] = written
    if len(parts) > 1:
        print(f"report: {len(parts)} measurement settings; the other {len(parts) - 1} under "
              f"{settings_dir}/", file=sys.stderr)
    print(f"report: built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return sizes
