"""Measurement settings (device, precision, threads, compile, TF32, XLA): runs measured under
different settings are never drawn beside each other; each setting gets its own pages.
"""

from __future__ import annotations

import pandas as pd

from . import tables

# What a measurement depends on beyond the model and its training: runs that differ in one
# of these are never drawn side by side (each setting gets its own pages).
SETTING_COLUMNS = ["device", "device_name", "precision", "threads", "compile", "tf32",
                   "conv_autotune"]


SETTING_DEFAULTS = {"precision": "fp32", "compile": "False", "tf32": "False",
                    "conv_autotune": "True"}


def setting_of(row) -> tuple:
    """The measurement setting of one summary row (older records: the defaults)."""
    out = []
    for c in SETTING_COLUMNS:
        v = row[c]
        if c == "threads":
            v = "" if pd.isna(v) else str(int(v))
        out.append(v or SETTING_DEFAULTS.get(c, ""))
    return tuple(out)


def describe_setting(setting: tuple) -> str:
    """'cpu (AMD EPYC ...), fp32, 1 thread' plus compile/tf32/autotune where not default."""
    d = dict(zip(SETTING_COLUMNS, setting, strict=True))
    text = d["device"] or "device not recorded"
    if d["device_name"]:
        text += f" ({d['device_name']})"
    text += f", {d['precision']}"
    if d["threads"]:
        text += f", {d['threads']} thread" + ("" if d["threads"] == "1" else "s")
    text += compile_phrase(d["compile"])
    if d["device"] == "cuda":
        text += (", TF32" if d["tf32"] == "True" else ", no TF32")
        text += ("" if d["conv_autotune"] == "True" else ", no conv autotuning")
    return text


_COMPILE_WORDS = {"True": "compiled", "best": "compile best", "False": "uncompiled"}


def compile_phrase(policy: str) -> str:
    """', compiled' / ', compile best' / ', PyTorch uncompiled, TensorFlow compile best' for a
    setting's compile policy ('' where nothing is compiled)."""
    if "=" not in policy:
        return "" if policy in ("False", "") else f", {_COMPILE_WORDS.get(policy, policy)}"
    parts = dict(p.split("=", 1) for p in policy.split(","))
    return "".join(f", {tables.framework_name(fw)} {_COMPILE_WORDS.get(v, v)}"
                   for fw, v in parts.items())


def _compile_policies(df: pd.DataFrame, keys: pd.Series) -> pd.Series:
    """Each run's setting with its compile mode replaced by its study's policy: where each
    framework ran one mode (config.yaml's per-framework `compile`, e.g. PyTorch eager and
    TensorFlow best), the frameworks share one setting, 'torch=False,tf=best'. A framework
    that ran several modes keeps them apart."""
    at = SETTING_COLUMNS.index("compile")
    base = keys.map(lambda k: k[:at] + k[at + 1:])
    out = keys.copy()
    for b in dict.fromkeys(base):
        rows = base == b
        modes = {fw: set(keys[rows & (df["framework"] == fw)].map(lambda k: k[at]))
                 for fw in set(df.loc[rows, "framework"])}
        if len(set().union(*modes.values())) < 2 or any(len(m) > 1 for m in modes.values()):
            continue
        policy = ",".join(f"{fw}={next(iter(modes[fw]))}"
                          for fw in sorted(modes, key=tables.framework_rank))
        out[rows] = keys[rows].map(lambda k, p=policy: k[:at] + (p,) + k[at + 1:])
    return out


def split_by_setting(df: pd.DataFrame) -> list[tuple[tuple, pd.DataFrame]]:
    """(setting, its runs) for every measurement setting, the one with the most runs first
    (ties: by description).

    Compile modes that differ by framework alone form one policy (`_compile_policies`).
    A run that failed before it measured anything (status error) records no device name:
    it joins the largest setting that agrees with it on the rest, so that its failure is
    listed beside the runs it belongs with."""
    if df.empty:
        return [((), df)]
    keys = _compile_policies(df, df.apply(setting_of, axis=1))
    name = SETTING_COLUMNS.index("device_name")
    measured = [k for k in keys if k[name]]
    sizes = {k: measured.count(k) for k in dict.fromkeys(measured)}

    def home(k: tuple) -> tuple:
        if k[name] or not sizes:
            return k
        rest = [j for j in range(len(k)) if j != name and SETTING_COLUMNS[j] != "device"]
        fits = [m for m in sizes if all(m[j] == k[j] for j in rest)]
        return max(fits, key=lambda m: (sizes[m], m[0] == k[0])) if fits else k

    keys = keys.map(home)
    parts = [(k, df[keys == k]) for k in dict.fromkeys(keys)]
    return sorted(parts, key=lambda p: (-len(p[1]), describe_setting(p[0])))
