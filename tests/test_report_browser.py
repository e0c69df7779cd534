"""The report in a real browser: headless Chromium opens every page from the file system.

Asserted on every page: no console error, no page error, no request to any network address
(every request is recorded and anything but file:, data:, blob: and about: is aborted), every
plot container rendered by plotly, nothing injected by a `<script>` label, and the links
between pages work. Debian's `chromium` is driven by Python Playwright launched with
`executable_path` (a Playwright browser download is not possible offline); `.ci/run` installs
both. The fast tests browse the report of the smoke study's runs with synthetic measurements
(tests/test_report.py builds them); the slow one runs the real smoke workflow first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import pytest

from bench import report
from bench.report import PAGES

CHROMIUM = os.environ.get("BENCH_CHROMIUM", "/usr/bin/chromium")
LOCAL_SCHEMES = {"file", "data", "blob", "about"}
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BAD = "<script>alert(1)</script>"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - CI installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None,
                       reason="Python playwright is not installed (pip install -e '.[dev]')"),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    """A persistent context on a fresh profile folder (Playwright's way to set one)."""
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1280, "height": 900}, accept_downloads=False)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    """The smoke study's runs (synthetic measurements), a failure, a tuned run, a hostile
    label and two tuning studies, rendered exactly as the report rule does."""
    import test_report

    tmp = tmp_path_factory.mktemp("browser")
    recs = test_report.smoke_records({("gru", "s"): "oom"}) + test_report.seq2seq_records()
    for r in recs:
        if r["regulariser"] == "dropout" and r["framework"] == "tf":
            r["regulariser"] = BAD
    tuned = dict(recs[0], tuned="cnn_adam", run_id=recs[0]["run_id"] + "-tuned")
    summary = test_report.write_summary([*recs, tuned], tmp / "summary.parquet")
    test_report.write_tuning_study(tmp / "tune", "cnn_adam")
    test_report.write_tuning_study(tmp / "tune", "gru_single", multi=False)
    out = tmp / "reports"
    report.build_report(summary, out, tmp / "tune")
    return out


def browse(ctx, path: Path) -> dict:
    """Open one page; what it logged, requested and rendered."""
    page = ctx.new_page()
    seen = {"console": [], "pageerror": [], "requests": [], "blocked": [], "dialogs": []}
    page.on("console", lambda m: seen["console"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen["pageerror"].append(str(e)))
    page.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))

    def route(r):
        seen["requests"].append(r.request.url)
        if urlparse(r.request.url).scheme in LOCAL_SCHEMES:
            r.continue_()
        else:
            seen["blocked"].append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda q: None if urlparse(q.url).scheme in LOCAL_SCHEMES
            else seen["blocked"].append(q.url))
    page.goto(path.as_uri(), wait_until="load")
    n = page.evaluate("document.querySelectorAll('.plotly-graph-div').length")
    if n:
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.plotly-graph-div')).every("
            "d => d._fullLayout && d.querySelector('svg.main-svg'))", timeout=20_000)
    seen["plots"] = page.evaluate("""() => Array.from(
        document.querySelectorAll('.plotly-graph-div')).map(d => ({
            id: d.id, traces: (d._fullData || []).length,
            height: d.getBoundingClientRect().height,
            drawn: d.querySelectorAll('.scatterlayer .trace, .barlayer .trace, '
                                      + '.boxlayer .trace, .heatmaplayer image, '
                                      + '.heatmaplayer .hm, .infolayer .annotation').length}))""")
    seen["text"] = page.inner_text("body")
    seen["hrefs"] = page.evaluate(
        "Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    seen["page"] = page
    return seen


def check_page(ctx, out: Path, name: str, then=None) -> dict:
    """Browse a page and assert the offline, error-free, rendered properties; `then(page)`
    runs further checks on the open page."""
    seen = browse(ctx, out / name)
    try:
        assert seen["console"] == [], f"{name}: console errors {seen['console']}"
        assert seen["pageerror"] == [], f"{name}: page errors {seen['pageerror']}"
        assert seen["blocked"] == [], f"{name}: network requests {seen['blocked']}"
        assert seen["dialogs"] == [], f"{name}: a dialog opened: {seen['dialogs']}"
        for plot in seen["plots"]:
            assert plot["traces"] > 0 and plot["drawn"] > 0, f"{name}: empty plot {plot}"
            assert plot["height"] > 150, f"{name}: collapsed plot {plot}"
        for file in (p.file for p in PAGES):
            assert file in seen["hrefs"], f"{name}: no link to {file}"
        for href in seen["hrefs"]:
            if "://" not in href and not href.startswith("#"):
                assert (out / href).is_file(), f"{name}: broken link {href}"
        if then is not None:
            then(seen["page"])
        return seen
    finally:
        seen["page"].close()


def follow_nav_link(page) -> None:
    """Browse to the next page through the navigation bar."""
    page.click("nav >> text=Scale vs performance")
    page.wait_for_load_state("load")
    assert page.url.endswith("/scale.html")
    assert page.locator("nav a.here").inner_text() == "Scale vs performance"


def pick_one_run(page) -> None:
    """The learning-curve menu shows exactly the run picked."""
    div = page.locator(".plotly-graph-div").first
    div.locator(".updatemenu-header").click()
    div.locator(".updatemenu-dropdown-button").nth(2).click()  # all runs, run 1, run 2, ...
    page.wait_for_timeout(300)
    visible = page.evaluate(f"""Array.from(document.getElementById(
        {div.get_attribute('id')!r}).data.map(t => t.visible))""")
    assert visible.count(True) == 1 and visible.index(True) == 1


INTERACT = {"index.html": follow_nav_link, "curves.html": pick_one_run}


@pytest.mark.parametrize("name", report.PAGE_FILES)
def test_every_page_renders_offline_without_errors(browser, smoke_report, name):
    seen = check_page(browser, smoke_report, name, INTERACT.get(name))
    html_figs = (smoke_report / name).read_text().count('class="plotly-graph-div"')
    assert len(seen["plots"]) == html_figs
    if name != "index.html":
        assert seen["plots"], f"{name} has no figure"
    if name in ("index.html", "sweep.html", "curves.html"):
        assert BAD in seen["text"], f"{name}: the hostile label is not shown as text"


@pytest.mark.slow
def test_real_smoke_study_report_in_the_browser(browser, copy_smoke):
    """The smoke workflow end to end, then every page it generated, in the browser."""
    from conftest import snakemake

    wd = copy_smoke
    out = wd / "reports"
    for name in report.PAGE_FILES:
        seen = check_page(browser, out, name)
        if name != "tuning.html" or "--study" in (wd / "results/logs/report.log").read_text():
            assert name == "index.html" or seen["plots"], f"{name} has no figure"
    z = snakemake(wd, "--cores", "1", "--configfile", "config/smoke.yaml",
                  "--report", "report.zip")
    assert z.returncode == 0, z.stderr[-4000:]
    assert (wd / "report.zip").stat().st_size > 1e6
