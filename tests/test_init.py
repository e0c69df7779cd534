"""bench.init: the framework-neutral initial weights both backends start from."""

import numpy as np
import pytest

import bench.registry
import bench.sizes
from bench.init import init_weights
from bench.spec import RunSpec

CASES = [(f, d) for f in bench.registry.FAMILIES for d in bench.registry.DATASETS
         if bench.registry.reads(f, d)]
# a dataset each family reads, for the tests that need just one
HOME = {f: "en_fr_numbers" if f == "seq2seq" else "mnist1d" for f in bench.registry.FAMILIES}


def _spec(family, dataset, size="xs", **kw):
    return RunSpec(family=family, framework="torch", dataset=dataset, size=size, **kw)


# seq2seq has no batch norm
WITH_BN = [(f, d, bn) for f, d in CASES for bn in (False, True) if not (bn and f == "seq2seq")]


@pytest.mark.parametrize("family,dataset,batchnorm", WITH_BN)
def test_shapes_and_dtype_follow_weight_shapes(family, dataset, batchnorm):
    ws = init_weights(_spec(family, dataset, batchnorm=batchnorm))
    shapes = bench.sizes.weight_shapes(family, "xs", dataset, batchnorm)
    assert [w.shape for w in ws] == [shape for _, shape in shapes]
    assert all(w.dtype == np.float32 for w in ws)
    assert all(np.isfinite(w).all() for w in ws)


@pytest.mark.parametrize("family", bench.registry.FAMILIES)
def test_deterministic_by_seed_and_framework_independent(family):
    home = HOME[family]
    a = init_weights(_spec(family, home, seed=3))
    b = init_weights(_spec(family, home, seed=3).with_(framework="tf", optimizer="sgd", lr=0.5))
    c = init_weights(_spec(family, home, seed=4))
    assert len(a) == len(b) == len(c)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    names = [n for n, _ in bench.sizes.weight_shapes(family, "xs", home)]
    for name, x, z in zip(names, a, c, strict=True):
        if name.endswith("kernel"):
            assert not np.array_equal(x, z), name


@pytest.mark.parametrize("family,dataset", CASES)
def test_schemes(family, dataset):
    bn = family != "seq2seq"
    spec = _spec(family, dataset, size="s", batchnorm=bn)
    shapes = bench.sizes.weight_shapes(family, "s", dataset, bn)
    for (name, shape), w in zip(shapes, init_weights(spec), strict=True):
        leaf = name.rsplit(".", 1)[-1]
        if name == "embed":
            assert np.abs(w).max() <= 0.05 and w.std() > 0.01
        elif leaf == "kernel":
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            limit = np.sqrt(6.0 / ((shape[-2] + shape[-1]) * receptive))
            assert np.abs(w).max() <= limit * (1 + 1e-6), name
            assert np.abs(w).max() > 0.5 * limit, name
        elif leaf == "gamma":
            assert (w == 1).all(), name
        elif leaf == "beta" or (leaf == "bias" and not (family == "lstm" and "rnn" in name)):
            assert (w == 0).all(), name


@pytest.mark.parametrize("size", ["xs", "m", "article"])
def test_lstm_forget_gate_bias_is_one(size):
    shapes = bench.sizes.weight_shapes("lstm", size, "tokens")
    weights = init_weights(_spec("lstm", "tokens", size=size))
    for (name, shape), w in zip(shapes, weights, strict=True):
        if name.startswith("rnn") and name.endswith(".bias"):
            h = shape[0] // 4
            gates = w.reshape(4, h)  # i, f, c, o
            np.testing.assert_array_equal(gates[1], np.ones(h))
            np.testing.assert_array_equal(gates[[0, 2, 3]], np.zeros((3, h)))


@pytest.mark.parametrize("family", [f for f in bench.registry.FAMILIES if f in ("lstm", "gru")])
@pytest.mark.parametrize("size", ["xs", "m"])
def test_recurrent_kernels_orthogonal_per_gate(family, size):
    shapes = bench.sizes.weight_shapes(family, size, "digits")
    weights = init_weights(_spec(family, "digits", size=size))
    found = 0
    for (name, shape), w in zip(shapes, weights, strict=True):
        if not name.endswith("recurrent_kernel"):
            continue
        h = shape[0]
        gates = shape[1] // h
        assert gates == (4 if family == "lstm" else 3)
        blocks = [w[:, g * h:(g + 1) * h].astype(np.float64) for g in range(gates)]
        for blk in blocks:
            np.testing.assert_allclose(blk.T @ blk, np.eye(h), atol=1e-5)
        assert not np.allclose(blocks[0], blocks[1])
        found += 1
    assert found == bench.sizes.SIZES[family][size].layers
