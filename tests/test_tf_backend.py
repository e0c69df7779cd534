"""What only the TensorFlow backend has: graph functions traced once for every batch size,
learning rate and decoding step, and Keras's global dtype policy left as it was.

The contract both backends fulfil is tested once, in tests/test_backend.py. Imports
TensorFlow only: the torch backend is tested in its own process.
"""

from __future__ import annotations

import pytest

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402
from backend_reference import fake_data  # noqa: E402

from bench import tf_backend as backend  # noqa: E402
from bench.spec import RunSpec  # noqa: E402
from bench.translation.generate import beam_search, greedy  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _setup():
    backend.setup(1, "cpu", 0)


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework="tf", dataset=dataset, size=size, **kw)


def test_one_trace_serves_every_batch_size():
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = backend.to_device(x), backend.to_device(y)
    for n in (16, 7, 37):  # mini, partial and full batches share one trace
        trainer.step(xd[:n], yd[:n], 1e-3)
    assert trainer._step.experimental_get_tracing_count() == 1
    trainer.evaluate(xd, yd, 16)
    trainer.predict(x, 16)  # numpy input, and a partial last batch
    assert trainer._predict.experimental_get_tracing_count() == 1  # evaluate's trace, reused


def test_seq2seq_decoding_does_not_retrace(trained_seq2seq, s2s_data):
    x = s2s_data.x_val[:20]
    for cache in (True, False):
        out = (greedy(trained_seq2seq, x, 20, 8, cache=cache)
               + beam_search(trained_seq2seq, x, 3, 1.0, 20, 8, cache=cache))
        assert max(len(r) for r in out) > 3  # prefixes of many lengths and batch sizes
    fns = trained_seq2seq.decoder
    # greedy and beam search rank in the graph (next_top); next_logprobs's pair is traced
    # only by tests that call it, which may share this session's model or not
    for fn in (fns._encode, fns._cross, fns._full_top, fns._step_top):
        assert fn.experimental_get_tracing_count() == 1
    for fn in (fns._full, fns._step):
        assert fn.experimental_get_tracing_count() <= 1


def test_seq2seq_training_does_not_retrace(s2s_data):
    spec = make_spec("seq2seq", "en_fr_numbers", optimizer="adam", lr=1e-2,
                     label_smoothing=0.1, dropout=0.1)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train[:48]), backend.to_device(s2s_data.y_train[:48])
    for lr in (spec.lr, 0.5 * spec.lr):  # a new learning rate, the same trace
        trainer.step(x[:32], y[:32], lr)
    trainer.step(x, y, spec.lr)  # another batch size, the same trace
    assert trainer._step.experimental_get_tracing_count() == 1
    trainer.evaluate(x, y, 20)  # a partial last batch
    assert trainer._eval_s2s.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("family,dataset", [("cnn", "digits"), ("gru", "mnist1d"),
                                            ("transformer", "tokens"),
                                            ("seq2seq", "en_fr_numbers")])
def test_bf16_build_puts_the_global_dtype_policy_back(family, dataset):
    backend.build(make_spec(family, dataset, precision="bf16"))
    assert keras.config.dtype_policy().name == "float32"
