"""A Hugging Face Marian checkpoint in the TensorFlow backend, against transformers itself.

The references come from a PyTorch process (tests/marian_reference.py; this process never
imports torch): see tests/test_marian.py for what is built and which conventions of
`generate` are matched. Here: TensorFlow's logits within 1e-4 of Hugging Face's, and its
greedy and beam tokens, with and without the key/value cache, equal to `generate`'s.
"""

import importlib.util
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")
if importlib.util.find_spec("transformers") is None:  # never imported here: torch's
    pytest.skip("transformers is not installed", allow_module_level=True)

import marian_checks  # noqa: E402

from bench import tf_backend as backend  # noqa: E402
from bench.models.seq2seq.spec import seq2seq_shapes  # noqa: E402
from bench.sizes import param_count_of  # noqa: E402
from bench.translation import marian  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _setup():
    backend.setup(1, "cpu", 0)


def _equal_to_hugging_face(ckpt, ref):
    arch, _ = marian.read_config(ckpt)
    model = backend.seq2seq_model(arch, marian.read_weights(ckpt, arch))
    assert backend.n_params(model) == param_count_of(seq2seq_shapes(arch))
    assert marian_checks.logit_difference(backend, ckpt, ref) < marian_checks.LOGIT_TOL
    d = marian_checks.decodings(backend, ckpt, ref)
    assert d["greedy_True"] == d["greedy_False"] == d["hf_greedy"]
    assert d["beam_True"] == d["beam_False"] == d["hf_beam"]


def test_small_logits_and_tokens_equal_hugging_faces(tmp_path):
    ckpt, ref = marian_checks.make_reference("small", tmp_path)
    _equal_to_hugging_face(ckpt, ref)
    p = subprocess.run([sys.executable, "-m", "bench", "translate", "--pretrained",
                        str(ckpt), "--framework", "tf", "--beam", "1", "--max-len", "12",
                        "Hello"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ref["decoded"][-1:]
    assert "decoded in tf: greedy" in p.stderr


@pytest.mark.slow
def test_opus_mt_en_fr_shape_equals_hugging_face(tmp_path):
    _equal_to_hugging_face(*marian_checks.make_reference("full", tmp_path))


def test_bf16_decodes_under_the_mixed_policy(tmp_path):
    """bench decode-speed's bf16 in TensorFlow: Keras's mixed_bfloat16 policy, the output
    layer's E^T laid out in bf16 once per model; log-probabilities close to fp32's, not
    equal, and the cached and uncached calls each give every row its tokens."""
    import argparse

    import numpy as np
    from test_decode_speed import SMALL, _small_checkpoint

    from bench.measure.decode_speed import decode_calls, sources

    ckpt = _small_checkpoint(tmp_path)
    weights = marian.read_weights(ckpt, SMALL)
    src, prefix = sources(2, SMALL.vocab, SMALL.eos), np.full((2, 1), SMALL.start)
    logp = {}
    for prec in ("fp32", "bf16"):
        dec = backend.Decoder(backend.seq2seq_model(SMALL, weights, prec))
        logp[prec] = dec.next_logprobs(dec.encode(src), prefix)
        assert dec._table_t.dtype.name == ("bfloat16" if prec == "bf16" else "float32")
    assert not np.array_equal(logp["fp32"], logp["bf16"])
    np.testing.assert_allclose(logp["bf16"], logp["fp32"], atol=0.5)
    calls = decode_calls(argparse.Namespace(threads=1, skip_uncached=""), ["tf"], ckpt)
    for beam in (1, 4):
        want = {k: f() for k, f in calls("fp32", 3, beam, 12).items()}
        assert want["tf/cache"] == want["tf/nocache"]
        for rows in (f() for f in calls("bf16", 3, beam, 12).values()):
            assert len(rows) == 3 and all(len(r) == 12 for r in rows)
            assert np.mean(np.array(rows) == np.array(want["tf/cache"])) >= 0.75
