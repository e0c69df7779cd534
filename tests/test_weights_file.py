"""bench.translation.weights_file: the framework-neutral file a run's kept weights live in."""

import numpy as np
import pytest

from bench.init import init_weights
from bench.spec import RunSpec
from bench.translation import weights_file


def spec(**kw):
    base = dict(family="seq2seq", framework="torch", dataset="en_fr_numbers", size="xs")
    return RunSpec.create(**{**base, **kw})


def test_round_trip_keeps_order_and_values_and_any_framework_reads_it(tmp_path):
    s = spec()
    w = init_weights(s)
    path = weights_file.save(tmp_path / "run.weights.npz", s, w)
    back = weights_file.load(path, s.with_(framework="tf", seed=7, lr=0.1))  # same architecture
    assert len(back) == len(w)
    for a, b in zip(w, back, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["run.weights.npz"]  # no temp files
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert "__spec__" in z.files


def test_path_sits_beside_the_record():
    path = weights_file.path_for("results/runs/abc.json")
    assert path.as_posix() == "results/runs/abc.weights.npz"


def test_another_models_weights_are_refused_in_one_line(tmp_path):
    s = spec()
    path = weights_file.save(tmp_path / "w.npz", s, init_weights(s))
    with pytest.raises(weights_file.WeightsError,
                       match="seq2seq xs on en_fr_numbers, not this run's seq2seq s") as e:
        weights_file.load(path, spec(size="s"))
    assert "\n" not in str(e.value)


def test_missing_and_corrupt_files_are_one_line_errors(tmp_path):
    with pytest.raises(weights_file.WeightsError, match="--save-model"):
        weights_file.load(tmp_path / "nope.npz", spec())
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(weights_file.WeightsError, match="unreadable"):
        weights_file.load(bad, spec())


def test_a_file_whose_arrays_do_not_match_the_spec_is_refused(tmp_path):
    s = spec()
    w = init_weights(s)
    w[0] = w[0][:, :-1]  # an embedding of the wrong shape under a matching spec
    path = tmp_path / "w.npz"
    weights_file.save(path, s, w)
    with pytest.raises(weights_file.WeightsError, match="names or shapes differ"):
        weights_file.load(path, s)


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    s = spec()
    path = weights_file.save(tmp_path / "w.npz", s, init_weights(s))
    before = path.read_bytes()

    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        weights_file.save(path, s, init_weights(s.with_(seed=3)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]
