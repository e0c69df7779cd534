"""Self-contained HTML pages: plotly.js inlined once per page, every text escaped.

A page is a list of blocks: trusted markup built here (`Raw`, whose every value went through
`esc`) and `Panel`s (a figure, or a message in its place, with a caption and the CSV of the
numbers behind it). Nothing on a page refers to a network address; CSVs are relative links.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import PAGES

DATA_DIR = "data"
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "toImageButtonOptions": {"format": "svg"}}


def esc(value) -> str:
    """Any value as HTML text (quotes too, so it is safe inside attributes)."""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return html.escape(str(value), quote=True)


class Raw(str):
    """Markup produced by this package from escaped values."""


@dataclass
class Panel:
    """One figure (or the message shown in its place), its caption and its numbers.

    key: unique slug in the report; the figure's div is `fig-<key>`, its numbers
    `data/<key>.csv`. data: a tidy table whose rows are the plotted points; the `trace`
    column names the figure trace each row belongs to.
    """

    key: str
    title: str
    caption: str = ""
    fig: object | None = None
    data: pd.DataFrame | None = None
    message: str = ""
    height: int = 420
    body: str = ""  # trusted markup (e.g. a table) shown when there is no figure

    @property
    def csv_name(self) -> str:
        return f"{DATA_DIR}/{self.key}.csv"


@dataclass
class Page:
    file: str
    title: str
    intro: str = ""
    blocks: list = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(Raw(f"<h2>{esc(text)}</h2>"))

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{esc(cls)}"' if cls else ""
        self.blocks.append(Raw(f"<p{c}>{esc(text)}</p>"))

    def message(self, text: str) -> None:
        self.blocks.append(Raw(f'<div class="empty" role="status">{esc(text)}</div>'))

    def add(self, block) -> None:
        self.blocks.append(block)

    @property
    def panels(self) -> list[Panel]:
        return [b for b in self.blocks if isinstance(b, Panel)]


def table(rows: list[list], header: list[str] | None = None, cls: str = "") -> Raw:
    """An HTML table of plain values (every cell escaped)."""
    out = [f'<table class="{esc(cls)}">' if cls else "<table>"]
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
                   + "</tr></thead>")
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>")
    out.append("</tbody></table>")
    return Raw("".join(out))


def frame_table(df: pd.DataFrame, cls: str = "") -> Raw:
    return table(df.astype(object).where(df.notna(), "").values.tolist(),
                 [str(c) for c in df.columns], cls)


def links(items: list[tuple[str, str]]) -> Raw:
    return Raw("<ul>" + "".join(f'<li><a href="{esc(h)}">{esc(t)}</a></li>' for h, t in items)
               + "</ul>")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
nav{background:#1f2d3d;padding:.5rem 1rem;position:sticky;top:0;z-index:10}
nav a{color:#dfe6ee;text-decoration:none;margin-right:1.2rem;font-size:.95rem}
nav a.here{color:#fff;font-weight:600;border-bottom:2px solid #7fb3ff}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.6rem;margin:.6rem 0}
h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
h3{font-size:1.05rem;margin:.2rem 0 .4rem}
section.panel{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:.8rem 1rem;
margin:1rem 0}
.caption{font-size:.92rem;line-height:1.45;margin:.5rem 0}
.csv{font-size:.85rem}
.empty{background:#fff7e0;border:1px solid #f0d48a;border-radius:4px;padding:.8rem 1rem;
margin:.4rem 0;font-size:.95rem}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0;background:#fff}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:left;vertical-align:top}
th{background:#f0f3f6}
ol.findings li{margin:.35rem 0;line-height:1.45}
footer{color:#777;font-size:.8rem;margin-top:3rem}
"""


def _nav(current: str) -> str:
    items = []
    for file, title in ((p.file, p.title) for p in PAGES):
        cls = ' class="here" aria-current="page"' if file == current else ""
        items.append(f'<a href="{esc(file)}"{cls}>{esc(title)}</a>')
    return "<nav>" + "".join(items) + "</nav>"


_TEMPLATE = "bench"


def _register_template() -> None:
    """A small white template (the stock ones weigh ~10 KB per figure and are slow to copy)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    if _TEMPLATE in pio.templates:
        return
    axis = {"gridcolor": "#e9ecef", "linecolor": "#adb5bd", "zerolinecolor": "#ced4da",
            "ticks": "outside", "tickcolor": "#adb5bd", "automargin": True}
    pio.templates[_TEMPLATE] = go.layout.Template(layout={
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif",
                 "size": 12, "color": "#222"},
        "paper_bgcolor": "white", "plot_bgcolor": "white", "xaxis": axis, "yaxis": axis,
        "hoverlabel": {"align": "left"}, "legend": {"bgcolor": "rgba(255,255,255,0.6)"},
    })


def render_panel(panel: Panel) -> str:
    import plotly.io as pio

    _register_template()
    out = [f'<section class="panel" id="{esc(panel.key)}"><h3>{esc(panel.title)}</h3>']
    if panel.fig is not None:
        fig = panel.fig
        m = fig.layout.margin
        fig.update_layout(height=panel.height, template=_TEMPLATE,
                          margin={"l": m.l or 60, "r": m.r or 20, "t": m.t or 40,
                                  "b": m.b or 50})
        out.append(pio.to_html(fig, full_html=False, include_plotlyjs=False,
                               div_id=f"fig-{panel.key}", config=PLOT_CONFIG,
                               default_height=f"{panel.height}px"))
    elif panel.body:
        out.append(str(panel.body))
    else:
        out.append(f'<div class="empty" role="status">{esc(panel.message or "No data.")}</div>')
    if panel.caption:  # a newline in a caption starts a new line
        out.append('<p class="caption">' + "<br>".join(esc(line) for line in
                                                    panel.caption.split("\n")) + "</p>")
    if panel.data is not None:
        kind = "figure" if panel.fig is not None else "table" if panel.body else "message"
        out.append(f'<p class="csv"><a href="{esc(panel.csv_name)}" download>'
                   f"Numbers behind this {kind}"
                   f" (CSV, {len(panel.data)} rows)</a></p>")
    out.append("</section>")
    return "".join(out)


def render_page(page: Page, plotly_js: str, footer: str = "") -> str:
    """The whole page as one string; plotly.js is inlined once, at the top of <body>."""
    body = []
    for b in page.blocks:
        body.append(render_panel(b) if isinstance(b, Panel) else str(b))
    # A figure-free page still gets plotly.js only if it has figures: keep small pages small.
    js = f"<script>{plotly_js}</script>" if page.panels and any(
        p.fig is not None for p in page.panels) else ""
    intro = f'<p class="caption">{esc(page.intro)}</p>' if page.intro else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(page.title)} - bench report</title><style>{CSS}</style></head>"
        f"<body>{_nav(page.file)}{js}<main><h1>{esc(page.title)}</h1>{intro}"
        + "".join(body)
        + f"<footer>{esc(footer)}</footer></main></body></html>\n"
    )


def write_page(out_dir: Path, page: Page, plotly_js: str, footer: str = "") -> int:
    """Write the page and the CSV of every panel; returns the page's size in bytes."""
    data_dir = out_dir / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)
    for panel in page.panels:
        if panel.data is not None:
            _write_atomic(data_dir / f"{panel.key}.csv", panel.data.to_csv(index=False))
    text = render_page(page, plotly_js, footer)
    _write_atomic(out_dir / page.file, text)
    return len(text.encode())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
