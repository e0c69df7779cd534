"""bench.train.run against a scripted fake backend: when a run stops, which weights it tests,
what it records. Fast and framework-free; tests/test_train.py runs the real backends."""

import math
import time
from types import SimpleNamespace

import numpy as np
import pytest

from bench import train
from bench.data import Data
from bench.sizes import memory_estimate_mb, param_count
from bench.spec import RunSpec


class FakeBackend:
    """Validation accuracy follows `script` epoch by epoch; the "weights" are the number of
    optimizer steps taken, so test accuracy tells which snapshot was restored. Up to
    STEPS_PER_CALL steps run per call, their losses summed as TensorFlow's loop sums them."""

    STEPS_PER_CALL = 1

    def __init__(self, script, per_epoch, device_bytes=None, nan_at=None):
        self.script, self.per_epoch = list(script), per_epoch
        self.restored = None
        # a fake GPU: the data (5 MB) is allocated before the peak is reset, the model adds 3
        self.device_bytes = device_bytes
        self.nan_at = nan_at  # the optimizer step whose loss is NaN
        # device->host reads (each one a sync on a GPU) and host->device copies
        self.reads = self.syncs = self.uploads = 0
        self.lrs, self.calls = [], []  # each step's rate; steps per call
        self.eval_seconds = 0.0  # how long a validation pass takes
        self.peak = device_bytes or 0
        self.autotune_bytes = 0  # a one-off workspace at the first step (cuDNN autotuning)

    def setup(self, threads, device, seed, **settings):
        return {"device": "cpu", "device_name": "fake", "framework_version": "0"}

    def to_device(self, a):
        self.uploads += 1
        return a

    def batch_indices(self, order, batch):
        self.uploads += 1
        return list(order.reshape(-1, batch))

    def take(self, x, idx):
        return x[idx]

    def scalar(self, t):
        self.reads += 1
        return float(t)

    def sum_scalars(self, ts):
        self.reads += 1
        return float(np.sum(ts))

    def sync(self):
        self.syncs += 1

    def reset_peak_memory(self):
        self.peak = self.device_bytes

    def peak_memory(self):
        return None if self.device_bytes is None else max(self.peak, self.device_bytes)

    def allocate(self, n, keep=True):
        if self.device_bytes is not None:
            self.device_bytes += n
            self.peak = max(self.peak, self.device_bytes)
            if not keep:
                self.device_bytes -= n

    def is_oom(self, e):
        return False

    def build(self, spec):
        self.allocate(3 * 2**20)
        return {"steps": 0}

    def n_params(self, model):
        return 7

    def snapshot(self, model):
        return dict(model)

    def restore(self, model, state):
        self.restored = dict(state)
        model.update(state)

    def Trainer(self, model, spec):  # noqa: N802 - the contract's name
        backend, data = self, self.data

        class T:
            steps_per_call = backend.STEPS_PER_CALL

            def steps(self, x, y, order, start, lrs):
                assert 0 < len(lrs) <= self.steps_per_call and start + len(lrs) <= len(order)
                backend.calls.append(len(lrs))
                return [sum(self.step(x[order[start + j]], y[order[start + j]], lr)
                            for j, lr in enumerate(lrs))]

            def step(self, xb, yb, lr):
                backend.lrs.append(lr)
                model["steps"] += 1
                if model["steps"] == 1:
                    backend.allocate(backend.autotune_bytes, keep=False)
                return math.nan if model["steps"] == backend.nan_at else 1.0

            def evaluate(self, x, y, batch):
                if y is data.y_val:
                    time.sleep(backend.eval_seconds)
                    epoch = model["steps"] // backend.per_epoch
                    acc = backend.script[epoch - 1]
                    return (math.nan if math.isnan(acc) else 0.5), acc
                return 0.4, model["steps"] / 1000  # test / train subset: the weights' tag

            def infer(self, xb):
                backend.allocate(10 * 2**20)  # activations of the timing passes
                return xb

        return T()


def _data(n_train=64, n_val=20, n_test=30):
    rng = np.random.default_rng(0)

    def part(n):
        return rng.normal(size=(n, 40, 1)).astype(np.float32), rng.integers(0, 10, n)

    (xt, yt), (xv, yv), (xs, ys) = part(n_train), part(n_val), part(n_test)
    return Data("mnist1d", xt, yt, xv, yv, xs, ys)


def _run(script, device_bytes=None, n_train=64, nan_at=None, eval_seconds=0.0, autotune_mb=0,
         steps_per_call=1, **kw):
    data = _data(n_train=n_train)
    kw = {"warmup_steps": 0, "block_steps": 1, "batch_size": 16, **kw}
    spec = RunSpec.create(family="cnn", framework="torch", dataset="mnist1d", size="xs",
                          block_seconds=0.0, **kw)
    batch = n_train if kw["batch_size"] == "full" else kw["batch_size"]
    backend = FakeBackend(script, per_epoch=n_train // batch, device_bytes=device_bytes,
                          nan_at=nan_at)
    backend.STEPS_PER_CALL = steps_per_call
    backend.data = data
    backend.eval_seconds = eval_seconds
    backend.autotune_bytes = autotune_mb * 2**20
    return train.run(spec, data, SimpleNamespace(**{
        k: getattr(backend, k) for k in dir(backend) if not k.startswith("_")})), backend


def test_plateau_stops_and_tests_the_best_epochs_weights():
    # best raw epoch 4 (0.80); the 3-epoch mean last rises at epoch 5 (0.76); patience 3 ->
    # stop after epoch 8, before the late jump that a longer patience would have seen
    script = [0.3, 0.5, 0.7, 0.80, 0.78, 0.70, 0.70, 0.70, 0.9, 0.9]
    rec, backend = _run(script, epochs=10, patience=3, min_epochs=2)
    assert rec["status"] == "ok" and rec["converged"] is True
    assert rec["stop_reason"] == "plateau" and rec["epochs_run"] == 8
    assert rec["best_epoch"] == 4 and rec["best_val_acc"] == 0.80 == rec["val_acc"]
    # the weights after epoch 4 (16 steps), not those after epoch 8 (32 steps)
    assert backend.restored == {"steps": 16} and rec["test_acc"] == 0.016
    assert rec["samples_seen"] == 8 * 64 and [p["samples"] for p in rec["curve"]][:2] == [64, 128]
    assert rec["flops_spent"] == 3 * rec["flops_per_sample"] * 8 * 64


def test_a_run_still_improving_at_its_cap_is_not_converged():
    rec, _ = _run([0.1 * i for i in range(1, 7)], epochs=6, patience=3)
    assert rec["converged"] is False and rec["stop_reason"] == "cap"
    assert rec["epochs_run"] == 6 and rec["best_epoch"] == 6 and rec["test_acc"] == 0.024


def test_min_epochs_holds_a_flat_start():
    rec, _ = _run([0.5] * 12, epochs=12, patience=2, min_epochs=9)
    assert rec["epochs_run"] == 9 and rec["converged"] is True and rec["best_epoch"] == 1


def test_without_patience_every_epoch_runs():
    rec, _ = _run([0.5] * 5, epochs=5)
    assert rec["epochs_run"] == 5 and rec["converged"] is False


def test_wobble_below_min_delta_is_not_progress_but_a_steady_climb_is():
    # the raw best moves (0.6009 > 0.6) but the smoothed gain stays under MIN_DELTA
    rec, _ = _run([0.6, 0.6009] * 10, epochs=20, patience=4)
    assert rec["converged"] is True and rec["epochs_run"] == 5 and rec["best_epoch"] == 2
    # +0.0005 an epoch adds up past MIN_DELTA every few epochs: still improving at the cap
    rec, _ = _run([0.6 + 0.0005 * i for i in range(20)], epochs=20, patience=4)
    assert rec["converged"] is False and rec["epochs_run"] == 20


def test_model_memory_estimate_is_recorded_and_grows_with_size():
    rec, _ = _run([0.5] * 2, epochs=2)
    assert rec["model_mem_est_mb"] == memory_estimate_mb("cnn", "xs", "mnist1d", 16, "adam")
    assert rec["rss_start_mb"] > 0 and rec["peak_device_mem_mb"] is None
    # on a device, the data uploaded before the reset is not the model's, and the peak is
    # the training phase's: the inference timing after it (10 MB a pass) is not in it
    rec, backend = _run([0.5] * 2, device_bytes=5 * 2**20, epochs=2)
    assert rec["model_mem_mb"] == pytest.approx(3.0) and rec["peak_device_mem_mb"] == 8.0
    assert backend.device_bytes > 20 * 2**20
    est = [memory_estimate_mb("gru", s, "mnist1d", 64, "adam") for s in ("xs", "s", "m", "l")]
    assert est == sorted(est) and est[-1] > 20 * est[0]
    # weights, gradients and Adam's two moments: 4 floats of 4 bytes per parameter
    p = param_count("gru", "l", "mnist1d")
    assert memory_estimate_mb("gru", "l", "mnist1d", 1, "adam") > 16 * p / 2**20
    assert (memory_estimate_mb("gru", "l", "mnist1d", 64, "adam")
            - memory_estimate_mb("gru", "l", "mnist1d", 64, "sgd")) == pytest.approx(8 * p / 2**20)


def test_learning_rate_warmup_ramps_linearly_then_holds():
    s = RunSpec.create(family="cnn", framework="torch", dataset="mnist1d", size="xs", lr=1.0,
                       lr_warmup=4)
    assert [train.lr_at(s, i, 100) for i in range(6)] == pytest.approx([.25, .5, .75, 1, 1, 1])
    c = s.with_(lr_schedule="cosine")
    assert train.lr_at(c, 0, 100) == pytest.approx(0.25)  # warm-up scales the schedule


def test_a_falling_validation_loss_is_progress_for_translation_models():
    # exact match sits at 0 while the model learns words: with watch_loss (seq2seq) a new
    # lowest validation loss keeps the run going; without it, the flat accuracy stops it
    losses = [3.0, 2.5, 2.0, 1.6, 1.3, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1, 1.1]
    for watch, stops_after in ((False, 5), (True, 10)):
        stop = train.Plateau(patience=4, min_epochs=1, watch_loss=watch)
        stopped = None
        for epoch, loss in enumerate(losses, 1):
            stop.update(0.0, loss)
            if stop.converged:
                stopped = epoch
                break
        assert stopped == stops_after


def test_priming_the_runtime_trains_and_evaluates_on_a_few_rows_only(monkeypatch):
    seen = {}
    monkeypatch.setattr(train, "run", lambda spec, data, backend: seen.update(
        data.sizes(), steps=spec.max_steps, epochs=spec.epochs))
    spec = RunSpec.create(family="cnn", framework="torch", dataset="mnist1d", size="xs")
    train.prime_runtime(spec, _data(n_train=200, n_val=100, n_test=300), None)
    assert seen == {"n_train": 64, "n_val": 64, "n_test": 64, "steps": 3, "epochs": 1}


def test_the_host_reads_the_device_once_per_timed_block_not_once_per_step():
    # 2 epochs of 100 steps; warm-up 5 steps, blocks of 20. Reads: the first step, the end
    # of warm-up, each full block, each epoch's end: 13 for 200 steps (it was one a step).
    rec, backend = _run([0.5] * 2, n_train=1600, epochs=2, warmup_steps=5, block_steps=20)
    assert rec["steps_run"] == 200 and rec["throughput_blocks"] == 9
    assert backend.reads == 13
    # x and y of three splits, then one permutation per epoch: no indices cross per step
    assert backend.uploads == 6 + 2
    # the per-epoch loss is the mean over every step (the fake's loss is 1.0)
    assert [p["train_loss"] for p in rec["curve"]] == [1.0, 1.0]


def test_a_nan_loss_is_caught_at_the_end_of_its_segment():
    rec, backend = _run([0.5] * 2, n_train=1600, epochs=2, warmup_steps=5, block_steps=20,
                        nan_at=30)
    assert rec["status"] == "diverged"
    assert rec["message"] == "loss became nan in steps 26-45 (epoch 1)"
    assert rec["curve"] == []  # no epoch finished


def test_full_batch_takes_the_whole_split_each_step_without_indices():
    rec, backend = _run([0.5] * 3, epochs=3, batch_size="full")
    assert rec["batch_size_effective"] == 64 and rec["steps_run"] == 3
    assert backend.uploads == 6  # the splits; no permutation is needed


def test_validation_time_is_not_in_the_throughput():
    # 4 steps an epoch in microseconds, then 50 ms of validation: timed blocks see only steps
    rec, _ = _run([0.5] * 4, epochs=4, eval_seconds=0.05, block_steps=2)
    assert rec["timed_steps"] == 16 and rec["timed_seconds"] < 0.02
    assert rec["curve"][-1]["elapsed_s"] >= 4 * 0.05  # the wall clock does hold it


def test_max_steps_caps_the_run_mid_epoch():
    rec, backend = _run([0.1 * i for i in range(1, 11)], epochs=10, max_steps=10)
    assert rec["steps_run"] == 10 and rec["epochs_run"] == 3  # 4 + 4 + 2 steps
    assert rec["stop_reason"] == "cap" and rec["converged"] is False
    assert rec["samples_seen"] == 10 * 16


def test_nan_in_validation_is_divergence():
    rec, _ = _run([0.5, math.nan, 0.7], epochs=3)
    assert rec["status"] == "diverged"
    assert rec["message"] == "validation loss became nan after epoch 2"
    assert len(rec["curve"]) == 1


def test_a_first_steps_one_off_device_workspace_is_not_the_models_memory():
    # 5 MB of data, 3 MB of model, a 20 MB convolution-autotuning workspace at step 1
    rec, _ = _run([0.5] * 3, device_bytes=5 * 2**20, autotune_mb=20, epochs=3)
    assert rec["first_epoch_peak_device_mem_mb"] == 28.0
    assert rec["peak_device_mem_mb"] == 8.0 and rec["model_mem_mb"] == pytest.approx(3.0)
    # a one-epoch run has no later epoch to measure: its peak keeps the workspace
    rec, _ = _run([0.5], device_bytes=5 * 2**20, autotune_mb=20, epochs=1)
    assert rec["peak_device_mem_mb"] == 28.0 and "first_epoch_peak_device_mem_mb" not in rec


def test_steps_run_several_per_call_as_they_run_one_at_a_time():
    """A trainer that runs up to 3 steps per call (TensorFlow runs 32) trains the same steps
    at the same per-step rates, sums the same epoch loss, and still times its first step
    alone and ends its warm-up where one step per call would."""
    script = [0.3, 0.5, 0.7, 0.6, 0.6, 0.6]
    kw = dict(epochs=6, patience=3, min_epochs=2, lr_warmup=10, warmup_steps=4, block_steps=5,
              n_train=128)
    (one, b1), (three, b3) = _run(script, **kw), _run(script, steps_per_call=3, **kw)
    assert one["status"] == three["status"] == "ok" and one["steps_run"] == three["steps_run"]
    assert b3.lrs == b1.lrs and len(set(b1.lrs)) > 5  # the warm-up ramp, step by step
    assert [p["train_loss"] for p in three["curve"]] == [p["train_loss"] for p in one["curve"]]
    assert set(b1.calls) == {1} and max(b3.calls) == 3
    # first step alone, then 3 to the warm-up's end (4), then blocks of at least 5 steps
    assert b3.calls[:3] == [1, 3, 3] and three["steps_per_call"] == 3
    assert one["steps_per_call"] == 1
    assert three["timed_steps"] == one["timed_steps"]
