"""bench.measure.decode_speed's grid, and the checkpoint it writes (read back by
bench.translation.marian here; by transformers in tests/test_marian.py)."""

import argparse

import numpy as np
import pytest

from bench.measure.decode_speed import (
    build_doc,
    cells,
    decode_calls,
    print_table,
    sources,
    uncached,
)
from bench.models.seq2seq.spec import Seq2SeqArch, seq2seq_shapes
from bench.registry import SpecError
from bench.translation import marian

SMALL = Seq2SeqArch(50, 16, 2, 1, 2, 32, post_ln=True, activation="silu",
                    positions="halves", start=49, eos=0, pad=49, max_positions=32)


def _args(**kw):
    base = dict(batches="1,64", lengths="20,64", beams="1,4", precisions="fp32", skip="",
                skip_uncached="")
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


def test_uncached_is_left_out_only_where_named():
    a = _args(skip_uncached="b64:beam4:l64")
    assert not uncached(a, ("fp32", 64, 4, 64)) and not uncached(a, ("bf16", 64, 4, 64))
    assert uncached(a, ("fp32", 64, 4, 20)) and uncached(a, ("fp32", 1, 4, 64))
    assert uncached(_args(), ("fp32", 64, 4, 64))  # none named


def _small_checkpoint(path):
    """SMALL with random weights in Hugging Face's layout (embeddings small beside the
    rest, so that the decoder does not merely repeat its start token)."""
    rng = np.random.default_rng(1)
    weights = [rng.normal(0, 0.05 if name == "embed" else 1.0, s).astype(np.float32)
               for name, s in seq2seq_shapes(SMALL)]
    return marian.write_checkpoint(path, SMALL, weights)


def test_bf16_decodes_in_ours_and_hugging_faces(tmp_path):
    """fp32: ours (cached and uncached) gives Hugging Face's tokens. bf16 runs in both (ours
    under autocast, Hugging Face's with bf16 weights); rounding may change a token, so
    bf16 only has to give every row its `length` tokens, mostly fp32's."""
    from bench import torch_backend

    torch_backend.setup(1, "cpu", 0)
    a = argparse.Namespace(threads=1, skip_uncached="bf16:b3:beam4")
    calls = decode_calls(a, ["torch", "hf"], _small_checkpoint(tmp_path))
    for batch, beam, length in ((1, 1, 8), (3, 1, 12), (3, 4, 12)):
        want = {k: f() for k, f in calls("fp32", batch, beam, length).items()}
        assert want["torch/cache"] == want["torch/nocache"] == want["hf/cache"]
        got = {k: f() for k, f in calls("bf16", batch, beam, length).items()}
        assert ("torch/nocache" in got) == (beam == 1)  # --skip-uncached
        for rows in got.values():
            assert len(rows) == batch and all(len(r) == length for r in rows)
            same = np.mean(np.array(rows) == np.array(want["hf/cache"]))
            assert same >= 0.75, rows
    # ours in bf16 computes in bf16: close to fp32's log-probabilities, not equal to them
    arch, _ = marian.read_config(tmp_path)
    weights = marian.read_weights(tmp_path, arch)
    src, prefix = sources(2, arch.vocab, arch.eos), np.full((2, 1), arch.start)
    logp = {}
    for prec in ("fp32", "bf16"):
        dec = torch_backend.Decoder(torch_backend.seq2seq_model(arch, weights, prec))
        with dec.held():
            logp[prec] = dec.next_logprobs(dec.encode(src), prefix)
    assert not np.array_equal(logp["fp32"], logp["bf16"])
    np.testing.assert_allclose(logp["bf16"], logp["fp32"], atol=0.5)


def test_table_json_and_printout(capsys, tmp_path):
    a = _args(batches="1", lengths="20,64", beams="1", precisions="fp32,bf16",
              skip_uncached="bf16:l64", threads=1, repeats=1, rounds=1,
              warmup="first")
    res = {"torch": {}, "tf": {}, "hf": {}}
    for prec, b, beam, n in cells(a):
        key = f"{prec}/{b}/{beam}/{n}"
        res["hf"][key + "/cache"] = 100.0
        res["torch"][key + "/cache"], res["tf"][key + "/cache"] = 90.0, 150.0
        if uncached(a, (prec, b, beam, n)):
            res["torch"][key + "/nocache"], res["tf"][key + "/nocache"] = 30.0, 50.0
    doc = build_doc(a, res, {"load_avg_1m_start": 1.0, "load_avg_1m_end": 1.5,
                             "gemm_gflops": {"fp32": 80.0, "bf16": 200.0}, "versions": {}})
    assert doc["params"] == 74_669_178 and len(doc["cells"]) == 4
    last = doc["cells"][-1]
    assert last["torch_nocache"] is None and last["uncached_left_out"] == (
        "--skip-uncached bf16:l64")
    assert doc["cells"][0]["tf_nocache"] == 50.0 and doc["cells"][0]["uncached_left_out"] is None
    print_table(doc)
    out = capsys.readouterr().out
    assert "GEMM 2048^3 fp32 80, bf16 200 GFLOP/s" in out
    assert "0.90" in out and "3.00" in out and "1.50" in out
    assert "not measured in 1 cells" in out and "autocast" in out


def test_the_gemm_rate_is_measured_in_the_precisions_asked_for_only():
    """A bf16 product runs at under 1 GFLOP/s on a CPU without bf16 instructions, so
    an fp32 table must not pay for measuring one; the text names what was measured."""
    from bench.measure.decode_speed import gemm_gflops, gemm_text

    assert list(gemm_gflops(1)) == ["fp32"]
    assert gemm_text({"fp32": 61.4, "bf16": 0.27}) == "fp32 61, bf16 0.27"
