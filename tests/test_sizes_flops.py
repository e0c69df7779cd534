"""bench.sizes.flops_per_sample against what torch's FlopCounterMode counts in the torch
backend's models (imports torch only).

FlopCounterMode counts 2 x multiply-adds of matmuls and convolutions (mm, addmm, bmm,
convolution, and the attention kernels it has formulas for), as the formula does: biases,
embedding lookups, activations, normalisation, pooling, softmax, masks and positions are in
neither. Two CPU kernels are invisible to it: nn.LSTM's fused oneDNN kernel (only the head
is counted) and scaled_dot_product_attention's CPU kernel (the attention matmuls are
missing). The test turns both off, so that LSTM runs as per-step matmuls and attention as
bmm, and then every family's count must equal the formula exactly (tolerance 0).
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from backend_reference import fake_data  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench import torch_backend as backend  # noqa: E402
from bench.registry import CLASSIFIERS  # noqa: E402
from bench.sizes import flops_per_sample  # noqa: E402
from bench.spec import RunSpec  # noqa: E402

# Every classifier on every input kind, the 2-D 'valid' CNN (mnist's shape) and the
# article's CNN, batch norm where it sits, two layers of each recurrent cell, and seq2seq.
CASES = [(f, "xs", d, False) for f in CLASSIFIERS for d in ("mnist1d", "digits", "tokens")]
CASES += [("cnn", "xs", "mnist", False), ("cnn", "article", "mnist", False),
          ("cnn", "xs", "digits", True), ("transformer", "xs", "tokens", True),
          ("lstm", "m", "tokens", True), ("gru", "m", "mnist1d", False),
          ("transformer", "s", "digits", False),
          ("seq2seq", "xs", "en_fr_numbers", False), ("seq2seq", "m", "en_fr_numbers", False)]
N = 3


@pytest.fixture(autouse=True)
def _setup():
    backend.setup(1, "cpu", 0)


def counted_flops(spec: RunSpec) -> dict[str, int]:
    """Forward FLOPs per sample of the torch model for `spec`, by aten op, in eval mode,
    with the two kernels the counter cannot see replaced by ones it can."""
    model = backend.build(spec).eval()
    x, y = (torch.as_tensor(a) for a in fake_data(spec, N))
    inputs = (x, y[:, :-1]) if spec.family == "seq2seq" else (x,)
    with warnings.catch_warnings():
        # mkldnn.flags() also resets oneDNN's TF32 switch, which warns on CPU-only builds
        warnings.filterwarnings("ignore", message="TF32 acceleration")
        with (torch.no_grad(), torch.backends.mkldnn.flags(enabled=False),
              sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter):
            model(*inputs)
    total = counter.get_flop_counts()["Global"]
    assert all(v % N == 0 for v in total.values())
    return {str(op): v // N for op, v in total.items()}


@pytest.mark.parametrize("family,size,dataset,batchnorm", CASES,
                         ids=[f"{f}-{s}-{d}{'-bn' * bn}" for f, s, d, bn in CASES])
def test_flops_per_sample_is_what_torch_counts(family, size, dataset, batchnorm):
    spec = RunSpec.create(family=family, framework="torch", dataset=dataset, size=size,
                          batchnorm=batchnorm)
    counts = counted_flops(spec)
    assert sum(counts.values()) == flops_per_sample(family, size, dataset), counts
    # the recurrences and attention were seen, not just the dense layers around them
    if family in ("lstm", "gru"):
        assert counts.get("aten.mm", 0) > 0, counts
    if family in ("transformer", "seq2seq"):
        assert counts.get("aten.bmm", 0) > 0, counts
