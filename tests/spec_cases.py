"""Cases shared by the registry, sizes and spec tests."""

import pytest

import bench.registry
import bench.sizes

# The scale ladder, smallest first; `article` is the article's model, not a rung.
LADDER = [s for s in bench.sizes.SIZE_NAMES if s != "article"]
# Every (family, dataset) a family can read: classifiers the images, series and tokens,
# seq2seq the translation pairs.
PAIRS = [(f, d) for f in bench.registry.FAMILIES for d in bench.registry.DATASETS
         if bench.registry.reads(f, d)]
NON_TOKEN = [(f, d) for f, d in PAIRS if bench.registry.DATASETS[d].kind != "tokens"]


def ladder(family):
    return [s for s in LADDER if s in bench.sizes.SIZES[family]]


def one_line(exc: pytest.ExceptionInfo) -> str:
    """The message of a raised error, checked to be one line."""
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg
