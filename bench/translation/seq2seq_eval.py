"""What a trained translation model is measured by, for the run record.

Quality: BLEU and chrF from `sacrebleu` (the field's reference implementation, default
13a tokenisation) and exact match, on the test set and on `test_long`, decoded greedily
and by beam search. Speed: greedy decode throughput in generated tokens/s at batch 64
(every row runs until the batch's last one ends, as Hugging Face's `generate` does), and
per-sentence latency at batch 1 (the article's single `generate` call).
"""

from __future__ import annotations

import time

import numpy as np

from ..measure import BlockTimer
from . import text_pairs
from .generate import beam_search, greedy

BEAM_WIDTH = 4  # Marian's (opus-mt) num_beams
LENGTH_PENALTY = 1.0  # Hugging Face's default: log-probability per token
DECODE_BATCH = 64
QUALITY_BATCH = 500
LATENCY_SENTENCES = 20


def max_len(info) -> int:
    """Generated tokens allowed: the longest target of the dataset, EOS included."""
    return info.target_len - 1


def quality(hyp_ids: list[list[int]], ref_ids, vocab: list[str]) -> dict:
    import sacrebleu

    hyps = [text_pairs.decode(h, vocab) for h in hyp_ids]
    refs = [text_pairs.decode(r, vocab) for r in ref_ids]
    return {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "exact_match": float(np.mean([h == r for h, r in zip(hyps, refs, strict=True)]))}


def _tokens(rows: list[list[int]]) -> int:
    return sum(len(r) for r in rows)


def _decode_speed(trainer, x_dev, n: int, spec) -> dict:
    """Greedy decoding of test batches of DECODE_BATCH in timed blocks (a tenth of the
    training blocks' minimum length, as for classifier inference), then LATENCY_SENTENCES
    single sentences one by one."""
    length = max_len(spec.info)
    batch = min(DECODE_BATCH, n)
    starts = list(range(0, n - batch + 1, batch))[:8] or [0]
    # Timed as Hugging Face's generate runs a batch, every row until the last one ends: one
    # shape a batch. Letting finished rows leave (the quality pass does) changes the shape
    # at each step, and TensorFlow's CPU kernels, specialised per shape, fell from 21,000
    # to 13,000 tokens/s at size xs while PyTorch rose from 50,000 to 75,000.
    greedy(trainer, x_dev[:batch], length, batch, compact=False)  # first traces
    timer = BlockTimer(0, 2, spec.block_seconds / 10)
    i = 0
    while len(timer.blocks) < 3 and i < 10_000:
        s = starts[i % len(starts)]
        t = time.perf_counter()
        rows = greedy(trainer, x_dev[s : s + batch], length, batch, compact=False)
        timer.add(time.perf_counter() - t, _tokens(rows))
        i += 1
    speed = timer.rates("decode_tokens")
    lat, tokens = [], 0
    for k in range(min(LATENCY_SENTENCES, n)):
        t = time.perf_counter()
        rows = greedy(trainer, x_dev[k : k + 1], length, 1)
        lat.append(time.perf_counter() - t)
        tokens += _tokens(rows)
    return {"decode_tokens_per_s": speed["decode_tokens_per_s"],
            "decode_tokens_per_s_min": speed["decode_tokens_per_s_min"],
            "decode_tokens_per_s_max": speed["decode_tokens_per_s_max"],
            "decode_batch": batch,
            "decode_tokens_per_s_b1": tokens / sum(lat),
            "decode_latency_ms": 1000 * float(np.median(lat)),
            "decode_latency_ms_p90": 1000 * float(np.percentile(lat, 90))}


def evaluate(trainer, tests: dict, spec, vocab: list[str]) -> dict:
    """Record fields for test sets {suffix: (x on the device, x, y)}: "" for the test set,
    "_long" for test_long; a few decoded examples of each for the report."""
    length = max_len(spec.info)
    out: dict = {"beam_width": BEAM_WIDTH, "length_penalty": LENGTH_PENALTY,
                 "decode_max_len": length, "decoding": "key/value cache", "examples": []}
    for suffix, (x_dev, x, y) in tests.items():
        y = np.asarray(y)[:, 1:]  # without BOS
        rows = greedy(trainer, x_dev, length, QUALITY_BATCH)
        for k, v in quality(rows, y, vocab).items():
            out[f"{k}{suffix}"] = v
        beams = beam_search(trainer, x_dev, BEAM_WIDTH, LENGTH_PENALTY, length, QUALITY_BATCH)
        for k, v in quality(beams, y, vocab).items():
            out[f"beam_{k}{suffix}"] = v
        out["examples"] += [
            {"test": f"test{suffix}", "source": text_pairs.decode(x[i], vocab),
             "reference": text_pairs.decode(y[i], vocab),
             "greedy": text_pairs.decode(rows[i], vocab),
             "beam": text_pairs.decode(beams[i], vocab)} for i in range(min(3, len(y)))]
    x_dev, _, y = tests[""]
    out.update(_decode_speed(trainer, x_dev, len(y), spec))
    return out
