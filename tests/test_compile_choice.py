"""`compile: best` (bench.compile_choice): which mode a probe picks, that it is paid once per
model and setting, and that the probe leaves the run itself untouched."""

import json
import time

import numpy as np
import pytest

from bench import compile_choice, train
from bench.data import Data, load
from bench.registry import SpecError
from bench.spec import RunSpec, parse_compile


def spec(**kw):
    base = dict(family="cnn", framework="torch", dataset="mnist1d", size="xs", epochs=2,
                compile="best", warmup_steps=1, block_steps=2, block_seconds=0.0)
    return RunSpec.create(**{**base, **kw})


class TimedBackend:
    """A step costs `seconds[compiled]`; counts the models built (each probe builds one)."""

    def __init__(self, eager_s, compiled_s, compile_s=0.0):
        self.seconds = {False: eager_s, True: compiled_s}
        self.compile_s = compile_s  # the compiled model's first step: its compilation
        self.built = 0

    def to_device(self, a):
        return a

    def batch_indices(self, order, batch):
        return list(order.reshape(-1, batch))

    def take(self, x, idx):
        return x[idx]

    def sum_scalars(self, ts):
        return float(np.sum(ts))

    def build(self, s):
        assert s.compile in (False, True)
        self.built += 1
        return s

    def Trainer(self, model, s):  # noqa: N802 - the contract's name
        wait = self.seconds[s.compile]
        first = [self.compile_s if s.compile else 0.0]

        class T:
            steps_per_call = 1

            def steps(self, x, y, order, start, lrs):
                time.sleep(wait + first.pop() if first else wait)
                return [1.0]

        return T()


def data(n=256):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, 40, 1)).astype(np.float32), rng.integers(0, 10, n)
    return Data("mnist1d", x, y, x[:32], y[:32], x[:32], y[:32])


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(compile_choice, "_MEMO", {})
    monkeypatch.setattr(compile_choice, "BLOCK_SECONDS", 0.02)


@pytest.mark.parametrize("compiled_s,chosen", [(0.001, True), (0.004, False),
                                               (0.0021, False)])
def test_compiled_is_chosen_only_when_clearly_faster(compiled_s, chosen):
    # 0.0021 s against 0.002: 5% slower, and a tie would not pay for compiling each run
    got = compile_choice.choose(spec(), data(), TimedBackend(0.002, compiled_s), "cpu")
    assert got["compiled"] is chosen and got["source"] == "probed"
    ratio = got["compiled_samples_per_s"] / got["eager_samples_per_s"]
    assert ratio == pytest.approx(0.002 / compiled_s, rel=0.3)


def test_compilation_is_paid_back_only_by_a_run_long_enough():
    """Compiled steps twice as fast, but 0.3 s to compile: a 2-epoch run (512 samples)
    would save 8 ms, a 2000-epoch one 8 s. One probe decides both."""
    backend = TimedBackend(0.002, 0.001, compile_s=0.3)
    short = compile_choice.choose(spec(), data(), backend, "cpu")
    long = compile_choice.choose(spec(epochs=2000), data(), backend, "cpu")
    assert backend.built == 2 and long["source"] == "cached"
    assert short["compile_extra_s"] == pytest.approx(0.3, abs=0.1)
    assert short["compiled"] is False and short["saving_s"] < 0.1
    assert long["compiled"] is True and long["saving_s"] == pytest.approx(8, rel=0.3)
    # at a plateau the run is taken to last min_epochs + 2 x patience epochs
    assert compile_choice.expected_samples(spec(epochs=100, patience=8, min_epochs=10),
                                           256) == 26 * 4 * 64


def test_a_choice_is_probed_once_then_read_from_the_cache_folder(tmp_path, monkeypatch):
    backend = TimedBackend(0.002, 0.001)
    first = compile_choice.choose(spec(), data(), backend, "cpu", tmp_path)
    assert backend.built == 2 and first["compiled"]
    monkeypatch.setattr(compile_choice, "_MEMO", {})  # a new process of the same study
    again = compile_choice.choose(spec(seed=5, lr=0.1), data(), backend, "cpu", tmp_path)
    assert backend.built == 2 and again["source"] == "cached"
    assert again["compiled_samples_per_s"] == first["compiled_samples_per_s"]
    # another model is probed afresh; an unreadable cache file is probed and replaced
    compile_choice.choose(spec(size="s"), data(), backend, "cpu", tmp_path)
    assert backend.built == 4
    monkeypatch.setattr(compile_choice, "_MEMO", {})
    path = tmp_path / f"{compile_choice.key(spec(), 'cpu')}.json"
    path.write_text("{trunc")
    assert compile_choice.choose(spec(), data(), backend, "cpu", tmp_path)["source"] == "probed"
    assert json.loads(path.read_text())["compiled_samples_per_s"] > 0


def test_the_key_holds_what_changes_a_step_and_nothing_else():
    k = compile_choice.key(spec(), "cpu")
    assert compile_choice.key(spec(seed=9, lr=0.5, epochs=7), "cpu") == k
    assert compile_choice.key(spec(dropout=0.1), "cpu") == compile_choice.key(
        spec(dropout=0.3), "cpu") != k
    for other in (spec(size="s"), spec(batch_size=32), spec(framework="tf"),
                  spec(batchnorm=True), spec(optimizer="sgd"), spec(threads=2)):
        assert compile_choice.key(other, "cpu") != k
    assert compile_choice.key(spec(), "another cpu") != k


@pytest.mark.parametrize("value,want", [("best", "best"), ("true", True), ("False", False),
                                        (True, True), (0, False)])
def test_compile_modes_parse(value, want):
    assert parse_compile(value) == want
    assert spec(compile=value).compile == want


def test_a_bad_compile_mode_is_one_line():
    with pytest.raises(SpecError, match="bad compile 'fast'; use false, true or best"):
        spec(compile="fast")


def test_compile_per_framework_resolves_for_each_framework():
    both = {"torch": False, "tf": "best"}
    assert spec(compile=both).compile is False
    assert spec(compile=both, framework="tf").compile == "best"


def test_best_leaves_ids_of_false_and_true_unchanged():
    assert spec(compile=False).run_id != spec().run_id != spec(compile=True).run_id


@pytest.mark.slow
def test_a_best_run_equals_the_run_of_the_mode_it_chose(tmp_path):
    """The probe trains throwaway models (drawing dropout masks) before the run; seeded
    again after it, the run repeats the plain uncompiled run number for number."""
    from bench import torch_backend

    mnist = load("mnist1d")
    s = spec(family="gru", dropout=0.2, regulariser="dropout", seed=3)
    key = compile_choice.key(s, torch_backend.setup(1, "cpu")["device_name"])
    (tmp_path / f"{key}.json").write_text(json.dumps({
        "key": key, "compiled": False, "eager_samples_per_s": 2.0,
        "compiled_samples_per_s": 1.0, "eager_first_steps_s": 0.1,
        "compiled_first_steps_s": 9.0}))
    plain = train.run(s.with_(compile=False), mnist, torch_backend)
    # the memo is empty, so the cached choice is read from the folder, not probed
    best = train.run(s, mnist, torch_backend, compile_cache=tmp_path)
    assert best["compile"] == "best" and best["compile_used"] is False
    assert best["compile_probe"]["source"] == "cached" and plain["compile_used"] is False
    keys = ["train_loss", "val_loss", "test_loss", "val_acc", "test_acc"]
    assert {k: best[k] for k in keys} == {k: plain[k] for k in keys}
    assert [c["train_loss"] for c in best["curve"]] == [c["train_loss"] for c in plain["curve"]]
    # a real probe, then the run it chose
    compile_choice._MEMO.clear()
    probed = train.run(s.with_(seed=4), mnist, torch_backend)
    assert probed["compile_probe"]["source"] == "probed" and probed["status"] == "ok"
    assert probed["compile_probe"]["eager_samples_per_s"] > 0


def test_an_unresolved_best_never_reaches_a_trainer():
    from bench import torch_backend

    torch_backend.setup(1, "cpu")
    s = spec()
    with pytest.raises(SpecError, match="unresolved"):
        torch_backend.Trainer(torch_backend.build(s.with_(compile=False)), s)
