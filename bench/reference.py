"""Reference training loops, written the way each framework's own tutorial writes them.

The anchor `python -m bench speed --reference` measures the benchmark's backends against:
the same architectures as `bench.torch_backend` / `bench.tf_backend` (the widths of
`bench.sizes`, the same layer order, batch 64, Adam, softmax cross-entropy on logits), but
built straight from `torch.nn` and `keras.layers` and trained by

- torch: `loss = F.cross_entropy(model(x), y); opt.zero_grad(); loss.backward();
  opt.step()` with a plain `torch.optim.Adam`, the model optionally `torch.compile`d;
- Keras: `model.compile(optimizer=Adam(), loss=..., jit_compile=False | True)` then
  `model.train_on_batch(x, y)`: tf.function graph mode, or XLA.

Nothing here imports the backends, and each framework is imported inside the functions
that use it, so a process (one `bench speed` cell) imports only the one it times.
The only process settings are the thread counts (intra-op `threads`, inter-op 1); the
backends' own CPU tuning (glibc's malloc thresholds,
libgomp's spin count, channels-last 2-D convolutions, fused Adam) is what `ours` adds.

Covered: the article CNN on 28x28x1 and size `m` of cnn, lstm, gru and transformer on
MNIST-1D. Not seq2seq: a faithful encoder-decoder (shared embedding as output layer,
masks, teacher forcing, the token loss) would repeat most of the backends' seq2seq code,
and a tutorial's `nn.Transformer` differs in layout and work.

Run alone, it is also the minimal reproduction of torch.compile's CPU speed, outside the
benchmark: `python -m bench.reference --framework torch --family cnn --size m`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

from .models.cnn.spec import cnn_geometry
from .models.common import sinusoid
from .models.transformer.spec import transformer_tokens
from .registry import DATASETS
from .sizes import SIZES

BATCH = 64
LR = 1e-3
# (family, size, dataset) with a reference; seq2seq has none (see the module doc)
MODELS = [("cnn", "article", "mnist")] + [(f, "m", "mnist1d")
                                       for f in ("cnn", "lstm", "gru", "transformer")]


def covers(family: str, size: str, dataset: str) -> bool:
    """Whether a reference exists for this model: the families here, any size and a
    classification dataset of images or series."""
    return family in ("cnn", "lstm", "gru", "transformer") and size in SIZES[family] and (
        DATASETS[dataset].kind in ("image", "series"))


def _time(step, sync, batches, steps: int, warmup: int) -> dict:
    """The first step alone (compilation), warm-up to `warmup` steps, then three blocks of
    `steps` steps; samples/s is the median block. Mirrors bench.measure.BlockTimer."""
    n = len(batches)
    t = time.perf_counter()
    sync(step(*batches[0]))
    first = time.perf_counter() - t
    t = time.perf_counter()
    out = None
    for i in range(1, warmup):
        out = step(*batches[i % n])
    if out is not None:
        sync(out)
    warm = first + time.perf_counter() - t
    rates, i = [], warmup
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            out = step(*batches[i % n])
            i += 1
        sync(out)
        rates.append(steps * BATCH / (time.perf_counter() - t))
    return {"train_samples_per_s": statistics.median(rates), "first_step_s": first,
            "warmup_s": warm}


# ---------------------------------------------------------------------------- torch


def torch_model(family: str, size: str, dataset: str):
    """The benchmark's architecture in plain torch.nn (NCHW / NCL for convolutions)."""
    import torch
    from torch import nn

    info, a = DATASETS[dataset], SIZES[family][size]
    n_out = info.n_outputs
    if family == "cnn":
        image = len(info.shape) == 3
        conv, pool = (nn.Conv2d, nn.MaxPool2d) if image else (nn.Conv1d, nn.MaxPool1d)
        pad, dims = cnn_geometry(info.shape)
        p = 1 if pad == "same" else 0
        flat = math.prod(d[3] for d in dims) * a.c2
        return nn.Sequential(
            conv(info.shape[-1], a.c1, 3, padding=p), nn.ReLU(), pool(2),
            conv(a.c1, a.c2, 3, padding=p), nn.ReLU(), pool(2),
            nn.Flatten(), nn.Linear(flat, a.dense), nn.ReLU(), nn.Linear(a.dense, n_out))
    if family in ("lstm", "gru"):
        cell = nn.LSTM if family == "lstm" else nn.GRU

        class Recurrent(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = cell(math.prod(info.shape[1:]), a.hidden, a.layers,
                                batch_first=True)
                self.head = nn.Linear(a.hidden, n_out)

            def forward(self, x):
                out, _ = self.rnn(x.flatten(2))
                return self.head(out[:, -1])

        return Recurrent()
    length, feats = transformer_tokens(info)

    class Transformer(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(feats, a.d_model)
            self.register_buffer("pe", torch.from_numpy(sinusoid(length, a.d_model)))
            layer = nn.TransformerEncoderLayer(a.d_model, a.heads, a.ff, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, a.layers, enable_nested_tensor=False)
            self.ln = nn.LayerNorm(a.d_model)
            self.head = nn.Linear(a.d_model, n_out)

        def forward(self, x):
            x = self.proj(x.reshape(len(x), length, feats)) + self.pe
            return self.head(self.ln(self.encoder(x)).mean(1))

    return Transformer()


def run_torch(family, size, dataset, x, y, compiled: bool, steps: int, warmup: int = 10,
              threads: int = 1, device: str = "cpu") -> dict:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    torch.manual_seed(0)
    model = torch_model(family, size, dataset).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    forward = torch.compile(model) if compiled else model
    x = torch.as_tensor(np.asarray(x, np.float32), device=device)
    if family == "cnn":  # channels first, as torch's convolutions expect
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.transpose(1, 2)
        x = x.contiguous()
    y = torch.as_tensor(np.asarray(y, np.int64), device=device)
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(y) - BATCH + 1, BATCH)]
    model.train()

    def step(xb, yb):
        loss = F.cross_entropy(forward(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return _time(step, lambda loss: loss.item(), batches, steps, warmup)


# ---------------------------------------------------------------------------- Keras


def keras_model(family: str, size: str, dataset: str):
    """The benchmark's architecture as a Keras functional model (channels-last)."""
    import keras
    from keras import layers

    info, a = DATASETS[dataset], SIZES[family][size]
    inputs = keras.Input(info.shape)
    if family == "cnn":
        image = len(info.shape) == 3
        conv, pool = ((layers.Conv2D, layers.MaxPooling2D) if image else
                      (layers.Conv1D, layers.MaxPooling1D))
        pad = cnn_geometry(info.shape)[0]
        x = pool(2)(conv(a.c1, 3, padding=pad, activation="relu")(inputs))
        x = pool(2)(conv(a.c2, 3, padding=pad, activation="relu")(x))
        x = layers.Dense(a.dense, activation="relu")(layers.Flatten()(x))
    elif family in ("lstm", "gru"):
        x = inputs
        if len(info.shape) == 3:
            x = layers.Reshape((info.shape[0], -1))(x)
        for i in range(a.layers):
            seq = i < a.layers - 1
            x = (layers.LSTM(a.hidden, return_sequences=seq) if family == "lstm" else
                 layers.GRU(a.hidden, return_sequences=seq))(x)
    else:
        length, feats = transformer_tokens(info)
        x = layers.Dense(a.d_model)(layers.Reshape((length, feats))(inputs))
        x = x + sinusoid(length, a.d_model)
        for _ in range(a.layers):
            h = layers.LayerNormalization()(x)
            x = x + layers.MultiHeadAttention(a.heads, a.d_model // a.heads)(h, h)
            h = layers.LayerNormalization()(x)
            x = x + layers.Dense(a.d_model)(layers.Dense(a.ff, activation="relu")(h))
        x = layers.GlobalAveragePooling1D()(layers.LayerNormalization()(x))
    return keras.Model(inputs, layers.Dense(info.n_outputs)(x))


def run_keras(family, size, dataset, x, y, compiled: bool, steps: int, warmup: int = 10,
              threads: int = 1) -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    model = keras_model(family, size, dataset)
    model.compile(optimizer=keras.optimizers.Adam(LR),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=compiled)
    x = tf.constant(np.asarray(x, np.float32))
    y = tf.constant(np.asarray(y, np.int64))
    batches = [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(y) - BATCH + 1, BATCH)]
    # train_on_batch returns the loss as a numpy float: it has waited for the step already
    return _time(model.train_on_batch, lambda loss: loss, batches, steps, warmup)


def run(framework: str, family: str, size: str, dataset: str, x, y, compiled: bool,
        steps: int, warmup: int = 10, threads: int = 1, device: str = "cpu") -> dict:
    """Train the reference on (x, y) in batches of 64; its samples/s, first-step and
    warm-up seconds."""
    if framework == "torch":
        return run_torch(family, size, dataset, x, y, compiled, steps, warmup, threads, device)
    return run_keras(family, size, dataset, x, y, compiled, steps, warmup, threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reference",
                                description="a tutorial-style training loop's samples/s, "
                                            "eager and compiled, one framework")
    p.add_argument("--framework", default="torch", choices=("torch", "tf"))
    p.add_argument("--family", default="cnn")
    p.add_argument("--size", default="m")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--modes", default="eager,compiled")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    info = DATASETS[a.dataset]
    rng = np.random.default_rng(0)
    n = BATCH * (10 + 3 * a.steps)
    x = rng.random((n, *info.shape), dtype=np.float32)
    y = rng.integers(0, info.n_classes, size=n)
    for mode in a.modes.split(","):
        got = run(a.framework, a.family, a.size, a.dataset, x, y, mode == "compiled",
                  a.steps, threads=a.threads)
        print(json.dumps({"framework": a.framework, "mode": mode,
                          "model": f"{a.family}/{a.size}/{a.dataset}", **got}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
