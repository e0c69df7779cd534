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

from bench import marian  # noqa: E402
from bench import tf_backend as backend  # noqa: E402
from bench.sizes import param_count_of, seq2seq_shapes  # noqa: E402


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
