"""`generate()`: greedy and beam-search decoding, written once for both frameworks.

A backend's decoder (its seq2seq Trainer, or a `Decoder` over a pretrained model) supplies
three calls (bench.backend_api): ``encode(src, cache) -> state`` (device tensors),
``tile(state, rows) -> state`` and ``next_logprobs(state, prefix) -> (M, vocab) numpy``,
and names its special tokens (`start`, `eos`, `pad`; the benchmark's own by default).
Both backends also rank on their device: ``next_top(state, prefix, k, banned)`` gives each
row's k most likely tokens and their log-probabilities, so that a step hands over (M, k)
instead of an (M, vocab) array (at opus-mt's 59,514 tokens and 256 rows: 61 MB a step).
Everything else, the search, its stopping rules and the bookkeeping, happens here in numpy,
so the two frameworks decode by the same algorithm and equal logits give equal tokens
(up to exact ties at the k-th place, which each framework's top-k breaks its own way).

With `cache` (the default) the state keeps every decoder layer's keys and values, so each
step runs the decoder on the new token only, as Hugging Face's `generate` does; without,
each step reruns the decoder over the whole prefix. Both give the same tokens. Beam search
reorders the state by the beams' parents at every step, as Hugging Face reorders its cache.

Hugging Face's generation rules a checkpoint may set are honoured the same way:
`banned` tokens (its single-token `bad_words_ids`; Marian bans its pad, which starts
decoding), `min_len` (`min_new_tokens`: no EOS before it) and `forced_eos`
(`forced_eos_token_id`: the last allowed step can only give EOS). They act on the
log-probabilities after the softmax, as Hugging Face's logits processors do in beam search.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from .text_pairs import BOS, EOS, PAD


@dataclass(frozen=True)
class Rules:
    """Hugging Face's generation-config rules (see the module docstring)."""

    min_len: int = 0
    banned: tuple[int, ...] = ()
    forced_eos: bool = False


NO_RULES = Rules()


class DecodesThrough:
    """A seq2seq Trainer's three generation calls, handed to its backend's `Decoder`
    (`self.decoder`), which pretrained models use directly."""

    def encode(self, src, cache: bool = True):
        return self.decoder.encode(src, cache)

    def tile(self, state, idx: np.ndarray):
        return self.decoder.tile(state, idx)

    def next_logprobs(self, state, prefix: np.ndarray) -> np.ndarray:
        """Log-probabilities (M, vocab) of the token after each prefix row."""
        return self.decoder.next_logprobs(state, prefix)

    def next_top(self, state, prefix: np.ndarray, k: int, banned=(), normalised=True):
        """Each row's k most likely next tokens (see the backend's Decoder.next_top)."""
        return self.decoder.next_top(state, prefix, k, banned, normalised)

    def held(self):
        return _held(self.decoder)


def _held(decoder):
    """The decoder's region for one whole generate call, where it has one (torch: one
    autocast region, so that weights are cast to bf16 once per call, not every step)."""
    held = getattr(decoder, "held", None)
    return held() if held is not None else contextlib.nullcontext()


def _in_held(fn):
    @functools.wraps(fn)
    def run(decoder, *args, **kw):
        with _held(decoder):
            return fn(decoder, *args, **kw)

    return run


def _specials(decoder) -> tuple[int, int, int]:
    return (getattr(decoder, "start", BOS), getattr(decoder, "eos", EOS),
            getattr(decoder, "pad", PAD))


def _top_logprobs(decoder, state, prefix, t: int, max_len: int, eos: int, rules: Rules,
                  k: int, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k most likely tokens for step t (1-based), best first, with the rules
    applied: (log-probabilities (M, k), ids (M, k)); not `normalised`, logits in their
    place (their order is the same). A decoder with `next_top` ranks on its own device;
    for any other the full next_logprobs rows are ranked here."""
    banned = list(rules.banned) + ([eos] if t <= rules.min_len else [])
    rank_there = getattr(decoder, "next_top", None)
    if rank_there is not None:
        logp, ids = rank_there(state, prefix, k, banned, normalised)
    else:
        full = np.array(decoder.next_logprobs(state, prefix))  # its array may be read-only
        full[:, banned] = -np.inf
        ids = _top(full, k)
        logp = np.take_along_axis(full, ids, 1)
    if rules.forced_eos and t == max_len:  # EOS at log-probability 0, nothing else
        logp, ids = np.full(logp.shape, -np.inf), np.array(ids)
        logp[:, 0], ids[:, 0] = 0.0, eos
    return logp, ids


def _rows(tokens: np.ndarray, eos: int) -> list[list[int]]:
    """Generated ids per row, up to and including the first EOS."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


@_in_held
def greedy(decoder, src, max_len: int, batch: int = 64, compact: bool = True,
           cache: bool = True, rules: Rules = NO_RULES) -> list[list[int]]:
    """The most probable next token at every step, for every source row, `batch` rows a
    time. A row stops at EOS (included) or after `max_len` tokens. With `compact`, finished
    rows leave the batch, so the decoder only runs on rows still generating; without, the
    whole batch runs until its last row ends, as Hugging Face's `generate` runs one (the
    same tokens; the batch keeps one shape, which TensorFlow's kernels are built for)."""
    start_tok, eos, pad = _specials(decoder)
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        state = decoder.encode(src[start : start + batch], cache)
        m = min(batch, len(src) - start)
        rows: list[list[int] | None] = [None] * m
        where = np.arange(m)  # which of the m rows each live row is
        prefix = np.full((m, 1), start_tok, dtype=np.int64)
        finished = np.zeros(m, dtype=bool)
        for t in range(1, max_len + 1):
            tok = _top_logprobs(decoder, state, prefix, t, max_len, eos, rules, 1,
                                normalised=False)[1][:, 0]
            if not compact:
                tok[finished] = pad
            prefix = np.concatenate([prefix, tok[:, None]], 1)
            ended = tok == eos
            if not compact:
                finished |= ended
                if finished.all():
                    break
                continue
            if ended.any():
                for j in np.flatnonzero(ended):
                    rows[where[j]] = prefix[j, 1:].tolist()
                keep = np.flatnonzero(~ended)
                if not len(keep):
                    break
                where, prefix, state = where[keep], prefix[keep], decoder.tile(state, keep)
        if not compact:
            out += _rows(prefix[:, 1:], eos)
            continue
        for j, r in enumerate(where):
            if rows[r] is None:  # out of steps
                rows[r] = prefix[j, 1:].tolist()
        out += rows
    return out


def _top(cand: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k largest values, best first, ties to the lower index
    (as a stable sort would give), without sorting the whole row (width x vocab)."""
    k = min(k, cand.shape[1])
    part = np.argpartition(-cand, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(cand, part, 1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, 1)


def _best_continuations(scores: np.ndarray, logp: np.ndarray, ids: np.ndarray, k: int):
    """(beams, tokens, scores), each (sources, k): per source, the k best continuations of
    its beams, best first, ties to the lower beam, then the lower token. `scores`
    (sources, width) are the beams' scores, `logp` and `ids` (sources x width, >= k) each
    beam's most likely next tokens (`_top_logprobs`).

    A beam's score is the same for all its tokens, so each of the k best of a source is
    among its beam's k most likely tokens: ranking those ranks width x k candidates instead
    of width x vocab (tests/test_generate.py checks it against ranking them all)."""
    sources, width = scores.shape
    vals = (scores[:, :, None] + logp.reshape(sources, width, -1)).reshape(sources, -1)
    toks = ids.reshape(sources, -1)
    beams = np.repeat(np.arange(width), ids.shape[1])[None, :].repeat(sources, 0)
    order = np.lexsort((toks, beams, -vals), axis=1)[:, :k]
    return tuple(np.take_along_axis(a, order, 1) for a in (beams, toks, vals))


@_in_held
def beam_search(decoder, src, width: int = 4, length_penalty: float = 1.0,
                max_len: int = 20, batch: int = 64, cache: bool = True,
                rules: Rules = NO_RULES) -> list[list[int]]:
    """Beam search as Hugging Face's `generate(num_beams=width)` does it with its default
    `early_stopping=False` (transformers 4.x and 5.x alike).

    Each step takes the best 2 x `width` continuations of the live beams. Those among the
    best `width` that end in EOS are kept as finished, scored by summed log-probability /
    length**length_penalty (length counts EOS, not the start token); the beam continues
    with the best `width` that do not. A source is done when it has `width` finished
    hypotheses and its best live beam, normalised at the current length, cannot beat the
    worst of them; done sources leave the batch. At step `max_len` the best `width`
    continuations all count as finished, ended or not. Returns the best hypothesis per
    source row.
    """
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    start_tok, eos, pad = _specials(decoder)
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        n = min(batch, len(src) - start)
        state = decoder.tile(decoder.encode(src[start : start + batch], cache),
                             np.repeat(np.arange(n), width))
        prefix = np.full((n * width, 1), start_tok, dtype=np.int64)
        scores = np.full((n, width), -np.inf)
        scores[:, 0] = 0.0  # one live beam at the start: the others would repeat it
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        alive = np.arange(n)  # the sources still searching, in the order of their rows
        for t in range(1, max_len + 1):
            a = len(alive)
            logp, ids = _top_logprobs(decoder, state, prefix, t, max_len, eos, rules,
                                      2 * width)
            top_beam, top_tok, cand = _best_continuations(scores, logp, ids, 2 * width)
            rows = np.repeat(np.arange(a) * width, width).reshape(a, width)
            toks = np.full((a, width), pad, dtype=np.int64)
            new = np.full((a, width), -np.inf)
            done = np.zeros(a, dtype=bool)
            norm = t**length_penalty
            for i, source in enumerate(alive):
                hyps, k = finished[source], 0
                for rank in range(top_beam.shape[1]):
                    beam, tok = int(top_beam[i, rank]), int(top_tok[i, rank])
                    score = cand[i, rank]
                    if not np.isfinite(score):
                        break
                    if tok == eos or t == max_len:
                        if rank < width:
                            hyp = prefix[i * width + beam, 1:].tolist() + [tok]
                            hyps.append((score / norm, hyp))
                        continue
                    rows[i, k], toks[i, k], new[i, k] = i * width + beam, tok, score
                    k += 1
                    if k == width:
                        break
                hyps.sort(key=lambda h: -h[0])
                del hyps[width:]
                done[i] = len(hyps) == width and new[i, 0] / norm <= hyps[-1][0]
            if t == max_len:
                break
            prefix = np.concatenate([prefix[rows.ravel()], toks.reshape(-1, 1)], 1)
            state = decoder.tile(state, rows.ravel())  # each beam's parent's cache
            scores = new
            if done.any():
                keep = np.flatnonzero(~done)
                alive = alive[keep]
                if not len(keep):
                    break
                kept_rows = (keep[:, None] * width + np.arange(width)).ravel()
                state, prefix = decoder.tile(state, kept_rows), prefix[kept_rows]
                scores = scores[keep]
        out += [max(h, key=lambda x: x[0])[1] if h else [] for h in finished]
    return out
