"""bench.translation.text_pairs: the offline translation task built from num2words."""

import numpy as np
import pytest

from bench.registry import DATASETS
from bench.translation import text_pairs

PAIR = text_pairs.PAIRS["en_fr_numbers"]


@pytest.fixture(scope="module")
def splits():
    info = DATASETS["en_fr_numbers"]
    return text_pairs.build("en_fr_numbers", info.shape[0], info.target_len)


def test_the_articles_example_and_the_french_rules():
    assert text_pairs.phrase(181, "en") == "one hundred and eighty-one"
    assert text_pairs.phrase(181, "fr") == "cent quatre-vingt-un"
    # quatre-vingts takes its s only when nothing follows; et joins 21 and 71 but not 81
    assert text_pairs.phrase(80, "fr") == "quatre-vingts"
    assert text_pairs.phrase(21, "fr") == "vingt et un"
    assert text_pairs.phrase(71, "fr") == "soixante et onze"
    assert text_pairs.phrase(81, "fr") == "quatre-vingt-un"


def test_vocabulary_covers_every_number_below_a_million_and_tokens_round_trip():
    vocab = set(text_pairs.vocabulary(PAIR))
    info = DATASETS["en_fr_numbers"]
    assert len(vocab) == info.vocab
    longest = {"en": 0, "fr": 0}
    for n in [*range(0, 1_000_000, 97), *range(1200), 999_999, 777_777, 797_797]:
        for lang in ("en", "fr"):
            text = text_pairs.phrase(n, lang)
            words = text_pairs.words(text)
            assert set(words) <= vocab, (n, lang)
            assert text_pairs.detokenize(words) == text
            longest[lang] = max(longest[lang], len(words))
    assert longest["en"] + 1 <= info.shape[0]  # EOS
    assert longest["fr"] + 2 <= info.target_len  # BOS, EOS


def test_splits_are_disjoint_numbers_and_test_long_is_longer(splits):
    nums = {k: set(v[2].tolist()) for k, v in splits.items()}
    assert [len(nums[k]) for k in ("train", "val", "test", "test_long")] == [
        PAIR.n_train, PAIR.n_val, PAIR.n_test, PAIR.n_test_long]
    assert not nums["train"] & nums["val"] and not nums["train"] & nums["test"]
    assert not nums["val"] & nums["test"]
    assert max(nums["train"] | nums["val"] | nums["test"]) < PAIR.below
    assert min(nums["test_long"]) >= PAIR.below and max(nums["test_long"]) < PAIR.long_below
    # a phrase is as unique as its number: no test sentence is a training sentence
    train_src = {tuple(r) for r in splits["train"][0]}
    assert not any(tuple(r) in train_src for r in splits["test"][0])
    src_len = {k: (v[0] != text_pairs.PAD).sum(1) for k, v in splits.items()}
    assert src_len["test_long"].max() > src_len["train"].max()
    assert np.median(src_len["test_long"]) >= np.median(src_len["train"]) + 3


def test_every_number_of_digits_is_about_equally_likely(splits):
    digits = np.char.str_len(splits["train"][2].astype(str))
    counts = np.bincount(digits, minlength=6)[1:]
    # one- and two-digit numbers are too few to fill their share: all of them are drawn
    assert counts[2:].min() > 0.15 * PAIR.n_train
    assert counts[0] > 0 and counts[1] > 10


def test_splits_are_deterministic(splits):
    info = DATASETS["en_fr_numbers"]
    again = text_pairs.build("en_fr_numbers", info.shape[0], info.target_len)
    for k in splits:
        for a, b in zip(splits[k], again[k], strict=True):
            np.testing.assert_array_equal(a, b)


def test_encode_and_decode_are_inverse():
    vocab = text_pairs.vocabulary(PAIR)
    text = "quatre-vingt-dix-neuf mille, cent"
    ids = text_pairs.encode([text], vocab, 14, bos=True)[0]
    assert ids[0] == text_pairs.BOS and text_pairs.EOS in ids and ids[-1] == text_pairs.PAD
    assert text_pairs.decode(ids, vocab) == text
    # decoding stops at the first EOS, whatever follows
    assert text_pairs.decode([*ids[:4], text_pairs.EOS, 9, 9], vocab) == "quatre-vingt"
    with pytest.raises(ValueError, match="more than 4"):
        text_pairs.encode([text], vocab, 4, bos=False)
