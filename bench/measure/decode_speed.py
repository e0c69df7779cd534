"""`python -m bench decode-speed`: generated tokens/s of the article's translation model,
ours in PyTorch and TensorFlow against Hugging Face's `generate` (PyTorch), on the same
random weights of opus-mt-en-fr's shape (bench.translation.marian.opus_mt_en_fr; no download).

Every cell decodes exactly `length` tokens per sentence (EOS is banned before, as
`min_new_tokens` does, and the limit ends them), so all three do the same work: greedy
or beam search at batch 1 (the article's single call: latency per sentence) and at a
larger batch. Ours runs with and without its key/value cache; Hugging Face's caches.
Ours in PyTorch and Hugging Face's share one process, TensorFlow has its own (one
framework per process); the processes alternate over `--rounds`. Within a process each
cell's calls are timed interleaved (ours cached, ours uncached, Hugging Face's, again),
`--repeats` times after one untimed call each (traces, caches, allocator; `--warmup first`:
only before each precision's first cell); a cell's figure
is the median over rounds of the median of its calls. Compare ratios from one invocation:
this measures a shared, noisy machine.

Precisions: fp32, and bf16 as each library's user would run it: ours under autocast in
PyTorch (fp32 weights, bf16 products, one autocast region per generate call so that each
weight is cast once per call) and Keras's mixed_bfloat16 policy in TensorFlow; Hugging
Face's model loaded with bf16 weights (`from_pretrained(..., dtype=torch.bfloat16)`), so
every op of it runs in bf16, layer norms and softmax included.

The table is printed and written to `--out` (JSON, default results/decode_speed.json),
which `python -m bench report` shows on the Generation page. `--skip-uncached` leaves out
ours without the cache in the cells it names (the cached figures stay): rerunning the
whole prefix every step makes such calls take minutes at large batch x beam x length.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..registry import PRECISIONS, SpecError
from ..study.records import write_json_atomic
from . import cpu_name

PEERS = ("torch", "tf", "hf")
SOURCE_TOKENS = 20  # an English sentence of about 15 words, EOS included
DEFAULT_OUT = "results/decode_speed.json"
PRECISION_NOTES = {
    "torch": "bf16: autocast (fp32 weights, bf16 products; layer norms and softmax in fp32)",
    "tf": "bf16: Keras mixed_bfloat16 policy (fp32 weights, bf16 compute; softmax in fp32)",
    "hf": "bf16: weights loaded in bf16 (from_pretrained dtype=torch.bfloat16): every op "
          "in bf16",
}


def add_parsers(sub) -> None:
    p = sub.add_parser("decode-speed",
                       help="translation decode tokens/s: ours (torch, tf) against Hugging "
                            "Face generate, opus-mt-en-fr shape, random weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="1,64", help="sentences per call (default 1,64)")
    p.add_argument("--lengths", default="20,64,128", help="generated tokens per sentence")
    p.add_argument("--beams", default="1,4", help="1: greedy; N: beam search of width N")
    p.add_argument("--precisions", default="fp32", help=f"from {', '.join(PRECISIONS)}")
    p.add_argument("--peers", default=",".join(PEERS),
                   help="torch, tf (ours) and hf (transformers' generate, PyTorch)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell")
    p.add_argument("--warmup", choices=("each", "first"), default="each",
                   help="an untimed call before each cell's timed ones (each), or only before "
                        "the first cell of each precision (first: traces and first builds; "
                        "halves a long grid's time)")
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every peer, in alternating order (median over rounds)")
    p.add_argument("--skip", default="",
                   help="cells to leave out, e.g. 'b64:l128,b64:beam4' (all parts must match)")
    p.add_argument("--skip-uncached", default="",
                   help="cells (as --skip) where ours runs with its cache only: uncached "
                        "calls of a long, wide cell take minutes")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"the table as JSON, for `python -m bench report` (default {DEFAULT_OUT}"
                        "; '' writes none)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one library's process
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise SpecError(f"not a comma-separated list of integers: {text!r}") from None


def _tags(prec: str, batch: int, beam: int, length: int) -> set[str]:
    return {prec, f"b{batch}", "greedy" if beam == 1 else f"beam{beam}", f"l{length}"}


def _matches(spec: str, cell: tuple) -> bool:
    """Whether a --skip style list ('b64:l128,beam4') names the cell: every part of one
    of its items is one of the cell's tags."""
    tags = _tags(*cell)
    return any(set(s.split(":")) <= tags for s in spec.split(",") if s)


def _precisions(a) -> list[str]:
    return [p for p in a.precisions.split(",") if p]


def cells(a) -> list[tuple[str, int, int, int]]:
    """(precision, batch, beam, length) in the order they run, the skipped left out."""
    out = []
    for prec in _precisions(a):
        if prec not in PRECISIONS:
            raise SpecError(f"unknown precision {prec!r}; allowed: {', '.join(PRECISIONS)}")
        for batch in _ints(a.batches):
            for beam in _ints(a.beams):
                for length in _ints(a.lengths):
                    if not _matches(a.skip, (prec, batch, beam, length)):
                        out.append((prec, batch, beam, length))
    return out


def uncached(a, cell: tuple) -> bool:
    """Whether ours also runs without its cache in this cell."""
    return not _matches(getattr(a, "skip_uncached", ""), cell)


def sources(batch: int, vocab: int, eos: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    src = rng.integers(2, vocab - 1, size=(batch, SOURCE_TOKENS))
    src[:, -1] = eos
    return src


def _time(fns: dict, repeats: int, warmup: bool = True) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (a, b, a, b, ...) so
    that a change in the machine's load hits them alike."""
    for fn in fns.values() if warmup else ():
        fn()  # untimed: traces, the cache's first shapes, the allocator's first blocks
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _ours(a, framework: str, checkpoint: Path):
    """cell -> {"<framework>/cache": call, "<framework>/nocache": call}; a call returns
    its token rows (the nocache call is left out where `uncached` says so)."""
    from ..backend_api import load_backend
    from ..translation import marian
    from ..translation.generate import Rules, beam_search, greedy

    backend = load_backend(framework)
    backend.setup(a.threads, "cpu", 0)
    arch, _ = marian.read_config(checkpoint)
    weights = marian.read_weights(checkpoint, arch)
    decoders = {}

    def calls(prec, batch, beam, length):
        if prec not in decoders:
            decoders[prec] = backend.Decoder(backend.seq2seq_model(arch, weights, prec))
        dec, src = decoders[prec], sources(batch, arch.vocab, arch.eos)
        rules = Rules(min_len=length)

        def run(cache):
            if beam == 1:
                rows = greedy(dec, src, length, batch=len(src), compact=False, cache=cache,
                              rules=rules)
            else:
                rows = beam_search(dec, src, beam, 1.0, length, batch=len(src), cache=cache,
                                   rules=rules)
            assert all(len(r) == length for r in rows)
            return rows

        out = {f"{framework}/cache": lambda: run(True)}
        if uncached(a, (prec, batch, beam, length)):
            out[f"{framework}/nocache"] = lambda: run(False)
        return out

    return calls


def _hf(a, checkpoint: Path):
    """cell -> {"hf/cache": call}: MarianMTModel.generate on the same checkpoint; a call
    returns its token rows (the decoder's start token left out)."""
    import torch
    from transformers import MarianMTModel

    torch.set_num_threads(a.threads)
    with contextlib.suppress(RuntimeError):  # already 1 where our torch backend set it up
        torch.set_num_interop_threads(1)
    models = {}

    def calls(prec, batch, beam, length):
        if prec not in models:  # a Hugging Face user's bf16: weights in bf16
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16,
                     "fp16": torch.float16}[prec]
            models[prec] = MarianMTModel.from_pretrained(checkpoint, dtype=dtype).eval()
        model = models[prec]
        src = torch.as_tensor(sources(batch, model.config.vocab_size,
                                      model.config.eos_token_id))

        def run():
            with torch.no_grad():
                got = model.generate(input_ids=src, attention_mask=torch.ones_like(src),
                                     num_beams=beam, do_sample=False, length_penalty=1.0,
                                     min_new_tokens=length, max_new_tokens=length)
            assert got.shape[1] == length + 1
            return got[:, 1:].tolist()

        return {"hf/cache": run}

    return calls


def decode_calls(a, peers: list[str], checkpoint: Path):
    """cell -> {"<peer>/<cache|nocache>": call} for peers of one framework."""
    makers = [_hf(a, checkpoint) if p == "hf" else _ours(a, p, checkpoint) for p in peers]
    return lambda *cell: {k: f for make in makers for k, f in make(*cell).items()}


def gemm_gflops(threads: int, precisions=("fp32",)) -> dict[str, float]:
    """The machine's matrix-product rate in PyTorch at `threads`: a 2048^3 product in fp32
    (SGEMM) and in each other precision measured, GFLOP/s (best of 3 after one untimed).
    Only the precisions asked for: on a CPU without bf16 instructions a bf16 product of
    this size runs at under 1 GFLOP/s (measured: 0.27 on an AVX2 EPYC), four calls minutes."""
    import torch

    n, out = 2048, {}
    torch.set_num_threads(threads)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    for name in dict.fromkeys(("fp32", *precisions)):
        x = torch.randn(n, n).to(dtypes[name])
        out[name] = _rate(lambda x=x: x @ x, n)
    return out


def gemm_text(gemm: dict[str, float]) -> str:
    """'fp32 85, bf16 201' (GFLOP/s per precision measured)."""
    order = sorted(gemm, key=lambda k: (k != "fp32", k))  # a JSON file may sort its keys
    return ", ".join(f"{k} {gemm[k]:.0f}" if gemm[k] >= 10 else f"{k} {gemm[k]:.2g}"
                     for k in order)


def _rate(fn, n: int) -> float:
    fn()
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _worker(a) -> int:
    """One process's peers (ours in PyTorch and Hugging Face's share one: both PyTorch),
    every cell's calls timed interleaved."""
    peers = a.worker.split(",")
    calls = decode_calls(a, peers, Path(a.checkpoint))
    out: dict[str, dict[str, float]] = {}
    warmed: set[str] = set()
    for prec, batch, beam, length in cells(a):
        fns = calls(prec, batch, beam, length)
        first = prec not in warmed
        warmed.add(prec)
        for name, secs in _time(fns, a.repeats, a.warmup == "each" or first).items():
            peer, cache = name.split("/")
            key = f"{prec}/{batch}/{beam}/{length}/{cache}"
            out.setdefault(peer, {})[key] = batch * length / secs
            print(f"{peer} {key}: {out[peer][key]:,.0f} tokens/s", file=sys.stderr,
                  flush=True)
    if "tf" in peers:
        out["_versions"] = {"tensorflow": _version("tensorflow")}
    else:
        out["_gemm"] = gemm_gflops(a.threads, _precisions(a))
        out["_versions"] = {"torch": _version("torch")}
        if "hf" in peers:
            out["_versions"]["transformers"] = _version("transformers")
    print(json.dumps(out))
    return 0


def _version(name: str) -> str:
    return getattr(sys.modules.get(name) or __import__(name), "__version__", "?")


def write_random_checkpoint(directory: Path) -> Path:
    """opus-mt-en-fr's shape with random weights (normal, std 0.02, Marian's initial
    scale; LayerNorms at 1 and 0), in Hugging Face's layout, so that all three read the
    same numbers."""
    from ..models.seq2seq.spec import seq2seq_shapes
    from ..translation import marian

    arch = marian.opus_mt_en_fr()
    rng = np.random.default_rng(0)
    weights = []
    for name, shape in seq2seq_shapes(arch):
        if name.endswith(".gamma"):
            weights.append(np.ones(shape, np.float32))
        elif name.endswith((".beta", ".bias")):
            weights.append(np.zeros(shape, np.float32))
        else:
            weights.append(rng.normal(0.0, 0.02, shape).astype(np.float32))
    return marian.write_checkpoint(directory, arch, weights)


def build_doc(a, results: dict[str, dict], extra: dict) -> dict:
    """What `--out` holds: the setting and one row per cell, tokens/s per peer and cache
    (None where not measured)."""
    from ..models.seq2seq.spec import seq2seq_shapes
    from ..sizes import param_count_of
    from ..translation import marian

    peers = list(results)
    rows = []
    for cell in cells(a):
        key = "/".join(map(str, cell))
        row = dict(zip(("precision", "batch", "beam", "length"), cell, strict=True))
        for p in peers:
            for c in ("cache",) if p == "hf" else ("cache", "nocache"):
                row[f"{p}_{c}"] = results[p].get(f"{key}/{c}")
        row["uncached_left_out"] = (None if uncached(a, cell)
                                    else f"--skip-uncached {a.skip_uncached}")
        rows.append(row)
    return {
        "what": "decode-speed", "format": 1,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "cpu_model": cpu_name(), "cpu_count": os.cpu_count(),
        "threads": a.threads, "repeats": a.repeats, "rounds": a.rounds,
        "warmup": getattr(a, "warmup", "each"),
        "model": "opus-mt-en-fr shape, random weights",
        "params": param_count_of(seq2seq_shapes(marian.opus_mt_en_fr())),
        "source_tokens": SOURCE_TOKENS, "peers": peers,
        "precision_notes": {p: PRECISION_NOTES[p] for p in peers},
        "skip": a.skip, "skip_uncached": a.skip_uncached,
        **extra, "cells": rows,
    }


def _fmt(v, spec: str, width: int) -> str:
    return f"{v:{width}{spec}}" if v else f"{'-':>{width}s}"


def print_table(doc: dict) -> None:
    peers, rows = doc["peers"], doc["cells"]
    ours = [p for p in peers if p != "hf"]
    gemm = doc.get("gemm_gflops") or {}
    print(f"{doc['date']}, {doc['cpu_model']} ({doc['cpu_count']} cores), "
          f"threads={doc['threads']} repeats={doc['repeats']} warmup={doc.get('warmup', 'each')} "
          f"rounds={doc['rounds']}, load "
          f"average {doc['load_avg_1m_start']:.2f} at start, {doc['load_avg_1m_end']:.2f} "
          "at end"
          + (f"; GEMM 2048^3 {gemm_text(gemm)} GFLOP/s" if gemm else ""))
    print(f"generated tokens/s (median), {doc['model']}; cache / none = ours with and "
          "without the key/value cache, x = cache / none")
    head = f"{'precision':9s} {'batch':>5s} {'search':>7s} {'length':>6s}"
    for p in ours:
        head += f" {p + ' cache':>12s} {p + ' none':>11s} {'x':>6s}"
    if "hf" in peers:
        head += f" {'hf':>10s}" + "".join(f" {p + '/hf':>8s}" for p in ours)
    print(head)
    for r in rows:
        line = (f"{r['precision']:9s} {r['batch']:5d} "
                f"{'greedy' if r['beam'] == 1 else 'beam ' + str(r['beam']):>7s} "
                f"{r['length']:6d}")
        for p in ours:
            c, n = r[f"{p}_cache"], r[f"{p}_nocache"]
            line += (_fmt(c, ",.0f", 13) + _fmt(n, ",.0f", 12)
                     + _fmt(c / n if c and n else None, ".2f", 7))
        if "hf" in peers:
            h = r["hf_cache"]
            line += _fmt(h, ",.0f", 11)
            for p in ours:
                c = r[f"{p}_cache"]
                line += _fmt(c / h if c and h else None, ".2f", 9)
        print(line)
    left = [r for r in rows if r["uncached_left_out"]]
    if left:
        print(f"(none '-': ours without the cache not measured in {len(left)} cells, "
              f"{left[0]['uncached_left_out']})")
    for p in peers:
        if any(r["precision"] == "bf16" for r in rows):
            print(f"{p} {doc['precision_notes'][p]}")


def main(a) -> int:
    if a.worker:
        return _worker(a)
    peers = [p for p in a.peers.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise SpecError(f"unknown peer {unknown[0]!r}; allowed: {', '.join(PEERS)}")
    if not cells(a):
        raise SpecError("--skip leaves no cell to measure")
    # PyTorch peers share a process, so their calls interleave; TensorFlow has its own
    groups = [",".join(g) for g in ([p for p in peers if p != "tf"],
                                    [p for p in peers if p == "tf"]) if g]
    runs: dict[str, dict[str, list[float]]] = {p: {} for p in peers}
    extra: dict = {"load_avg_1m_start": os.getloadavg()[0], "gemm_gflops": None,
                   "versions": {}}
    with tempfile.TemporaryDirectory(prefix="decode-speed-") as tmp:
        checkpoint = write_random_checkpoint(Path(tmp))
        for r in range(a.rounds):
            for group in groups if r % 2 == 0 else groups[::-1]:
                cmd = [sys.executable, "-m", "bench", "decode-speed", "--worker", group,
                       "--checkpoint", str(checkpoint)]
                for opt in ("threads", "batches", "lengths", "beams", "precisions",
                            "repeats", "warmup", "skip", "skip_uncached"):
                    cmd += [f"--{opt.replace('_', '-')}", str(getattr(a, opt))]
                p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
                if p.returncode:
                    print(f"python -m bench decode-speed: error: the {group} worker failed "
                          f"(exit {p.returncode}; its messages are above)", file=sys.stderr)
                    return p.returncode
                got = json.loads(p.stdout.strip().splitlines()[-1])
                extra["versions"].update(got.pop("_versions", {}))
                if "_gemm" in got:
                    extra["gemm_gflops"] = got.pop("_gemm")
                for peer, vals in got.items():
                    for k, v in vals.items():
                        runs[peer].setdefault(k, []).append(v)
    extra["load_avg_1m_end"] = os.getloadavg()[0]
    doc = build_doc(a, {p: {k: statistics.median(v) for k, v in got.items()}
                        for p, got in runs.items()}, extra)
    print_table(doc)
    if a.out:
        write_json_atomic(a.out, doc)
        print(f"decode-speed: table -> {a.out}", file=sys.stderr)
    return 0
