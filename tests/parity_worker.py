"""Run in its own process by tests/test_parity.py: one framework, one model, dump numbers.

Usage: python tests/parity_worker.py FRAMEWORK FAMILY SIZE DATASET OUT.npz

Loads the same shared weights (random canonical weights from a fixed numpy seed, not the
usual initialisation, so that the copy itself is tested), records the eval-mode outputs on
16 fixed samples, then for each optimizer takes two steps from those weights and records
the weights after them.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backend_api import load_backend  # noqa: E402
from bench.data import load  # noqa: E402
from bench.spec import RunSpec, weight_shapes  # noqa: E402

OPTIMIZERS = {"sgd": 0.05, "momentum": 0.05, "adam": 1e-3}
N = 16


def shared_weights(family, size, dataset):
    rng = np.random.default_rng(123)
    return [
        (rng.standard_normal(shape) * (0.5 / np.sqrt(shape[0] if len(shape) > 1 else 4)))
        .astype(np.float32)
        for _, shape in weight_shapes(family, size, dataset)
    ]


def main(framework, family, size, dataset, out):
    backend = load_backend(framework)
    backend.setup(1, "cpu", 0)
    data = load(dataset)
    x, y = data.x_train[:N], data.y_train[:N]
    weights = shared_weights(family, size, dataset)
    result = {}
    for opt, lr in OPTIMIZERS.items():
        spec = RunSpec.create(family=family, framework=framework, dataset=dataset, size=size,
                              optimizer=opt, lr=lr, batch_size=N, seed=0)
        model = backend.build(spec)
        backend.set_weights(model, weights)
        trainer = backend.Trainer(model, spec)
        if "outputs" not in result:
            result["outputs"] = trainer.predict(backend.to_device(x), N)
        xb, yb = backend.to_device(x), backend.to_device(y)
        result[f"{opt}.loss"] = np.array(
            [backend.scalar(trainer.step(xb, yb, lr)) for _ in range(2)])
        for i, w in enumerate(backend.get_weights(model)):
            result[f"{opt}.w{i}"] = w
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
