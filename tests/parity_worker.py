"""Run in its own process by tests/test_parity.py: one framework, one model, dump numbers.

Usage: python tests/parity_worker.py FRAMEWORK FAMILY SIZE DATASET OUT.npz [DECODER.npz]
           [--variants=NAME,NAME...]
       python tests/parity_worker.py --cases FRAMEWORK CASES.json OUTDIR
       python tests/parity_worker.py --train-decoder FRAMEWORK SIZE DATASET OUT.npz

--cases runs every case of CASES.json ([[FAMILY, SIZE, DATASET, [VARIANT, ...]], ...]) in
this one process, into OUTDIR/FAMILY-SIZE-DATASET.npz: one framework import for them all.

Loads the same shared weights (random canonical weights from a fixed numpy seed, not the
usual initialisation, so that the copy itself is tested), records the eval-mode outputs on
16 fixed samples, then for each variant (an optimizer with its learning rate and
regularisers, see VARIANTS; BASE unless --variants names others) takes two steps from those
weights and records the losses and the weights after them. Batch-norm variants also record
the eval outputs before and after the steps (the running statistics moved); the dropout
variant records eval outputs with dropout on and takes one step (sgd also records its
weights after its first step, to compare with). seq2seq models are
teacher-forced on the samples' targets and also decode 16 test sentences greedily and by
beam search with the weights in DECODER.npz.

Datasets the user supplies (mnist, imdb) are not here: their 16 samples are random ones of
the right layout (tests/backend_reference.fake_data).

Random weights make a degenerate decoder (one token repeated, never EOS), so the decoding
check uses a briefly trained one: --train-decoder trains it in one framework and saves
its weights, and both frameworks then decode from that same file.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend_reference import fake_data  # noqa: E402

from bench.backend_api import load_backend  # noqa: E402
from bench.data import load  # noqa: E402
from bench.registry import DATASETS  # noqa: E402
from bench.sizes import weight_shapes  # noqa: E402
from bench.spec import RunSpec  # noqa: E402
from bench.translation.generate import beam_search, greedy  # noqa: E402
from bench.translation.text_pairs import PAD  # noqa: E402

# name -> (optimizer, lr, other spec fields). The regularisers are strong enough that two
# steps move the weights well past the comparison's tolerance: adamw's default decay of
# 0.01 at lr 1e-3 changes a weight by 1e-5 of itself, below what the test could see.
L2, WEIGHT_DECAY, ADAMW_DECAY, DROPOUT = 1e-2, 0.1, 1.0, 0.5
VARIANTS = {
    "sgd": ("sgd", 0.05, {}),
    "momentum": ("momentum", 0.05, {}),
    "adam": ("adam", 1e-3, {}),
    "nesterov": ("nesterov", 0.05, {}),
    "rmsprop": ("rmsprop", 1e-3, {}),
    "adamw": ("adamw", 1e-3, {"weight_decay": ADAMW_DECAY}),
    "l2": ("sgd", 0.05, {"l2": L2}),
    "wd": ("momentum", 0.05, {"weight_decay": WEIGHT_DECAY}),
    "bn": ("sgd", 0.05, {"batchnorm": True}),
    "dropout": ("sgd", 0.05, {"dropout": DROPOUT}),
}
BASE = ("sgd", "momentum", "adam")
N = 16
SEQ2SEQ_SMOOTHING = 0.1  # the steps check the smoothed loss too
DECODER_STEPS, DECODER_LR, DECODER_BATCH = 300, 3e-3, 64
BEAM_WIDTH = 4


def shared_weights(family, size, dataset, batchnorm=False):
    rng = np.random.default_rng(123)
    return [
        (rng.standard_normal(shape) * (0.5 / np.sqrt(shape[0] if len(shape) > 1 else 4)))
        .astype(np.float32)
        for _, shape in weight_shapes(family, size, dataset, batchnorm)
    ]


def samples(family, size, dataset):
    """The N (x, y) every variant steps on: the training set's first, or random ones of
    the right layout for a dataset whose file the user supplies."""
    if DATASETS[dataset].file:
        return fake_data(_spec("torch", family, size, dataset), N)
    data = load(dataset)
    return data.x_train[:N], data.y_train[:N]


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


def _outputs(trainer, xb, yb, seq2seq):
    return trainer.predict(xb, N, yb) if seq2seq else trainer.predict(xb, N)


def main(framework, family, size, dataset, out, decoder_file=None, variants=BASE):
    backend = load_backend(framework)
    backend.setup(1, "cpu", 0)
    x, y = samples(family, size, dataset)
    xb, yb = backend.to_device(x), backend.to_device(y)
    seq2seq = family == "seq2seq"
    result = {}
    for name in ("sgd", *(v for v in variants if v != "sgd")):  # sgd first: "outputs"
        opt, lr, extra = VARIANTS[name]
        spec = _spec(framework, family, size, dataset, optimizer=opt, lr=lr, batch_size=N,
                     **extra)
        model = backend.build(spec)
        backend.set_weights(model, shared_weights(family, size, dataset, spec.batchnorm))
        trainer = backend.Trainer(model, spec)
        if name == "sgd":
            result["outputs"] = _outputs(trainer, xb, yb, seq2seq)
            plain = backend, trainer, model
        elif spec.batchnorm:
            result[f"{name}.before"] = _outputs(trainer, xb, yb, seq2seq)
        elif spec.dropout:  # eval mode: no dropout, whatever the rate
            result[f"{name}.outputs"] = _outputs(trainer, xb, yb, seq2seq)
        losses = []
        # the masks differ between frameworks: a dropout step is compared with plain SGD's
        # first step in its own framework only
        for step in range(1 if spec.dropout else 2):
            losses.append(backend.scalar(trainer.step(xb, yb, lr)))
            if name == "sgd" and step == 0:
                for i, w in enumerate(backend.get_weights(model)):
                    result[f"sgd.step1.w{i}"] = w
        result[f"{name}.loss"] = np.array(losses)
        for i, w in enumerate(backend.get_weights(model)):
            result[f"{name}.w{i}"] = w
        if spec.batchnorm:  # eval mode reads the running statistics the steps updated
            result[f"{name}.after"] = _outputs(trainer, xb, yb, seq2seq)
    if seq2seq and decoder_file:
        data = load(dataset)
        result.update(decode(*plain, data, decoder_file))
    np.savez(out, **result)


if __name__ == "__main__":
    if sys.argv[1] == "--train-decoder":
        train_decoder(*sys.argv[2:])
    elif sys.argv[1] == "--cases":
        import json

        framework, cases, outdir = sys.argv[2:5]
        for family, size, dataset, variants in json.loads(Path(cases).read_text()):
            main(framework, family, size, dataset,
                 Path(outdir) / f"{family}-{size}-{dataset}.npz", variants=variants)
    else:
        args = [a for a in sys.argv[1:] if not a.startswith("--variants=")]
        chosen = [a.split("=", 1)[1].split(",") for a in sys.argv[1:]
                  if a.startswith("--variants=")]
        main(*args, variants=chosen[0] if chosen else BASE)
