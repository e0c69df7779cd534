"""Run in its own process by tests/test_parity.py: one framework, one model, dump numbers.

Usage: python tests/parity_worker.py FRAMEWORK FAMILY SIZE DATASET OUT.npz [DECODER.npz]
       python tests/parity_worker.py --train-decoder FRAMEWORK SIZE DATASET OUT.npz

Loads the same shared weights (random canonical weights from a fixed numpy seed, not the
usual initialisation, so that the copy itself is tested), records the eval-mode outputs on
16 fixed samples, then for each optimizer takes two steps from those weights and records
the weights after them. seq2seq models are teacher-forced on the samples' targets and also
decode 16 test sentences greedily and by beam search with the weights in DECODER.npz.

Random weights make a degenerate decoder (one token repeated, never EOS), so the decoding
check uses a briefly trained one: --train-decoder trains it in one framework and saves
its weights, and both frameworks then decode from that same file.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backend_api import load_backend  # noqa: E402
from bench.data import load  # noqa: E402
from bench.generate import beam_search, greedy  # noqa: E402
from bench.spec import RunSpec, weight_shapes  # noqa: E402
from bench.text_pairs import PAD  # noqa: E402

OPTIMIZERS = {"sgd": 0.05, "momentum": 0.05, "adam": 1e-3}
N = 16
SEQ2SEQ_SMOOTHING = 0.1  # the steps check the smoothed loss too
DECODER_STEPS, DECODER_LR, DECODER_BATCH = 300, 3e-3, 64
BEAM_WIDTH = 4


def shared_weights(family, size, dataset):
    rng = np.random.default_rng(123)
    return [
        (rng.standard_normal(shape) * (0.5 / np.sqrt(shape[0] if len(shape) > 1 else 4)))
        .astype(np.float32)
        for _, shape in weight_shapes(family, size, dataset)
    ]


def _spec(framework, family, size, dataset, **kw):
    if family == "seq2seq":
        kw.setdefault("label_smoothing", SEQ2SEQ_SMOOTHING)
    return RunSpec.create(family=family, framework=framework, dataset=dataset, size=size,
                          seed=0, **kw)


def _padded(rows):
    out = np.full((len(rows), max(map(len, rows))), PAD, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def train_decoder(framework, size, dataset, out):
    """Adam from the usual initialisation on the training set; saves the weights."""
    backend = load_backend(framework)
    backend.setup(1, "cpu", 0)
    data = load(dataset)
    spec = _spec(framework, "seq2seq", size, dataset, optimizer="adam", lr=DECODER_LR,
                 label_smoothing=0.0)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x, y = backend.to_device(data.x_train), backend.to_device(data.y_train)
    rng = np.random.default_rng(0)
    for _ in range(DECODER_STEPS):
        idx = rng.integers(0, len(data.y_train), DECODER_BATCH)
        trainer.step(backend.take(x, idx), backend.take(y, idx), DECODER_LR)
    np.savez(out, *backend.get_weights(model))


def decode(backend, trainer, model, data, decoder_file):
    saved = np.load(decoder_file)
    backend.set_weights(model, [saved[f"arr_{i}"] for i in range(len(saved.files))])
    src = backend.to_device(data.x_test[:N])
    max_len = data.y_test.shape[1] - 1
    return {"greedy": _padded(greedy(trainer, src, max_len, N)),
            "beam": _padded(beam_search(trainer, src, BEAM_WIDTH, 1.0, max_len, N))}


def main(framework, family, size, dataset, out, decoder_file=None):
    backend = load_backend(framework)
    backend.setup(1, "cpu", 0)
    data = load(dataset)
    x, y = data.x_train[:N], data.y_train[:N]
    seq2seq = family == "seq2seq"
    weights = shared_weights(family, size, dataset)
    result = {}
    for opt, lr in OPTIMIZERS.items():
        spec = _spec(framework, family, size, dataset, optimizer=opt, lr=lr, batch_size=N)
        model = backend.build(spec)
        backend.set_weights(model, weights)
        trainer = backend.Trainer(model, spec)
        xb, yb = backend.to_device(x), backend.to_device(y)
        if "outputs" not in result:
            result["outputs"] = (trainer.predict(xb, N, yb) if seq2seq
                                 else trainer.predict(xb, N))
        result[f"{opt}.loss"] = np.array(
            [backend.scalar(trainer.step(xb, yb, lr)) for _ in range(2)])
        for i, w in enumerate(backend.get_weights(model)):
            result[f"{opt}.w{i}"] = w
    if seq2seq and decoder_file:
        result.update(decode(backend, trainer, model, data, decoder_file))
    np.savez(out, **result)


if __name__ == "__main__":
    if sys.argv[1] == "--train-decoder":
        train_decoder(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
