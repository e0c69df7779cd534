"""`python -m bench decode-speed`: generated tokens/s of the article's translation model,
ours in PyTorch and TensorFlow against Hugging Face's `generate` (PyTorch), on the same
random weights of opus-mt-en-fr's shape (bench.marian.opus_mt_en_fr; no download).

Every cell decodes exactly `length` tokens per sentence (EOS is banned before, as
`min_new_tokens` does, and the limit ends them), so all three do the same work: greedy
or beam search at batch 1 (the article's single call: latency per sentence) and at a
larger batch. Ours runs with and without its key/value cache; Hugging Face's caches.
Ours in PyTorch and Hugging Face's share one process, TensorFlow has its own (one
framework per process); the processes alternate over `--rounds`. Within a process each
cell's calls are timed interleaved (ours cached, ours uncached, Hugging Face's, again),
`--repeats` times after one untimed call each (traces, caches, allocator); a cell's figure
is the median over rounds of the median of its calls. Compare ratios from one invocation:
this measures a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .registry import PRECISIONS, SpecError

PEERS = ("torch", "tf", "hf")
SOURCE_TOKENS = 20  # an English sentence of about 15 words, EOS included


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
    p.add_argument("--rounds", type=int, default=1,
                   help="runs of every peer, in alternating order (median over rounds)")
    p.add_argument("--skip", default="",
                   help="cells to leave out, e.g. 'b64:l128,b64:beam4' (all parts must match)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one library's process
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    p.set_defaults(func=main)


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise SpecError(f"not a comma-separated list of integers: {text!r}") from None


def cells(a) -> list[tuple[str, int, int, int]]:
    """(precision, batch, beam, length) in the order they run, the skipped left out."""
    skips = [set(s.split(":")) for s in a.skip.split(",") if s]
    out = []
    for prec in [p for p in a.precisions.split(",") if p]:
        if prec not in PRECISIONS:
            raise SpecError(f"unknown precision {prec!r}; allowed: {', '.join(PRECISIONS)}")
        for batch in _ints(a.batches):
            for beam in _ints(a.beams):
                for length in _ints(a.lengths):
                    tags = {prec, f"b{batch}", "greedy" if beam == 1 else f"beam{beam}",
                            f"l{length}"}
                    if not any(s <= tags for s in skips):
                        out.append((prec, batch, beam, length))
    return out


def sources(batch: int, vocab: int, eos: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    src = rng.integers(2, vocab - 1, size=(batch, SOURCE_TOKENS))
    src[:, -1] = eos
    return src


def _time(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (a, b, a, b, ...) so
    that a change in the machine's load hits them alike."""
    for fn in fns.values():
        fn()  # untimed: traces, the cache's first shapes, the allocator's first blocks
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _ours(a, framework: str, checkpoint: Path):
    """cell -> {"<framework>/cache": call, "<framework>/nocache": call}."""
    from . import marian
    from .backend_api import load_backend
    from .generate import Rules, beam_search, greedy

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

        return {f"{framework}/cache": lambda: run(True),
                f"{framework}/nocache": lambda: run(False)}

    return calls


def _hf(a, checkpoint: Path):
    """cell -> {"hf/cache": call}: MarianMTModel.generate on the same checkpoint."""
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

        return {"hf/cache": run}

    return calls


def _worker(a) -> int:
    """One process's peers (ours in PyTorch and Hugging Face's share one: both PyTorch),
    every cell's calls timed interleaved."""
    makers = [_hf(a, Path(a.checkpoint)) if p == "hf" else _ours(a, p, Path(a.checkpoint))
              for p in a.worker.split(",")]
    out: dict[str, dict[str, float]] = {}
    for prec, batch, beam, length in cells(a):
        fns = {k: f for make in makers for k, f in make(prec, batch, beam, length).items()}
        for name, secs in _time(fns, a.repeats).items():
            peer, cache = name.split("/")
            key = f"{prec}/{batch}/{beam}/{length}/{cache}"
            out.setdefault(peer, {})[key] = batch * length / secs
            print(f"{peer} {key}: {out[peer][key]:,.0f} tokens/s", file=sys.stderr,
                  flush=True)
    print(json.dumps(out))
    return 0


def write_random_checkpoint(directory: Path) -> Path:
    """opus-mt-en-fr's shape with random weights (normal, std 0.02, Marian's initial
    scale; LayerNorms at 1 and 0), in Hugging Face's layout, so that all three read the
    same numbers."""
    from . import marian
    from .sizes import seq2seq_shapes

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


def _table(a, results: dict[str, dict]) -> None:
    peers = list(results)
    print(f"threads={a.threads} repeats={a.repeats} rounds={a.rounds}: generated tokens/s "
          "(median), "
          "opus-mt-en-fr shape, random weights; cache / no cache = ours with and without "
          "the key/value cache")
    head = f"{'precision':9s} {'batch':>5s} {'search':>7s} {'length':>6s}"
    ours = [p for p in peers if p != "hf"]
    for p in ours:
        head += f" {p + ' cache':>12s} {p + ' none':>11s} {'x':>6s}"
    if "hf" in results:
        head += f" {'hf':>10s}" + "".join(f" {p + '/hf':>8s}" for p in ours)
    print(head)
    for prec, batch, beam, length in cells(a):
        key = f"{prec}/{batch}/{beam}/{length}"
        line = (f"{prec:9s} {batch:5d} {'greedy' if beam == 1 else f'beam {beam}':>7s} "
                f"{length:6d}")
        for p in ours:
            c, n = results[p].get(key + "/cache"), results[p].get(key + "/nocache")
            line += f" {c:12,.0f} {n:11,.0f} {c / n:6.2f}" if c and n else f" {'-':>31s}"
        if "hf" in results:
            h = results["hf"].get(key + "/cache")
            line += f" {h:10,.0f}" if h else f" {'-':>10s}"
            for p in ours:
                c = results[p].get(key + "/cache")
                line += f" {c / h:8.2f}" if c and h else f" {'-':>8s}"
        print(line)


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
    with tempfile.TemporaryDirectory(prefix="decode-speed-") as tmp:
        checkpoint = write_random_checkpoint(Path(tmp))
        for r in range(a.rounds):
            for group in groups if r % 2 == 0 else groups[::-1]:
                cmd = [sys.executable, "-m", "bench", "decode-speed", "--worker", group,
                       "--checkpoint", str(checkpoint)]
                for opt in ("threads", "batches", "lengths", "beams", "precisions",
                            "repeats", "skip"):
                    cmd += [f"--{opt}", str(getattr(a, opt))]
                p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
                if p.returncode:
                    print(f"python -m bench decode-speed: error: the {group} worker failed "
                          f"(exit {p.returncode}; its messages are above)", file=sys.stderr)
                    return p.returncode
                for peer, got in json.loads(p.stdout.strip().splitlines()[-1]).items():
                    for k, v in got.items():
                        runs[peer].setdefault(k, []).append(v)
    _table(a, {p: {k: statistics.median(v) for k, v in got.items()}
               for p, got in runs.items()})
    return 0
