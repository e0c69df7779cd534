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
    for row in tokens:
        row = row.tolist()
        out.append(row[: row.index(EOS) + 1] if EOS in row else row)
    return out


def greedy(decoder, src, max_len: int, batch: int = 64) -> list[list[int]]:
    """The most probable next token at every step, for every source row, `batch` rows a
    time; a row stops at EOS, a batch when every row has stopped or after `max_len`."""
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        state = decoder.encode(src[start : start + batch])
        m = min(batch, len(src) - start)
        prefix = np.full((m, 1), BOS, dtype=np.int64)
        done = np.zeros(m, dtype=bool)
        for _ in range(max_len):
            tok = decoder.next_logprobs(state, prefix).argmax(1)
            tok[done] = PAD
            prefix = np.concatenate([prefix, tok[:, None]], 1)
            done |= tok == EOS
            if done.all():
                break
        out += _rows(prefix[:, 1:])
    return out


def beam_search(decoder, src, width: int = 4, length_penalty: float = 1.0,
                max_len: int = 20, batch: int = 64) -> list[list[int]]:
    """Beam search as Hugging Face's `generate(num_beams=width)` does it.

    A hypothesis that ends in EOS among the best `width` candidates is kept as finished,
    scored by its summed log-probability / length**length_penalty (length counts EOS);
    the beam continues with the best `width` unfinished ones. A source is done when it
    has `width` finished hypotheses and its best unfinished one, normalised at the current
    length, cannot beat the worst of them; after `max_len` unfinished beams count as
    finished. Returns the best-scoring hypothesis per source row.
    """
    if width < 1:
        raise ValueError(f"beam width must be at least 1, got {width}")
    out: list[list[int]] = []
    for start in range(0, len(src), batch):
        n = min(batch, len(src) - start)
        state = decoder.tile(decoder.encode(src[start : start + batch]),
                             np.repeat(np.arange(n), width))
        prefix = np.full((n * width, 1), BOS, dtype=np.int64)
        scores = np.full((n, width), -np.inf)
        scores[:, 0] = 0.0  # one live beam at the start: the others would repeat it
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        done = np.zeros(n, dtype=bool)
        for t in range(1, max_len + 1):
            logp = decoder.next_logprobs(state, prefix)
            vocab = logp.shape[1]
            cand = (scores[:, :, None] + logp.reshape(n, width, vocab)).reshape(n, -1)
            top = np.argsort(-cand, axis=1, kind="stable")[:, : 2 * width]
            rows = np.repeat(np.arange(n) * width, width).reshape(n, width)  # keep by default
            toks = np.full((n, width), PAD, dtype=np.int64)
            new = np.full((n, width), -np.inf)
            for i in range(n):
                if done[i]:
                    continue
                k = 0
                for rank, j in enumerate(top[i]):
                    beam, tok = divmod(int(j), vocab)
                    score = cand[i, j]
                    if not np.isfinite(score):
                        break
                    if tok == EOS:
                        if rank < width:
                            hyp = prefix[i * width + beam, 1:].tolist() + [EOS]
                            finished[i].append((score / t**length_penalty, hyp))
                        continue
                    rows[i, k], toks[i, k], new[i, k] = i * width + beam, tok, score
                    k += 1
                    if k == width:
                        break
                finished[i] = sorted(finished[i], key=lambda h: -h[0])[:width]
                if len(finished[i]) == width and (
                        new[i, 0] / t**length_penalty <= finished[i][-1][0]):
                    done[i] = True
            prefix = np.concatenate([prefix[rows.ravel()], toks.reshape(-1, 1)], 1)
            scores = new
            if done.all():
                break
        length = prefix.shape[1] - 1
        for i in range(n):
            if not done[i]:  # out of steps: the live beams compete as they stand
                finished[i] += [(scores[i, b] / length**length_penalty,
                                 prefix[i * width + b, 1:].tolist())
                                for b in range(width) if np.isfinite(scores[i, b])]
            out.append(max(finished[i], key=lambda h: h[0])[1])
    return out
