"""bench.data: offline datasets, fixed splits, user files in the Keras layout."""

import random

import numpy as np
import pytest

from bench import data
from bench.registry import DATASETS, SpecError

# name -> (n_train, n_val, n_test), as documented in DatasetInfo.description
BUILTIN = {
    "mnist1d": (3600, 400, 1000),
    "digits": (1293, 144, 360),
    "tokens": (3600, 400, 1000),
}


@pytest.fixture(scope="module")
def loaded():
    return {name: data.load(name) for name in BUILTIN}


def _check_layout(d: data.Data):
    info = DATASETS[d.name]
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        assert x.shape[1:] == info.shape
        assert len(x) == len(y)
        assert y.dtype == np.int64
        assert y.min() >= 0 and y.max() < info.n_classes
        if info.kind == "tokens":
            assert x.dtype == np.int64
            assert x.min() >= 0 and x.max() < info.vocab
        else:
            assert x.dtype == np.float32
            assert np.isfinite(x).all()


def test_builtin_registry_is_covered():
    # A new built-in dataset needs its split sizes documented here (translation pairs are
    # tested in test_text_pairs.py).
    assert set(BUILTIN) == {n for n, i in DATASETS.items() if not i.file and i.kind != "text"}


def test_translation_pairs_load_with_both_test_sets():
    d = data.load("en_fr_numbers")
    info = DATASETS["en_fr_numbers"]
    assert d.sizes() == {"n_train": 600, "n_val": 300, "n_test": 1000, "n_test_long": 500}
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test),
                 (d.x_test_long, d.y_test_long)):
        assert x.shape[1:] == info.shape and y.shape[1:] == (info.target_len,)
        assert x.dtype == y.dtype == np.int64
        assert x.max() < info.vocab and y.max() < info.vocab
        assert (y[:, 0] == 1).all()  # every target starts with BOS


def test_translation_pairs_need_num2words(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_num2words(name, *a, **kw):
        if name == "num2words":
            raise ImportError(name="num2words")
        return real(name, *a, **kw)

    from bench.translation import text_pairs

    text_pairs.vocabulary.cache_clear()
    monkeypatch.setattr(builtins, "__import__", no_num2words)
    with pytest.raises(data.DataError, match="pip install num2words"):
        data.load("en_fr_numbers")
    text_pairs.vocabulary.cache_clear()


@pytest.mark.parametrize("name", list(BUILTIN))
def test_builtin_split_sizes_and_layout(loaded, name):
    d = loaded[name]
    n_train, n_val, n_test = BUILTIN[name]
    assert d.sizes() == {"n_train": n_train, "n_val": n_val, "n_test": n_test}
    _check_layout(d)
    # every class is present in training data
    assert set(np.unique(d.y_train)) == set(range(DATASETS[name].n_classes))


def test_digits_values_in_unit_interval(loaded):
    d = loaded["digits"]
    for x in (d.x_train, d.x_val, d.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0


@pytest.mark.parametrize("name", ["digits", "tokens"])
def test_builtin_load_is_deterministic(loaded, name):
    a, b = loaded[name], data.load(name)
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_mnist1d_deterministic_and_leaves_global_rng_alone(loaded):
    np.random.seed(1234)
    random.seed(1234)
    np_before, py_before = np.random.get_state(), random.getstate()
    b = data.load("mnist1d")
    np_after, py_after = np.random.get_state(), random.getstate()
    assert py_after == py_before
    assert np_after[0] == np_before[0]
    np.testing.assert_array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    a = loaded["mnist1d"]
    for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_tokens_train_val_test_disjoint(loaded):
    d = loaded["tokens"]
    rows = [set(map(bytes, x)) for x in (d.x_train, d.x_val, d.x_test)]
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]


# ---------------------------------------------------------------------------- tokens task


def _marker_positions(x):
    assert ((x == 1).sum(axis=1) == 1).all(), "marker A must appear exactly once"
    assert ((x == 2).sum(axis=1) == 1).all(), "marker B must appear exactly once"
    return np.argmax(x == 1, axis=1), np.argmax(x == 2, axis=1)


def test_tokens_label_is_marker_order(loaded):
    d = loaded["tokens"]
    for x, y in ((d.x_train, d.y_train), (d.x_val, d.y_val), (d.x_test, d.y_test)):
        a, b = _marker_positions(x)
        np.testing.assert_array_equal(y, (a < b).astype(np.int64))
        # fillers never collide with padding or markers
        filler = x[(x != 1) & (x != 2)]
        assert filler.min() >= 3


def test_tokens_swapping_markers_flips_label_and_keeps_bag():
    x, y = data.make_tokens(200, length=20, vocab=50, seed=5)
    swapped = x.copy()
    swapped[x == 1], swapped[x == 2] = 2, 1
    a, b = _marker_positions(swapped)
    np.testing.assert_array_equal((a < b).astype(np.int64), 1 - y)
    np.testing.assert_array_equal(np.sort(swapped, axis=1), np.sort(x, axis=1))


def test_tokens_bag_of_words_carries_no_label(loaded):
    d = loaded["tokens"]
    x, y = d.x_train, d.y_train
    assert 0.4 < y.mean() < 0.6
    vocab = DATASETS["tokens"].vocab
    # marker counts are identical in both classes; filler frequencies match within noise
    for cls in (0, 1):
        assert ((x[y == cls] == 1).sum(axis=1) == 1).all()
        assert ((x[y == cls] == 2).sum(axis=1) == 1).all()
    bins = np.linspace(3, vocab, 11)
    h0 = np.histogram(x[y == 0][x[y == 0] >= 3], bins)[0] / (y == 0).sum()
    h1 = np.histogram(x[y == 1][x[y == 1] >= 3], bins)[0] / (y == 1).sum()
    np.testing.assert_allclose(h0, h1, rtol=0.1)


def test_make_tokens_deterministic_by_seed():
    a = data.make_tokens(50, seed=1)
    b = data.make_tokens(50, seed=1)
    c = data.make_tokens(50, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


# ---------------------------------------------------------------------------- user files


def _write_mnist(path, n_train=100, n_test=20, **override):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)


def _ragged(seqs):
    out = np.empty(len(seqs), dtype=object)
    out[:] = [list(s) for s in seqs]
    return out


def _write_imdb(path, x_train, x_test):
    np.savez(
        path,
        x_train=_ragged(x_train), y_train=(np.arange(len(x_train)) % 2).astype(np.int64),
        x_test=_ragged(x_test), y_test=(np.arange(len(x_test)) % 2).astype(np.int64),
    )


def test_mnist_from_user_file(tmp_path):
    _write_mnist(tmp_path / "mnist.npz")
    d = data.load("mnist", tmp_path)
    assert d.sizes() == {"n_train": 90, "n_val": 10, "n_test": 20}
    _check_layout(d)
    for x in (d.x_train, d.x_val, d.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert d.x_train.max() > 0.9  # scaled by 255, not clipped to a sliver
    # train+val is the file's training set, reordered; test is kept as is
    raw = np.load(tmp_path / "mnist.npz")
    got = np.rint(np.concatenate([d.x_train, d.x_val])[..., 0] * 255).astype(np.uint8)
    assert sorted(r.tobytes() for r in got) == sorted(r.tobytes() for r in raw["x_train"])
    np.testing.assert_allclose(d.x_test[..., 0] * 255.0, raw["x_test"], atol=1e-3)


def test_mnist_user_file_split_is_deterministic(tmp_path):
    _write_mnist(tmp_path / "mnist.npz")
    a, b = data.load("mnist", tmp_path), data.load("mnist", tmp_path)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)


@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_missing_user_file_names_path(tmp_path, name):
    with pytest.raises(data.DataError) as e:
        data.load(name, tmp_path, allow_pickle=True)
    assert str(tmp_path / DATASETS[name].file) in str(e.value)


@pytest.mark.parametrize("allow_pickle", [False, True])
@pytest.mark.parametrize("name", ["mnist", "imdb"])
def test_garbage_user_file_is_data_error(tmp_path, name, allow_pickle):
    path = tmp_path / DATASETS[name].file
    path.write_bytes(b"this is not an npz file\x00\x01\x02" * 40)
    with pytest.raises(data.DataError) as e:
        data.load(name, tmp_path, allow_pickle=allow_pickle)
    assert str(path) in str(e.value)


def test_garbage_user_file_does_not_advise_allow_pickle(tmp_path):
    # A file that is not an .npz at all is corrupt; telling the user to pass --allow-pickle
    # would have them unpickle an arbitrary file.
    (tmp_path / "mnist.npz").write_bytes(b"garbage" * 100)
    with pytest.raises(data.DataError) as e:
        data.load("mnist", tmp_path)
    assert "allow-pickle" not in str(e.value)


@pytest.mark.parametrize("allow_pickle", [False, True])
def test_truncated_npz_is_data_error(tmp_path, allow_pickle):
    _write_mnist(tmp_path / "full.npz")
    blob = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(data.DataError, match="corrupt"):
        data.load("mnist", tmp_path, allow_pickle=allow_pickle)


@pytest.mark.parametrize("override,needle", [
    ({"x_train": np.zeros((10, 28, 27), np.uint8), "y_train": np.zeros(10, np.uint8)},
     "x_train"),
    ({"x_test": np.zeros((20, 784), np.uint8)}, "x_test"),
    ({"y_test": None}, "y_test"),
    ({"x_train": None}, "x_train"),
    ({"y_train": np.zeros(99, np.uint8)}, "labels"),
    ({"y_train": np.full(100, 10, np.uint8)}, "labels"),
])
def test_malformed_mnist_is_data_error(tmp_path, override, needle):
    _write_mnist(tmp_path / "mnist.npz", **override)
    with pytest.raises(data.DataError) as e:
        data.load("mnist", tmp_path)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_imdb_needs_allow_pickle(tmp_path):
    _write_imdb(tmp_path / "imdb.npz", [[1, 5, 7]] * 20, [[1, 9]] * 10)
    with pytest.raises(data.DataError) as e:
        data.load("imdb", tmp_path)
    assert "--allow-pickle" in str(e.value)
    assert str(tmp_path / "imdb.npz") in str(e.value)


def test_imdb_pad_truncate_and_vocab(tmp_path):
    info = DATASETS["imdb"]
    rng = np.random.default_rng(3)
    long = [list(rng.integers(1, 30000, 300)) for _ in range(30)]
    short = [[1, 14, 22, 16]] * 10
    _write_imdb(tmp_path / "imdb.npz", long + short, short + long[:5])
    d = data.load("imdb", tmp_path, allow_pickle=True)
    assert d.sizes() == {"n_train": 36, "n_val": 4, "n_test": 15}
    _check_layout(d)
    # the short test sequences: their tokens first, zero padding after
    np.testing.assert_array_equal(d.x_test[0, :4], [1, 14, 22, 16])
    assert (d.x_test[:10, 4:] == 0).all()
    # the long ones: the first 50 tokens, out-of-vocabulary ids replaced
    first = np.asarray(long[0][: info.shape[0]])
    np.testing.assert_array_equal(d.x_test[10], np.where(first >= info.vocab, 2, first))


def test_imdb_non_integer_sequences_are_data_error(tmp_path):
    _write_imdb(tmp_path / "imdb.npz", [["a", "b"]] * 10, [[1]] * 5)
    with pytest.raises(data.DataError, match="corrupt"):
        data.load("imdb", tmp_path, allow_pickle=True)


def test_unknown_dataset_is_spec_error(tmp_path):
    with pytest.raises(SpecError, match="'cifar10'"):
        data.load("cifar10", tmp_path)
