"""A Hugging Face Marian checkpoint in the PyTorch backend, against transformers itself.

tests/marian_reference.py builds random-weight `MarianMTModel`s with `save_pretrained`, in
a process of their own: a small one and one of opus-mt-en-fr's shape (vocabulary 59,514),
each with sentencepiece models trained offline. Nothing is downloaded.

Decoding is compared with `generate(do_sample=False)` at num_beams 1 and 4,
length_penalty 1.0, max_new_tokens the same as ours, and the checkpoint's own rules
(bad_words_ids [[pad]], forced_eos_token_id 0, as opus-mt's config sets). The beam
convention matched is Hugging Face's default early_stopping=False: a finished hypothesis
scores sum log p / generated_length**length_penalty (its EOS counted, the start token
not), a sentence is done when its `num_beams` finished hypotheses cannot be beaten by its
best live beam at the current length, and at the length limit the best `num_beams`
continuations all count as finished (bench.translation.generate.beam_search).
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import marian_checks  # noqa: E402

from bench import torch_backend as backend  # noqa: E402
from bench.models.seq2seq.spec import seq2seq_shapes  # noqa: E402
from bench.sizes import param_count_of  # noqa: E402
from bench.translation import marian  # noqa: E402

SENTENCES_CLI = ["The cat sat on the mat.", "Where is the train station?"]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return marian_checks.make_reference("small", tmp_path_factory.mktemp("marian_small"))


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return marian_checks.make_reference("full", tmp_path_factory.mktemp("marian_full"))


@pytest.fixture(autouse=True)
def _setup():
    backend.setup(1, "cpu", 0)


def test_tokenizer_gives_marian_tokenizers_ids(small):
    ckpt, ref = small
    from marian_reference import SENTENCES

    tok = marian.Tokenizer(ckpt)
    ids = tok.encode(SENTENCES, 512)
    assert (ids == tok.unk).any()  # the sentence of unknown pieces has some
    np.testing.assert_array_equal(ids, ref["ids"])
    assert [tok.decode(r) for r in marian_checks.generated(ref["greedy"], 0)] == \
        ref["decoded"]


def _check_counts(ckpt, ref):
    """Ours: the canonical weights, final_logits_bias included (Hugging Face keeps it as a
    buffer), the position tables not (fixed sinusoids, computed; Hugging Face stores them
    as frozen parameters and num_parameters() counts them)."""
    arch, _ = marian.read_config(ckpt)
    ours = param_count_of(seq2seq_shapes(arch))
    assert ours == int(ref["trainable"]) + arch.vocab
    assert ours == int(ref["num_parameters"]) - 2 * arch.max_positions * arch.d_model \
        + arch.vocab
    model = backend.seq2seq_model(arch, marian.read_weights(ckpt, arch))
    assert backend.n_params(model) == ours
    return ours


def test_small_logits_tokens_and_counts_equal_hugging_faces(small):
    ckpt, ref = small
    _check_counts(ckpt, ref)
    assert marian_checks.logit_difference(backend, ckpt, ref) < marian_checks.LOGIT_TOL
    d = marian_checks.decodings(backend, ckpt, ref)
    for cache in (True, False):
        assert d[f"greedy_{cache}"] == d["hf_greedy"]
        assert d[f"beam_{cache}"] == d["hf_beam"]
    assert d["hf_beam"] != d["hf_greedy"]  # the two searches differ here: both are tested


@pytest.mark.slow
def test_opus_mt_en_fr_shape_equals_hugging_face(full):
    ckpt, ref = full
    arch, gen = marian.read_config(ckpt)
    assert arch == marian.opus_mt_en_fr()
    assert (gen.num_beams, gen.max_length, gen.banned, gen.forced_eos) == (
        4, 512, (59513,), True)
    assert _check_counts(ckpt, ref) == 74_669_178
    assert marian_checks.logit_difference(backend, ckpt, ref) < marian_checks.LOGIT_TOL
    d = marian_checks.decodings(backend, ckpt, ref)
    assert d["greedy_True"] == d["greedy_False"] == d["hf_greedy"]
    assert d["beam_True"] == d["beam_False"] == d["hf_beam"]


def test_hugging_face_reads_the_checkpoints_decode_speed_writes(tmp_path):
    """bench decode-speed compares both libraries on weights it writes itself: the same
    function in both."""
    from test_decode_speed import SMALL
    from transformers import MarianMTModel

    rng = np.random.default_rng(1)
    weights = [rng.normal(0, 0.2, s).astype(np.float32) for _, s in seq2seq_shapes(SMALL)]
    marian.write_checkpoint(tmp_path, SMALL, weights)
    hf = MarianMTModel.from_pretrained(tmp_path).eval()
    ours = backend.seq2seq_model(SMALL, weights)
    src = np.array([[5, 7, 9, 0], [3, 0, 49, 49]])
    tgt = np.array([[49, 4, 8], [49, 6, 6]])
    with torch.no_grad():
        want = hf(input_ids=torch.as_tensor(src), attention_mask=torch.as_tensor(src != 49),
                  decoder_input_ids=torch.as_tensor(tgt)).logits.numpy()
        got = ours(backend.to_device(src), backend.to_device(tgt)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_pytorch_model_bin_reads_like_safetensors(small, tmp_path):
    """A checkpoint with pytorch_model.bin only (older snapshots) gives the same weights,
    read without torch and without running the pickle's code."""
    ckpt, _ = small
    arch, _ = marian.read_config(ckpt)
    want = marian.read_weights(ckpt, arch)
    other = shutil.copytree(ckpt, tmp_path / "bin")
    from safetensors.torch import load_file

    torch.save(load_file(str(other / "model.safetensors")), other / "pytorch_model.bin")
    (other / "model.safetensors").unlink()
    for a, b in zip(marian.read_weights(other, arch), want, strict=True):
        np.testing.assert_array_equal(a, b)


def _translate(*args):
    return subprocess.run([sys.executable, "-m", "bench", "translate", *args],
                          capture_output=True, text=True, timeout=300)


def test_translate_pretrained_prints_hugging_faces_translation(small, tmp_path):
    ckpt, ref = small
    p = _translate("--pretrained", str(ckpt), "--beam", "1", "--max-len", "12",
                   *SENTENCES_CLI)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ref["decoded"][: len(SENTENCES_CLI)]
    assert "greedy" in p.stderr and "key/value cache" in p.stderr
    (tmp_path / "in.txt").write_text("\n".join(SENTENCES_CLI[1:]) + "\n")
    q = _translate("--pretrained", str(ckpt), "--beam", "1", "--max-len", "12",
                   SENTENCES_CLI[0], "--input", str(tmp_path / "in.txt"))
    assert q.returncode == 0 and q.stdout == p.stdout  # the file's lines follow, in order
    p = _translate("--pretrained", str(ckpt), "--max-len", "12", "--no-cache", "Hello")
    assert p.returncode == 0, p.stderr
    assert "beam 4" in p.stderr and "no key/value cache" in p.stderr  # the checkpoint's


def test_a_broken_checkpoint_is_one_line_naming_the_file(small, tmp_path):
    ckpt, _ = small
    cases = {}
    bad = shutil.copytree(ckpt, tmp_path / "missing")
    (bad / "target.spm").unlink()
    cases["missing"] = (bad, "target.spm: missing")
    bad = shutil.copytree(ckpt, tmp_path / "bart")
    config = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "bart"}))
    cases["not marian"] = (bad, "config.json: model_type is 'bart', not 'marian'")
    bad = shutil.copytree(ckpt, tmp_path / "wide")
    (bad / "config.json").write_text(json.dumps({**config, "encoder_ffn_dim": 128,
                                                 "decoder_ffn_dim": 128}))
    cases["shape"] = (bad, "model.safetensors: model.encoder.layers.0.fc1.weight has shape "
                           "(64, 32); config.json makes it (128, 32)")
    for name, (path, message) in cases.items():
        p = _translate("--pretrained", str(path), "Hello")
        assert p.returncode == 2, (name, p.stderr)
        assert message in p.stderr, (name, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, (name, p.stderr)
    p = _translate("--pretrained", str(ckpt), "Hello", " ")
    assert p.returncode == 2 and "empty text" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
