"""The Generation page's last section: our cached generate() against Hugging Face's on the
article's model, from `bench decode-speed`'s JSON.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from ..measure.decode_speed import gemm_text
from .html import Panel, table

DECODE_PEERS = (("torch", "ours, PyTorch"), ("tf", "ours, TensorFlow"))


class DecodeSpeedError(ValueError):
    """A --decode-speed file that is not a decode-speed table."""


def load_decode_speed(path) -> dict | None:
    """The table `python -m bench decode-speed` wrote (None where there is no file);
    a file that is not one raises DecodeSpeedError naming it."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DecodeSpeedError(f"{path}: not a decode-speed table ({e})") from None
    if not isinstance(doc, dict) or doc.get("what") != "decode-speed" or not doc.get("cells"):
        raise DecodeSpeedError(f"{path}: not a decode-speed table (no 'what': 'decode-speed' "
                               "and cells)")
    doc["source"] = str(path)
    return doc


def _ratio(a, b) -> float:
    return a / b if a and b else math.nan


def decode_frame(doc: dict) -> pd.DataFrame:
    """One row per cell: tokens/s of each peer, ours/HF and cached/uncached ratios."""
    rows = []
    for c in doc["cells"]:
        r = {k: c.get(k) for k in ("precision", "batch", "beam", "length")}
        r["search"] = "greedy" if r["beam"] == 1 else f"beam {r['beam']}"
        for p, _ in DECODE_PEERS:
            for cache in ("cache", "nocache"):
                r[f"{p}_{cache}"] = c.get(f"{p}_{cache}")
            r[f"{p}_speedup"] = _ratio(c.get(f"{p}_cache"), c.get(f"{p}_nocache"))
            r[f"{p}_over_hf"] = _ratio(c.get(f"{p}_cache"), c.get("hf_cache"))
        r["hf_cache"] = c.get("hf_cache")
        r["uncached_left_out"] = c.get("uncached_left_out") or ""
        rows.append(r)
    return pd.DataFrame(rows).astype({f"{p}_{c}": float for p, _ in DECODE_PEERS
                                      for c in ("cache", "nocache")} | {"hf_cache": float})


def _span(v: pd.Series, fmt: str = "{:.2f}") -> str:
    v = v.dropna()
    if v.empty:
        return "n/a"
    lo, hi = fmt.format(v.min()), fmt.format(v.max())
    return lo if lo == hi else f"{lo}-{hi}"


def _per_length(df: pd.DataFrame, col: str) -> str:
    """'1.01-1.20x at 20 tokens, 0.98x at 64, ...' over every cell of each length."""
    parts = [f"{_span(df.loc[df['length'] == n, col])}x at {n}"
             for n in sorted(set(df["length"])) if df.loc[df["length"] == n, col].notna().any()]
    return ", ".join(parts) + (" tokens" if parts else "")


def _tokens(v) -> str:
    return f"{v:,.0f}" if isinstance(v, float) and math.isfinite(v) else "-"


def _x(v) -> str:
    return f"{v:.2f}" if isinstance(v, float) and math.isfinite(v) else "-"


def decode_speed_panel(doc: dict, key: str) -> Panel:
    """Our generate against Hugging Face's on the article's model (random weights of
    opus-mt-en-fr's shape): the table `bench decode-speed` wrote, with computed claims."""
    df = decode_frame(doc)
    peers = [p for p in doc.get("peers", []) if p in ("torch", "tf", "hf")]
    ours = [(p, name) for p, name in DECODE_PEERS if p in peers]
    has_hf = "hf" in peers
    title = ("Decode speed against Hugging Face's generate: opus-mt-en-fr's shape "
             "(random weights)")
    header = ["precision", "batch", "search", "length"]
    for _, name in ours:
        header += [f"{name}: cached", "uncached", "cached / uncached"]
    if has_hf:
        header += ["Hugging Face generate"] + [f"{name} / HF" for _, name in ours]
    cells = []
    for r in df.itertuples(index=False):
        row = [r.precision, r.batch, r.search, r.length]
        for p, _ in ours:
            row += [_tokens(getattr(r, f"{p}_cache")), _tokens(getattr(r, f"{p}_nocache")),
                    _x(getattr(r, f"{p}_speedup"))]
        if has_hf:
            row += [_tokens(r.hf_cache)] + [_x(getattr(r, f"{p}_over_hf")) for p, _ in ours]
        cells.append(row)
    gemm = doc.get("gemm_gflops") or {}
    load = [doc.get("load_avg_1m_start"), doc.get("load_avg_1m_end")]
    command = doc.get("command", "python -m bench decode-speed")
    versions = ", ".join(f"{k} {v}" for k, v in (doc.get("versions") or {}).items())
    setting = (f"Measured {doc.get('date', '?')} by `{command}` on "
               f"{doc.get('cpu_model', '?')} ({doc.get('cpu_count', '?')} cores), "
               f"{doc.get('threads', '?')} thread(s), {doc.get('repeats', '?')} timed "
               f"call(s) per cell after an untimed one"
               + (" (untimed: only before each precision's first cell)"
                  if doc.get("warmup") == "first" else "")
               + f", {doc.get('rounds', '?')} round(s); "
               "load average " + " to ".join(f"{v:.2f}" for v in load if v is not None)
               + (f"; one-thread 2048^3 matrix product (PyTorch) {gemm_text(gemm)} GFLOP/s"
                  if gemm else "")
               + (f"; {versions}" if versions else "") + ".")
    what = (f"Generated tokens/s (median of a cell's calls, median over rounds), "
            f"{doc.get('model', 'opus-mt-en-fr shape')} ({doc.get('params', 0):,} parameters), "
            f"sources of {doc.get('source_tokens', 20)} tokens, exactly `length` tokens "
            f"generated per sentence (EOS banned before) so every library does the same work; "
            f"batch 1 is the article's single call (latency per sentence = length / "
            f"tokens/s). Ours with and without the key/value cache; Hugging Face's caches. "
            f"Ours in PyTorch and Hugging Face's share a process and alternate calls, so "
            f"their ratio is the reliable one; TensorFlow runs in its own process.")
    claims = []
    for prec in dict.fromkeys(df["precision"]):
        part = df[df["precision"] == prec]
        if has_hf and "torch" in peers and part["torch_over_hf"].notna().any():
            low = part[part["torch_over_hf"] < 0.8]
            goal = ("at least 0.8x in every cell" if low.empty else
                    "below 0.8x in " + ", ".join(
                        f"batch {r.batch} {r.search} {r.length}" for r in low.itertuples()))
            claims.append(f"in {prec}, our cached PyTorch decode is "
                          f"{_span(part['torch_over_hf'])}x Hugging Face's ("
                          f"{_per_length(part, 'torch_over_hf')}; {goal})")
        if has_hf and "tf" in peers and part["tf_over_hf"].notna().any():
            claims.append(f"in {prec}, ours in TensorFlow is {_span(part['tf_over_hf'])}x "
                          f"Hugging Face's ({_per_length(part, 'tf_over_hf')})")
        for p, name in ours:
            if part[f"{p}_speedup"].notna().any():
                claims.append(f"in {prec}, the cache speeds {name} up "
                              f"{_per_length(part, f'{p}_speedup')} (cached / uncached)")
    left = df[df["uncached_left_out"] != ""]
    caption = setting + "\n" + what
    if claims:
        caption += "\n" + ". ".join(c[0].upper() + c[1:] for c in claims) + "."
    if len(left):
        caption += (f"\nOurs without the cache was not measured in {len(left)} of {len(df)} "
                    f"cells ({left['uncached_left_out'].iloc[0]}): rerunning the whole prefix "
                    "at every step makes one such call take minutes; '-' in the uncached "
                    "columns.")
    notes = doc.get("precision_notes") or {}
    if (df["precision"] != "fp32").any() and notes:
        caption += "\n" + "; ".join(f"{dict(DECODE_PEERS).get(p, 'Hugging Face')}: {v}"
                                    for p, v in notes.items()) + "."
    caption += f"\nSource: {doc.get('source', 'decode-speed table')}."
    return Panel(key, title, caption, None, df.assign(trace="decode-speed"),
                 body=table(cells, header))
