"""Translation pairs built offline: number phrases in one language -> the same number in
another, spelled by the `num2words` package ("one hundred and eighty-one" -> "cent
quatre-vingt-un").

Why this task: it has the rules a translation model must learn (French counts in twenties
from 60 to 99, "quatre-vingts" takes an s only when nothing follows, "et" joins 21, 31 .. 71
but not 81; English puts "and" after the hundreds, French puts "mille" after its
multiplier and drops "un" before it), its answers are exact, and it needs no download.

Tokens are words, with hyphens and commas split off as tokens of their own: compounds
("quatre-vingt-dix-neuf") then decompose into the parts the rules act on, the joint
vocabulary of both languages is 59 words and a phrase is at most 19 of them. Characters
would make a French target up to 73 steps long (4x the decoding steps, 15x the attention);
a learned subword model reduces, on a 59-word language, to these words.

Splits are by number, so no test number (and no test phrase) is seen in training:
train, validation and test draw disjoint numbers below 100,000; `test_long` holds numbers
from 100,000 to 999,999: six digits, a form no training sentence has ("cent mille",
"neuf cent quatre-vingt-dix-neuf mille ..."), and sources of 12 words at the median
against 9 (up to 14 against 11) in training. That tests length generalisation, where
Transformers are known to fail and the position encoding matters.

The training set is small on purpose (600 sentences): with tens of thousands of numbers
every size learns the task perfectly and size says nothing. Measured here at 600, two
seeds per size (torch, adam 3e-3, batch 32, to a plateau): exact match 0.89-0.91 at xs,
0.93-0.97 at s, 0.98 at m; 0 on test_long at every size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PAD, BOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")


@dataclass(frozen=True)
class PairSet:
    source: str  # num2words language codes
    target: str
    n_train: int
    n_val: int
    n_test: int
    n_test_long: int
    below: int = 100_000  # train/val/test numbers are drawn below this ...
    long_below: int = 1_000_000  # ... and test_long between `below` and this


PAIRS = {
    "en_fr_numbers": PairSet("en", "fr", n_train=600, n_val=300, n_test=1000,
                             n_test_long=500),
}


def phrase(n: int, lang: str) -> str:
    from num2words import num2words

    return num2words(n, lang=lang)


def words(text: str) -> list[str]:
    """'quatre-vingt-un mille, cent' -> ['quatre', '-', 'vingt', '-', 'un', 'mille', ',',
    'cent']."""
    return text.replace("-", " - ").replace(",", " , ").split()


def detokenize(tokens: list[str]) -> str:
    """The inverse of `words` on num2words output (hyphens and commas attach to the left
    word; a hyphen also to the right one)."""
    return " ".join(tokens).replace(" - ", "-").replace(" ,", ",")


@functools.cache
def vocabulary(pair: PairSet) -> list[str]:
    """Every word the two languages use for numbers below `long_below`, sorted, after the
    special tokens. Above 1000 only "thousand"/"mille" and the comma are new words, so
    0..1000 and 1110 cover them all (a test checks that on a dense sample of all numbers)."""
    seen: set[str] = set()
    for n in [*range(1001), 1110]:
        for lang in (pair.source, pair.target):
            seen.update(words(phrase(n, lang)))
    return list(SPECIALS) + sorted(seen)


def _numbers(pair: PairSet) -> dict[str, np.ndarray]:
    """Disjoint numbers per split, fixed by data seed 0.

    Below `below`, every number of digits is equally likely (log-uniform): drawn uniformly,
    nine in ten would have five digits and the model would never learn "soixante et onze"
    or "cent quatre-vingt-un" on their own. That draws every one- and two-digit number
    (there are only 100), spread over the splits like the rest.
    """
    rng = np.random.default_rng([0, 13])
    short = pair.n_train + pair.n_val + pair.n_test
    n = np.arange(pair.below)
    digits = np.char.str_len(n.astype(str))
    weight = 1.0 / np.bincount(digits)[digits]
    drawn = rng.choice(pair.below, size=short, replace=False, p=weight / weight.sum())
    rng.shuffle(drawn)  # weighted draws come in likelihood order: mix them over the splits
    long = rng.choice(pair.long_below - pair.below, size=pair.n_test_long, replace=False)
    a, b = pair.n_train, pair.n_train + pair.n_val
    return {"train": drawn[:a], "val": drawn[a:b], "test": drawn[b:],
            "test_long": long + pair.below}


def encode(texts: list[str], vocab: list[str], length: int, bos: bool) -> np.ndarray:
    """Token ids, EOS-terminated ([BOS] first if asked), padded with PAD to `length`."""
    index = {w: i for i, w in enumerate(vocab)}
    out = np.full((len(texts), length), PAD, dtype=np.int64)
    for r, text in enumerate(texts):
        ids = ([BOS] if bos else []) + [index[w] for w in words(text)] + [EOS]
        if len(ids) > length:
            raise ValueError(f"{text!r} needs {len(ids)} tokens, more than {length}")
        out[r, : len(ids)] = ids
    return out


def decode(ids, vocab: list[str]) -> str:
    """Token ids -> text, stopping at EOS and skipping BOS/PAD."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i not in (PAD, BOS):
            out.append(vocab[i])
    return detokenize(out)


def build(name: str, src_len: int, tgt_len: int) -> dict[str, tuple]:
    """{split: (source ids (N, src_len), target ids (N, tgt_len), numbers)}, targets as
    [BOS] words [EOS] [PAD...]."""
    pair = PAIRS[name]
    vocab = vocabulary(pair)
    out = {}
    for split, nums in _numbers(pair).items():
        src = [phrase(int(n), pair.source) for n in nums]
        tgt = [phrase(int(n), pair.target) for n in nums]
        out[split] = (encode(src, vocab, src_len, bos=False),
                      encode(tgt, vocab, tgt_len, bos=True), nums)
    return out
