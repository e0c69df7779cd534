"""TensorFlow 2 / Keras 3 backend: the contract of `bench.backend_api`.

The models live in their families' folders (bench/models/<family>/tf.py, shared pieces in
bench/models/tf_layers.py): Keras functional models built from stock layers (plus a small
pre-LN encoder block); seq2seq is a subclassed Keras model, as its output layer reuses the
embedding and decoding calls its encoder and decoder apart. Training is a hand-written
`tf.GradientTape` step inside one `tf.function` (XLA only when `spec.compile`), so the L2
penalty, the decoupled weight decay and the learning rate given per step all mean exactly
what they mean in the torch backend. Training runs up to STEPS_PER_CALL of those steps per
call, in a loop inside the graph: Keras's own `steps_per_execution`, which a Keras user
sets for small models, where calling the graph costs as much as a step.

The optimizers are Keras's, with the update rules torch's meaning needs (bench.tf_optimizers).
"""

from __future__ import annotations

import os

# Hide TF's INFO banner (oneDNN, CPU features); warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from . import models  # noqa: E402
from .init import init_weights  # noqa: E402
from .measure import cpu_name  # noqa: E402
from .models.seq2seq.spec import Seq2SeqArch, seq2seq_shapes  # noqa: E402
from .models.seq2seq.tf import Decoder, Seq2SeqNet  # noqa: E402
from .models.tf_layers import input_dtype  # noqa: E402
from .registry import (  # noqa: E402
    DEVICES,
    SpecError,
)
from .sizes import weight_shapes  # noqa: E402
from .spec import RunSpec  # noqa: E402
from .tf_optimizers import optimizer as _optimizer  # noqa: E402
from .translation.generate import DecodesThrough  # noqa: E402
from .translation.text_pairs import PAD  # noqa: E402

NAME = "tf"
# Steps per call into the graph in training. One call costs about a millisecond of Python
# and runtime, as much as a step of the default's small models: on a 2-core Xeon, 16-56
# steps per call trained them 1.2-3x faster than one (CNN xs 2.5-3.1x, Transformer s
# 1.4x; under XLA LSTM s 2.0x, LSTM m 1.2x).
STEPS_PER_CALL = 32

# Set by setup(): where split tensors live ("/GPU:0") and whether that is a GPU.
_STATE = {"device": "cpu", "tf_device": "/CPU:0"}


# ---------------------------------------------------------------------------- setup


def _set_threads(threads: int) -> None:
    cfg = tf.config.threading
    try:
        cfg.set_intra_op_parallelism_threads(threads)
        cfg.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TF refuses any change once its runtime has started; the same value is fine.
        current = cfg.get_intra_op_parallelism_threads(), cfg.get_inter_op_parallelism_threads()
        if current != (threads, 1):
            raise RuntimeError(
                f"TensorFlow threads already fixed at intra/inter {current} in this process; "
                f"cannot use {threads}/1: call setup() before any other TensorFlow work"
            ) from None


def setup(threads: int, device: str = "auto", seed: int = 0, tf32: bool = False,
          conv_autotune: bool = True) -> dict:
    """Pin threads, pick the device, seed Keras/TF/numpy/python, set the GPU math settings
    (bench.spec.RunSpec.tf32 / conv_autotune); call before other TF work."""
    if device not in DEVICES:
        raise SpecError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    # TF reads this when it builds a convolution kernel, so each run's model gets its own.
    os.environ["TF_CUDNN_USE_AUTOTUNE"] = "1" if conv_autotune else "0"
    _set_threads(threads)
    tf.config.experimental.enable_tensor_float_32_execution(tf32)
    gpus = tf.config.list_physical_devices("GPU")
    if device == "cuda" and not gpus:
        raise SpecError("device 'cuda' requested but no GPU is visible to tensorflow")
    use_gpu = bool(gpus) and device != "cpu"
    try:
        if use_gpu:
            for gpu in gpus:
                tf.config.experimental.set_memory_growth(gpu, True)
        elif gpus:
            # TF would place ops on a visible GPU even for a CPU run.
            tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        pass  # runtime already started by an earlier setup() in this process
    keras.utils.set_random_seed(seed)
    # No enable_op_determinism(): seeded CPU runs on a fixed thread count already repeat
    # bit for bit (checked across processes), while op determinism swaps in other kernels
    # and makes XLA refuse MaxPool gradients; on GPU it would also slow TF against torch.
    if use_gpu:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    else:
        name = cpu_name()
    _STATE.update(device="cuda" if use_gpu else "cpu", tf_device="/GPU:0" if use_gpu else "/CPU:0")
    return {"device": _STATE["device"], "device_name": name, "framework_version": tf.__version__}


# ---------------------------------------------------------------------------- models


_LEAVES = {"embed": "embeddings"}  # canonical leaf name -> Keras attribute


class Model:
    """A Keras model plus its trainable variables in canonical (sizes.weight_shapes) order."""

    frozen = False  # see seq2seq_model

    def __init__(self, net: keras.Model, names: list[str], device: str):
        self.net, self.device = net, device  # device: the tf.device() it was built under
        self.variables = [self._variable(name) for name in names]
        mine = {id(v) for v in self.variables}
        theirs = {id(v) for v in net.trainable_variables}
        if mine != theirs or len(mine) != len(self.variables):
            raise RuntimeError(f"{net.name}: canonical weight list differs from Keras's")

    def _variable(self, name: str):
        parts = name.split(".")
        obj = self.net.get_layer(parts[0])
        obj = getattr(obj, "cell", obj)  # LSTM/GRU keep their weights on the cell
        for part in parts[1:-1]:
            obj = getattr(obj, part)
        return getattr(obj, _LEAVES.get(parts[-1], parts[-1]))


_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def build(spec: RunSpec) -> Model:
    """The Keras model for `spec`, initialised from bench.init.init_weights(spec).

    Mixed precision is Keras's mixed dtype policy for the model's layers (fp32 variables,
    bf16/fp16 compute); the policy is global in Keras, so it is set only while building."""
    keras.config.set_dtype_policy(_POLICIES[spec.precision])
    try:
        with tf.device(_STATE["tf_device"]):
            net = models.framework_module(spec.family, "tf").model(spec)
    finally:
        keras.config.set_dtype_policy("float32")
    names = weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)
    model = Model(net, [n for n, _ in names], _STATE["tf_device"])
    set_weights(model, init_weights(spec))
    return model


def n_params(model: Model) -> int:
    """Trainable parameters, counted from Keras's own list (not the canonical one)."""
    return int(sum(np.prod(v.shape) for v in model.net.trainable_variables))


def get_weights(model: Model) -> list[np.ndarray]:
    """Trainable weights in canonical order; Keras layout is the canonical layout."""
    return [np.array(v.numpy()) for v in model.variables]


def set_weights(model: Model, weights: list[np.ndarray]) -> None:
    """Assign canonical-layout arrays to the model's trainable weights."""
    if len(weights) != len(model.variables):
        raise ValueError(f"expected {len(model.variables)} arrays, got {len(weights)}")
    for v, w in zip(model.variables, weights, strict=True):
        w = np.asarray(w, dtype=np.float32)
        if tuple(v.shape) != w.shape:
            raise ValueError(f"weight {v.path}: shape {w.shape} != {tuple(v.shape)}")
        v.assign(w)


# ---------------------------------------------------------------------------- data


def snapshot(model: Model) -> list[np.ndarray]:
    """A copy of every variable of the model (weights and batch-norm moving statistics)."""
    return [v.numpy().copy() for v in model.net.weights]


def restore(model: Model, state: list[np.ndarray]) -> None:
    for v, a in zip(model.net.weights, state, strict=True):
        v.assign(a)


def to_device(array: np.ndarray) -> tf.Tensor:
    """One whole split as a device tensor: floats float32, integers int64."""
    a = np.asarray(array)
    a = a.astype(np.int64 if np.issubdtype(a.dtype, np.integer) else np.float32, copy=False)
    with tf.device(_STATE["tf_device"]):
        return tf.identity(tf.convert_to_tensor(a))


def batch_indices(order: np.ndarray, batch: int) -> tf.Tensor:
    """`order` cut into batches of `batch` row indices, one row per batch, uploaded at once:
    Trainer.steps reads its batches' rows on the device (indexing a tensor from Python
    costs tens of microseconds a time)."""
    with tf.device(_STATE["tf_device"]):
        return tf.reshape(to_device(order), (-1, batch))


def _on_device(a):
    return a if isinstance(a, tf.Tensor) else to_device(a)


def take(tensor: tf.Tensor, idx: np.ndarray) -> tf.Tensor:
    """Rows `idx` of a device tensor, gathered on the device."""
    with tf.device(_STATE["tf_device"]):
        return tf.gather(tensor, idx)


def scalar(tensor) -> float:
    """Reads a device scalar (waits for it)."""
    return float(tensor.numpy())


def sum_scalars(ts: list) -> float:
    """The sum of device scalars as one read, after the queued device work has finished
    (the sum alone need not wait for the last step's weight update)."""
    total = ts[0] if len(ts) == 1 else tf.add_n(ts)
    sync()
    return scalar(total)


def sync() -> None:
    """Waits for queued device work (CPU eager ops are already synchronous)."""
    if _STATE["device"] == "cuda":
        tf.test.experimental.sync_devices()


def reset_peak_memory() -> None:
    """Starts a new device-memory peak (GPU only)."""
    if _STATE["device"] == "cuda":
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory() -> int | None:
    """Peak device bytes since reset_peak_memory(); None on CPU."""
    if _STATE["device"] == "cuda":
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
    return None


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` means the device or host ran out of memory."""
    if isinstance(exc, (tf.errors.ResourceExhaustedError, MemoryError)):
        return True
    if isinstance(exc, (RuntimeError, tf.errors.OpError)):
        text = str(exc).lower()
        return any(s in text for s in ("out of memory", "out_of_memory", "can't allocate memory"))
    return False


# ---------------------------------------------------------------------------- training


class Trainer(DecodesThrough):
    """Owns the optimizer and the compiled train/eval functions of one model."""

    steps_per_call = STEPS_PER_CALL

    def __init__(self, model: Model, spec: RunSpec):
        self.model, self.spec = model, spec
        self.net = model.net
        self._vars = list(self.net.trainable_variables)
        # Kernels, recurrent kernels and embeddings: the weights L2 and weight decay touch.
        self._decayed = [v for v in self._vars if len(v.shape) >= 2]
        self._binary = spec.info.n_outputs == 1
        self._seq2seq = spec.family == "seq2seq"
        with tf.device(_STATE["tf_device"]):
            self._inner = _optimizer(spec)
            # fp16: dynamic loss scaling (skips a step whose gradients overflowed)
            self.optimizer = (keras.optimizers.LossScaleOptimizer(self._inner)
                              if spec.precision == "fp16" else self._inner)
            self.optimizer.build(self._vars)
        x_sig = tf.TensorSpec((None, *spec.info.shape), input_dtype(spec))
        y_shape = (None, spec.info.target_len) if self._seq2seq else (None,)
        y_sig = tf.TensorSpec(y_shape, tf.int64)
        if spec.compile not in (False, True):  # bench.train resolves 'best' first
            raise SpecError(f"compile {spec.compile!r} reached the trainer unresolved")
        jit = bool(spec.compile)
        # A None batch dimension: every batch size (full batch, partial last batch) shares a trace.
        self._step = tf.function(
            self._train_step,
            input_signature=[x_sig, y_sig, tf.TensorSpec((), tf.float32)],
            jit_compile=jit,
        )
        # Fixed shapes but the training set's: XLA compiles the loop once per run.
        self._steps = tf.function(
            self._train_steps,
            input_signature=[x_sig, y_sig, tf.TensorSpec((None, None), tf.int64),
                             tf.TensorSpec((), tf.int32), tf.TensorSpec((), tf.int32),
                             tf.TensorSpec((STEPS_PER_CALL,), tf.float32)],
            jit_compile=jit,
        )
        if self._seq2seq:
            fns = [self._step, self._steps, *self._seq2seq_functions(x_sig, y_sig)]
        else:
            # One graph-mode forward trace serves evaluation, prediction and (without XLA)
            # the inference timing: a Keras trace costs up to half a second per run, and
            # evaluation in XLA would compile once per distinct batch shape (full and last
            # partial batch).
            self._predict = tf.function(self._forward, input_signature=[x_sig])
            self._infer = (
                tf.function(self._forward, input_signature=[x_sig], jit_compile=True)
                if jit else self._predict
            )
            fns = [self._step, self._steps, self._infer, self._predict]
        for fn in fns:
            # Each Trainer traces its functions once (its variables are new); TF's warning
            # about frequent retracing, keyed by source code, would fire on every fifth.
            fn._omit_frequent_tracing_warning = True

    def _seq2seq_functions(self, x_sig, y_sig):
        self._logits = tf.function(self._teacher_forced, input_signature=[x_sig, y_sig])
        self._eval_s2s = tf.function(self._seq2seq_eval_batch, input_signature=[x_sig, y_sig])
        self.decoder = Decoder(self.model)  # generation, for bench.translation.generate
        return self._logits, self._eval_s2s

    def _data_loss(self, y, logits, reduce=tf.reduce_mean):
        logits = tf.cast(logits, tf.float32)
        if self._binary:
            per = tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.cast(y, logits.dtype), logits=logits[:, 0]
            )
        else:
            per = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        return reduce(per)

    @staticmethod
    def _token_loss(labels, logits, smoothing: float = 0.0):
        """(summed cross-entropy, count) over the non-PAD labels; logits flat (n*T, vocab).

        Smoothing as torch's label_smoothing: the target is (1 - eps) one-hot + eps / vocab
        on every entry, PAD included, so with -log p_j = lse - z_j the loss is
        lse - (1 - eps) z_label - eps mean_j z_j. PAD labels count in neither sum.
        """
        labels = tf.reshape(labels, (-1,))
        logits = tf.cast(logits, tf.float32)
        real = tf.cast(tf.not_equal(labels, PAD), logits.dtype)
        # 2x faster than sparse_softmax_cross_entropy_with_logits's CPU kernel, forward
        # and backward, at this task's (n*T, 62) logits
        picked = tf.gather(logits, labels, batch_dims=1)
        per = tf.reduce_logsumexp(logits, axis=-1)
        if smoothing:
            per -= (1.0 - smoothing) * picked + smoothing * tf.reduce_mean(logits, axis=-1)
        else:
            per -= picked
        return tf.reduce_sum(per * real), tf.reduce_sum(real)

    def _train_step(self, x, y, lr):
        self._inner.learning_rate.assign(lr)
        with tf.GradientTape() as tape:
            if self._seq2seq:  # teacher forcing: predict y[:, 1:] from y[:, :-1]
                logits = self.net.logits(x, y[:, :-1], training=True)
                total, count = self._token_loss(y[:, 1:], logits, self.spec.label_smoothing)
                loss = total / count
            else:
                loss = self._data_loss(y, self.net(x, training=True))
            if self.spec.l2 > 0:
                penalty = tf.add_n([tf.reduce_sum(tf.square(w)) for w in self._decayed])
                loss = loss + self.spec.l2 * penalty
            # fp16: the scaled loss, which the LossScaleOptimizer unscales the gradients of
            scaled = self.optimizer.scale_loss(loss) if self.spec.precision == "fp16" else loss
        grads = tape.gradient(scaled, self._vars)
        if self.spec.weight_decay > 0:
            # Decoupled decay on the pre-update weights, before the optimizer (torch AdamW order);
            # automatic control dependencies keep it after the forward pass's reads.
            for w in self._decayed:
                w.assign_sub(lr * self.spec.weight_decay * w)
        self.optimizer.apply(grads, self._vars)
        return loss

    def _train_steps(self, x, y, order, start, k, lrs):
        def body(j, total):
            idx = tf.gather(order, start + j)
            loss = self._train_step(tf.gather(x, idx), tf.gather(y, idx), tf.gather(lrs, j))
            return j + 1, total + tf.cast(loss, tf.float32)

        # An explicit while loop with a bound: XLA compiles it once, where autograph's
        # `for j in tf.range(k)` made k a compile-time constant (one compilation per k).
        _, total = tf.while_loop(lambda j, _: j < k, body,
                                 (tf.constant(0, tf.int32), tf.constant(0.0, tf.float32)),
                                 maximum_iterations=STEPS_PER_CALL)
        return total

    def _forward(self, x):
        return tf.cast(self.net(x, training=False), tf.float32)

    def _eval_batch(self, x, y):
        logits = self._predict(x)  # eager reductions on one batch of logits: microseconds
        if self._binary:
            pred = tf.cast(logits[:, 0] > 0, tf.int64)
        else:
            pred = tf.argmax(logits, axis=-1, output_type=tf.int64)
        correct = tf.reduce_sum(tf.cast(tf.equal(pred, y), tf.float32))
        return self._data_loss(y, logits, tf.reduce_sum), correct

    def _teacher_forced(self, x, y):
        logits = tf.cast(self.net.logits(x, y[:, :-1]), tf.float32)
        return tf.reshape(logits, (tf.shape(y)[0], tf.shape(y)[1] - 1, self.spec.info.vocab))

    def _seq2seq_eval_batch(self, x, y):
        """(summed token loss, tokens, exactly matched sentences) of one batch. A sentence
        matches when every label is the argmax after the true prefix: greedy decoding then
        reproduces it, so this is greedy's exact match at the cost of one forward."""
        labels = y[:, 1:]
        logits = tf.cast(self.net.logits(x, y[:, :-1]), tf.float32)
        total, count = self._token_loss(labels, logits)
        pred = tf.reshape(tf.argmax(logits, axis=-1, output_type=tf.int64), tf.shape(labels))
        hit = tf.reduce_all(tf.equal(pred, labels) | tf.equal(labels, PAD), axis=1)
        return (tf.cast(total, tf.float64), tf.cast(count, tf.int64),
                tf.reduce_sum(tf.cast(hit, tf.int64)))

    def step(self, xb, yb, lr: float) -> tf.Tensor:
        """One optimizer step at learning rate `lr`; the loss (data + L2) as a device scalar."""
        return self._step(xb, yb, tf.constant(lr, tf.float32))

    def steps(self, x, y, order, start: int, lrs) -> list[tf.Tensor]:
        """len(lrs) steps (at most steps_per_call) on the batches order[start:], in one call
        into the graph; their summed loss as a one-element list of device scalars."""
        k = len(lrs)
        if not 0 < k <= STEPS_PER_CALL or start + k > order.shape[0]:
            raise ValueError(f"{k} steps from batch {start} of {order.shape[0]}: 1 to "
                             f"{STEPS_PER_CALL} steps within the batches run")
        padded = np.zeros(STEPS_PER_CALL, np.float32)
        padded[:k] = lrs
        return [self._steps(x, y, order, tf.constant(start, tf.int32), tf.constant(k, tf.int32),
                            tf.constant(padded))]

    def evaluate(self, x, y, batch: int) -> tuple[float, float]:
        """Mean data loss and accuracy over (x, y) in eval mode, as python floats.

        seq2seq: cross-entropy per non-PAD target token and the share of sentences
        whose every token is the argmax given the true prefix (greedy's exact match).
        """
        x, y = _on_device(x), _on_device(y)
        n = int(x.shape[0])
        if n == 0:
            return float("nan"), float("nan")
        if self._seq2seq:
            parts = [self._eval_s2s(x[i : i + batch], y[i : i + batch])
                     for i in range(0, n, batch)]
            loss, tokens, exact = (scalar(tf.add_n(list(p))) for p in zip(*parts, strict=True))
            return loss / max(tokens, 1), exact / n
        loss = correct = 0.0
        for i in range(0, n, batch):
            bl, bc = self._eval_batch(x[i : i + batch], y[i : i + batch])
            loss, correct = loss + bl, correct + bc  # summed on the device, read once
        return scalar(loss) / n, scalar(correct) / n

    def predict(self, x, batch: int, y=None) -> np.ndarray:
        """Eval-mode logits for all of x; a seq2seq model's (N, T-1, vocab) for every
        target position, teacher-forced on `y`."""
        x = _on_device(x)
        n = int(x.shape[0])
        if self._seq2seq:
            if y is None:
                raise ValueError("seq2seq predict() needs the targets y to teacher-force on")
            y = _on_device(y)
            outs = [self._logits(x[i : i + batch], y[i : i + batch]).numpy()
                    for i in range(0, n, batch)]
        else:
            outs = [self._predict(x[i : i + batch]).numpy() for i in range(0, n, batch)]
        return np.concatenate(outs)

    def infer(self, xb) -> tf.Tensor:
        """One eval-mode forward pass (timing); classifiers only."""
        if self._seq2seq:
            raise SpecError("infer() times classifiers; seq2seq decodes through "
                            "encode() and next_logprobs()")
        return self._infer(xb)


def seq2seq_model(arch: Seq2SeqArch, weights: list[np.ndarray],
                  precision: str = "fp32") -> Model:
    """A Seq2SeqNet of `arch` holding `weights` (canonical: seq2seq_shapes):
    a pretrained model to decode with, under the precision's Keras policy (see build)."""
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        with tf.device(_STATE["tf_device"]):
            net = Seq2SeqNet(arch)
    finally:
        keras.config.set_dtype_policy("float32")
    model = Model(net, [n for n, _ in seq2seq_shapes(arch)], _STATE["tf_device"])
    set_weights(model, weights)
    model.frozen = True  # nothing trains it: a Decoder may keep tensors derived from it
    return model

