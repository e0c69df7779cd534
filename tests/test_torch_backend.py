"""What only the PyTorch backend has: its Keras-statistics batch norm and frozen LSTM bias,
its CPU tuning (channels-last convolutions, kept heap pages, OpenMP spinning, threads), a
`"full"` evaluation batch, and CPU kernels it lacks.

The contract both backends fulfil is tested once, in tests/test_backend.py. Imports torch
only (TensorFlow is compared in tests/test_parity.py, in its own process).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from backend_reference import fake_data, random_weights, reference_forward  # noqa: E402

from bench import torch_backend as backend  # noqa: E402
from bench.models import torch_layers  # noqa: E402
from bench.registry import BATCHNORM_EPS, BATCHNORM_MOMENTUM, SpecError  # noqa: E402
from bench.spec import RunSpec  # noqa: E402


@pytest.fixture(autouse=True)
def _setup():
    backend.setup(1, "cpu", 0)


def make_spec(family="cnn", dataset="digits", size="xs", **kw) -> RunSpec:
    return RunSpec.create(family=family, framework="torch", dataset=dataset, size=size, **kw)


def test_lstm_second_bias_stays_zero_and_frozen():
    spec = make_spec("lstm", "tokens", "m", optimizer="adam", lr=0.1, weight_decay=0.1)
    model = backend.build(spec)
    trainer = backend.Trainer(model, spec)
    x, y = fake_data(spec, 16)
    for _ in range(2):
        trainer.step(backend.to_device(x), backend.to_device(y), 0.1)
    for i in range(spec.arch.layers):
        b = getattr(model.rnn, f"bias_hh_l{i}")
        assert not b.requires_grad and not b.any()


def test_batchnorm_keeps_keras_statistics():
    """Biased batch variance in the normalisation and in the running average."""
    bn = torch_layers.BatchNorm(3)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    y = bn(x)
    xs = x.double().numpy()
    mean, var = xs.mean((0, 2, 3)), xs.var((0, 2, 3))
    want = (xs - mean[:, None, None]) / np.sqrt(var[:, None, None] + BATCHNORM_EPS)
    np.testing.assert_allclose(y.detach().numpy(), want, atol=1e-5)
    keep = BATCHNORM_MOMENTUM
    np.testing.assert_allclose(bn.running_mean.numpy(), (1 - keep) * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), keep + (1 - keep) * var, rtol=1e-5)
    bn.eval()
    np.testing.assert_allclose(
        bn(x).detach().numpy(),
        (xs - bn.running_mean.numpy()[:, None, None])
        / np.sqrt(bn.running_var.numpy()[:, None, None] + BATCHNORM_EPS),
        atol=1e-5,
    )


def test_evaluate_takes_the_whole_set_as_one_batch():
    """torch's evaluate also takes batch "full" (the contract asks for an int)."""
    spec = make_spec("cnn", "tokens", dropout=0.2)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 37)
    xd, yd = backend.to_device(x), backend.to_device(y)
    trainer.step(xd, yd, 1e-3)
    assert trainer.evaluate(xd, yd, "full") == pytest.approx(trainer.evaluate(xd, yd, 16))


def test_setup_pins_threads_and_records_its_tuning():
    info = backend.setup(2, "cpu", 0)
    assert "channels_last_conv2d=True" in info["framework_tuning"]
    assert torch.get_num_threads() == 2 and torch.get_num_interop_threads() == 1
    backend.setup(1, "cpu", 0)
    assert torch.get_num_threads() == 1


def test_image_cnn_runs_channels_last():
    """The CPU speed default: NHWC batches feed channels-last convolutions, no reorders."""
    model = backend.build(make_spec("cnn", "mnist", "article"))
    for conv in (model.conv1, model.conv2):
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 28, 28, 1).permute(0, 3, 1, 2)
    assert x.is_contiguous(memory_format=torch.channels_last)
    # ...and gives what NCHW gives.
    spec = make_spec("cnn", "digits", "s")
    model = backend.build(spec)
    weights = random_weights(spec)
    backend.set_weights(model, weights)
    xs, _ = fake_data(spec, 4)
    np.testing.assert_allclose(backend.Trainer(model, spec).predict(xs, 4),
                               reference_forward(spec, weights, xs), atol=2e-4)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_training_steps_do_not_fault_pages_in():
    """setup() keeps freed activations in the heap: steady-state steps fault few pages.

    Without it the article's CNN faults in 2,000-5,000 pages per step (its activations
    are returned to the OS on free and faulted back in on the next step).
    """
    backend.setup(1, "cpu", 0)
    assert backend.cpu_tuning()["keep_freed_memory"] is True
    spec = make_spec("cnn", "mnist", "article")
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = fake_data(spec, 64)
    xd, yd = backend.to_device(x), backend.to_device(y)
    for _ in range(3):
        trainer.step(xd, yd, 1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        trainer.step(xd, yd, 1e-3)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5 < 200


def test_openmp_spin_default_and_user_override():
    """Imported first, the backend shortens libgomp's spin; a user's setting wins."""
    code = ("import os, bench.torch_backend as backend; "
            "print(os.environ.get('GOMP_SPINCOUNT'), backend.cpu_tuning()['omp_wait'])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}

    def run(**extra):
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, check=True,
                              capture_output=True, text=True, timeout=120).stdout.split()

    assert run() == ["1000", "GOMP_SPINCOUNT=1000"]
    assert run(OMP_WAIT_POLICY="ACTIVE") == ["None", "OMP_WAIT_POLICY=ACTIVE"]


def test_module_imports_no_tensorflow():
    code = ("import sys, bench.torch_backend; "
            "assert not {'tensorflow', 'keras'} & set(sys.modules), 'tf imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_fp16_lstm_fails_in_one_line_before_any_step():
    # oneDNN has no fp16 LSTM on a CPU: the Trainer says so before any step
    spec = make_spec("lstm", "mnist1d", precision="fp16")
    with pytest.raises(SpecError, match="precision fp16 is not supported by torch for lstm") as e:
        backend.Trainer(backend.build(spec), spec)
    assert "\n" not in str(e.value)
