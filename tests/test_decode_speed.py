"""bench.decode_speed's grid, and the checkpoint it writes (read back by bench.marian here;
by transformers in tests/test_marian.py)."""

import argparse

import numpy as np
import pytest

from bench import marian
from bench.decode_speed import cells
from bench.registry import SpecError
from bench.sizes import Seq2SeqArch, seq2seq_shapes

SMALL = Seq2SeqArch(50, 16, 2, 1, 2, 32, post_ln=True, activation="silu",
                    positions="halves", start=49, eos=0, pad=49, max_positions=32)


def _args(**kw):
    base = dict(batches="1,64", lengths="20,64", beams="1,4", precisions="fp32", skip="")
    return argparse.Namespace(**{**base, **kw})


def test_grid_and_skips():
    assert len(cells(_args())) == 8
    # a skip names cells by every part it gives
    left = cells(_args(skip="b64:beam4,b1:l64"))
    assert ("fp32", 64, 4, 20) not in left and ("fp32", 1, 1, 64) not in left
    assert ("fp32", 64, 1, 64) in left and ("fp32", 1, 4, 20) in left
    assert len(left) == 4
    with pytest.raises(SpecError, match="unknown precision"):
        cells(_args(precisions="fp8"))


def test_written_checkpoint_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(s).astype(np.float32) for _, s in seq2seq_shapes(SMALL)]
    gen = marian.Generation(num_beams=4, max_length=64, banned=(49,), forced_eos=True)
    marian.write_checkpoint(tmp_path, SMALL, weights, gen)
    assert marian.read_config(tmp_path) == (SMALL, gen)
    for a, b in zip(marian.read_weights(tmp_path, SMALL), weights, strict=True):
        np.testing.assert_array_equal(a, b)
