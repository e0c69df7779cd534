"""`generate()`: greedy and beam-search decoding, written once for both frameworks.

A backend's seq2seq trainer supplies three calls (bench.backend_api):
``encode(src) -> state`` (device tensors), ``tile(state, rows) -> state`` and
``next_logprobs(state, prefix) -> (M, vocab) numpy``. Everything else, the search, its
stopping rules and the bookkeeping, happens here in numpy, so the two frameworks decode by
the same algorithm and equal logits give equal tokens.

Each new token runs the decoder over the whole prefix (no key/value cache), in both
frameworks alike: on sentences of at most 20 tokens that is the simple and the fair choice,
and decode speed is reported as what it is.
"""

from __future__ import annotations

import numpy as np

from .text_pairs import BOS, EOS, PAD


def _rows(tokens: np.ndarray) -> list[list[int]]:
    """Generated ids per row, up to and including the first EOS."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return out


def greedy(decoder, src, max_len: int, batch: int = 64,
           compact: bool = True) -> list[list[int]]:
    """The most probable next token at every step, for every source row, `batch` rows a
    time. A row stops at EOS (included) or after `max_len` tokens. With `compact`, finished
    rows leave the batch, so the decoder only runs on rows still generating; without, the
    whole batch runs until its last row ends, as Hugging Face's `generate` runs one (the
    same tokens; the batch keeps one shape, which TensorFlow's kernels are built for)."""
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        state = decoder.encode(src[start : start + batch])
        m = min(batch, len(src) - start)
        rows: list[list[int] | None] = [None] * m
        where = np.arange(m)  # which of the m rows each live row is
        prefix = np.full((m, 1), BOS, dtype=np.int64)
        finished = np.zeros(m, dtype=bool)
        for _ in range(max_len):
            tok = decoder.next_logprobs(state, prefix).argmax(1)
            if not compact:
                tok[finished] = PAD
            prefix = np.concatenate([prefix, tok[:, None]], 1)
            ended = tok == EOS
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
            out += _rows(prefix[:, 1:])
            continue
        for j, r in enumerate(where):
            if rows[r] is None:  # out of steps
                rows[r] = prefix[j, 1:].tolist()
        out += rows
    return out


def beam_search(decoder, src, width: int = 4, length_penalty: float = 1.0,
                max_len: int = 20, batch: int = 64) -> list[list[int]]:
    """Beam search as Hugging Face's `generate(num_beams=width)` does it.

    A hypothesis that ends in EOS among the best `width` candidates is kept as finished,
    scored by its summed log-probability / length**length_penalty (length counts EOS);
    the beam continues with the best `width` unfinished ones. A source is done when it
    has `width` finished hypotheses and its best unfinished one, normalised at the current
    length, cannot beat the worst of them; done sources leave the batch. After `max_len`
    steps the live beams count as finished. Returns the best hypothesis per source row.
    """
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        n = min(batch, len(src) - start)
        # a source's `width` rows share its encoder output: no reordering ever needed
        state = decoder.tile(decoder.encode(src[start : start + batch]),
                             np.repeat(np.arange(n), width))
        prefix = np.full((n * width, 1), BOS, dtype=np.int64)
        scores = np.full((n, width), -np.inf)
        scores[:, 0] = 0.0  # one live beam at the start: the others would repeat it
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        alive = np.arange(n)  # the sources still searching, in the order of their rows
        for t in range(1, max_len + 1):
            a = len(alive)
            logp = decoder.next_logprobs(state, prefix)
            vocab = logp.shape[1]
            cand = (scores[:, :, None] + logp.reshape(a, width, vocab)).reshape(a, -1)
            top = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * width]
            rows = np.repeat(np.arange(a) * width, width).reshape(a, width)
            toks = np.full((a, width), PAD, dtype=np.int64)
            new = np.full((a, width), -np.inf)
            done = np.zeros(a, dtype=bool)
            for i, source in enumerate(alive):
                hyps, k = finished[source], 0
                for rank, j in enumerate(top[i]):
                    beam, tok = divmod(int(j), vocab)
                    score = cand[i, j]
                    if not np.isfinite(score):
                        break
                    if tok == EOS:
                        if rank < width:
                            hyp = prefix[i * width + beam, 1:].tolist() + [EOS]
                            hyps.append((score / t**length_penalty, hyp))
                        continue
                    rows[i, k], toks[i, k], new[i, k] = i * width + beam, tok, score
                    k += 1
                    if k == width:
                        break
                hyps.sort(key=lambda h: -h[0])
                del hyps[width:]
                done[i] = len(hyps) == width and new[i, 0] / t**length_penalty <= hyps[-1][0]
            prefix = np.concatenate([prefix[rows.ravel()], toks.reshape(-1, 1)], 1)
            scores = new
            if done.any():
                keep = np.flatnonzero(~done)
                alive = alive[keep]
                if not len(keep):
                    break
                kept_rows = (keep[:, None] * width + np.arange(width)).ravel()
                state, prefix = decoder.tile(state, kept_rows), prefix[kept_rows]
                scores = scores[keep]
        length = prefix.shape[1] - 1
        for i, source in enumerate(alive):  # out of steps: the live beams compete as they are
            finished[source] += [(scores[i, b] / length**length_penalty,
                                  prefix[i * width + b, 1:].tolist())
                                 for b in range(width) if np.isfinite(scores[i, b])]
        out += [max(h, key=lambda x: x[0])[1] if h else [] for h in finished]
    return out
