"""bench.translation.generate: greedy and beam search against a scripted decoder with known
answers."""

import numpy as np
import pytest

from bench.translation.generate import beam_search, greedy
from bench.translation.text_pairs import BOS, EOS, PAD

A, B, C = 3, 4, 5
V = 6


def dist(**p):
    out = np.full(V, 1e-9)
    for tok, prob in p.items():
        out[{"A": A, "B": B, "C": C, "EOS": EOS}[tok]] = prob
    return out / out.sum()


class Scripted:
    """P(next | last token, source row's first id): a table, no network. Source id 0 reads
    the table as written; source id 1 swaps A and B everywhere, so mixing up rows between
    sources shows."""

    def __init__(self, table):
        self.table = table
        self.calls = 0

    def encode(self, src, cache=True):
        return np.asarray(src)[:, 0].copy()

    def tile(self, state, idx):
        return state[idx]

    def next_logprobs(self, state, prefix):
        self.calls += 1
        mirror = {A: B, B: A}
        swap = state == 1
        out = np.stack([self.table[mirror.get(int(last), int(last)) if sw else int(last)]
                        for last, sw in zip(prefix[:, -1], swap, strict=True)])
        out[swap, A], out[swap, B] = out[swap, B].copy(), out[swap, A].copy()
        return np.log(out)


# Greedy takes A (0.6), then nothing good follows (best 0.3 for EOS): 0.18 in all. B (0.4)
# is followed by EOS with certainty: 0.4. Beam search finds B EOS; greedy cannot.
TRAP = {BOS: dist(A=0.6, B=0.4), A: dist(EOS=0.3, C=0.25, A=0.25, B=0.2), B: dist(EOS=1.0),
        C: dist(EOS=1.0), EOS: dist(EOS=1.0), PAD: dist(EOS=1.0)}


def test_greedy_takes_the_locally_best_token_and_beam_the_best_sequence():
    src = np.array([[0], [1]])
    # row 1 reads the table with A and B swapped: its answers are the mirror image
    assert greedy(Scripted(TRAP), src, max_len=5) == [[A, EOS], [B, EOS]]
    assert beam_search(Scripted(TRAP), src, width=2, max_len=5) == [[B, EOS], [A, EOS]]


def test_rows_do_not_mix_between_sources():
    src = np.array([[0], [1], [0], [1]])
    b = beam_search(Scripted(TRAP), src, width=3, max_len=5)
    assert b[0] == b[2] and b[1] == b[3]
    assert b[0] == [B, EOS]  # source 0: B then EOS (0.4)
    assert b[1] == [A, EOS]  # source 1: the swapped table's A is the old B


def test_width_one_is_greedy_and_batching_changes_nothing():
    rng = np.random.default_rng(0)
    table = {t: rng.dirichlet(np.ones(V)) for t in range(V)}
    src = rng.integers(0, 2, size=(10, 1))
    g = greedy(Scripted(table), src, max_len=6, batch=10)
    assert greedy(Scripted(table), src, max_len=6, batch=3) == g
    assert greedy(Scripted(table), src, max_len=6, batch=4, compact=False) == g
    assert beam_search(Scripted(table), src, width=1, max_len=6) == g
    assert beam_search(Scripted(table), src, width=3, max_len=6, batch=4) == beam_search(
        Scripted(table), src, width=3, max_len=6, batch=10)


def test_greedy_stops_at_eos_and_at_max_len():
    loop = {t: dist(C=0.9, EOS=0.1) for t in range(V)}
    dec = Scripted(loop)
    out = greedy(dec, np.array([[0]]), max_len=4)
    assert out == [[C, C, C, C]] and dec.calls == 4  # never ends: cut at max_len
    dec = Scripted(TRAP)
    greedy(dec, np.array([[0], [0]]), max_len=10)
    assert dec.calls == 2  # every row ended: the batch stops
    dec = Scripted(TRAP)
    assert greedy(dec, np.array([[0], [1]]), max_len=10, compact=False) == [[A, EOS], [B, EOS]]
    assert dec.calls == 2


def test_beam_scores_sequences_by_length_normalised_log_probability():
    # EOS now (0.5) or two more tokens at 0.8 each before EOS: summed log-probability
    # prefers the short one (0.5 > 0.8*0.8*... ), a length penalty of 2 the long one.
    table = {BOS: dist(EOS=0.5, C=0.5), C: dist(A=0.8, EOS=0.2), A: dist(EOS=0.99, B=0.01),
             B: dist(EOS=1.0), EOS: dist(EOS=1.0), PAD: dist(EOS=1.0)}
    src = np.array([[0]])
    assert beam_search(Scripted(table), src, width=3, length_penalty=0.0, max_len=5) == [[EOS]]
    assert beam_search(Scripted(table), src, width=3, length_penalty=2.0,
                       max_len=5) == [[C, A, EOS]]


def test_beam_without_an_ending_returns_the_best_live_beam():
    loop = {t: dist(C=0.7, A=0.3) for t in range(V)}
    assert beam_search(Scripted(loop), np.array([[0]]), width=2, max_len=3) == [[C, C, C]]
    with pytest.raises(ValueError, match="at least 1"):
        beam_search(Scripted(loop), np.array([[0]]), width=0)


def test_beam_candidates_from_each_beams_best_tokens_equal_ranking_them_all():
    """The k best continuations taken from each beam's k most likely tokens are the k best
    of every beam x token, in the same order (ties to the lower index), -inf beams too."""
    from bench.translation.generate import _best_continuations, _top

    rng = np.random.default_rng(3)
    sources, width, vocab, k = 5, 3, 50, 6
    logp = np.round(rng.normal(size=(sources * width, vocab)), 1).astype(np.float32)  # ties
    scores = np.round(rng.normal(size=(sources, width)), 1)
    scores[0, 1:] = -np.inf  # the first step: one live beam
    ids = _top(logp, k)
    beams, toks, vals = _best_continuations(scores, np.take_along_axis(logp, ids, 1), ids, k)
    every = (scores[:, :, None] + logp.reshape(sources, width, vocab)).reshape(sources, -1)
    for i in range(sources):
        want = sorted(range(width * vocab), key=lambda j: (-every[i, j], j))[:k]
        assert (beams[i] * vocab + toks[i]).tolist() == want
        assert vals[i].tolist() == every[i, want].tolist()
