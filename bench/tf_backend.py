"""TensorFlow 2 / Keras 3 backend: the contract of `bench.backend_api`.

Models are Keras functional models built from stock layers (plus a small pre-LN encoder
block); seq2seq is a subclassed Keras model, as its output layer reuses the embedding and
decoding calls its encoder and decoder apart. Training is a hand-written
`tf.GradientTape` step inside one `tf.function` (XLA only when `spec.compile`), so the L2
penalty, the decoupled weight decay and the learning rate given per step all mean exactly
what they mean in the torch backend.

Keras's own optimizers disagree with torch in three places, so the update rules of the
Keras optimizers used here are overridden to follow the one meaning in `bench.backend_api`:
Adam adds eps to sqrt(v_hat) (Keras adds it to sqrt(v), in torch's terms an eps of
eps / sqrt(1 - beta2^t), 32x larger at step 1), RMSprop adds eps outside the square root
(Keras: inside), and SGD momentum keeps v = m*v + g and scales by the current lr (Keras
folds lr into v, which differs as soon as the lr changes, i.e. under a schedule).
"""

from __future__ import annotations

import itertools
import math
import os

# Hide TF's INFO banner (oneDNN, CPU features); warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from .generate import DecodesThrough  # noqa: E402
from .init import init_weights  # noqa: E402
from .measure import cpu_name  # noqa: E402
from .registry import (  # noqa: E402
    ADAM_BETAS,
    BATCHNORM_EPS,
    BATCHNORM_MOMENTUM,
    DEVICES,
    EPSILON,
    LAYERNORM_EPS,
    RMSPROP_RHO,
    SpecError,
)
from .sizes import (  # noqa: E402
    Seq2SeqArch,
    cnn_geometry,
    seq2seq_arch,
    seq2seq_shapes,
    sinusoid,
    transformer_tokens,
    weight_shapes,
)
from .spec import RunSpec  # noqa: E402
from .text_pairs import PAD  # noqa: E402

NAME = "tf"

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


class PositionalEncoding(layers.Layer):
    """Adds the fixed sinusoidal encoding pe[pos, 2i] = sin(.), pe[pos, 2i+1] = cos(.)."""

    def __init__(self, length: int, d: int, **kw):
        super().__init__(**kw)
        angle = np.arange(length)[:, None] / 10000.0 ** (np.arange(0, d, 2) / d)
        pe = np.zeros((length, d), np.float32)
        pe[:, 0::2] = np.sin(angle)
        pe[:, 1::2] = np.cos(angle[:, : d // 2])
        self.pe = tf.constant(pe)

    def call(self, x):
        return x + tf.cast(self.pe, x.dtype)


class EncoderBlock(layers.Layer):
    """Pre-LN encoder block: x + Drop(Attn(LN1(x))), then x + Drop(FF(LN2(x)))."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float, seed: int, **kw):
        super().__init__(**kw)
        self.d, self.heads = d, heads
        self.ln1 = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln1")
        self.q, self.k, self.v, self.o = (layers.Dense(d, name=n) for n in "qkvo")
        self.ln2 = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln2")
        self.ff1 = layers.Dense(ff, activation="relu", name="ff1")
        self.ff2 = layers.Dense(d, name="ff2")
        self.drop = _dropout(dropout, seed) if dropout > 0 else None

    def build(self, input_shape):
        for ln in (self.ln1, self.ln2):
            ln.build(input_shape)
        for lin in (self.q, self.k, self.v, self.o, self.ff1):
            lin.build(input_shape)
        self.ff2.build((*input_shape[:-1], self.ff1.units))
        self.length = input_shape[1]

    def _split(self, t):
        # (B, L, d) -> (B, heads, L, d/heads)
        t = tf.reshape(t, (-1, self.length, self.heads, self.d // self.heads))
        return tf.transpose(t, (0, 2, 1, 3))

    def _attend(self, h):
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        scores = tf.matmul(q, k, transpose_b=True) * (1.0 / float(np.sqrt(self.d // self.heads)))
        a = tf.matmul(_softmax(scores), v)
        a = tf.reshape(tf.transpose(a, (0, 2, 1, 3)), (-1, self.length, self.d))
        return self.o(a)

    def _dropped(self, t, training):
        return self.drop(t, training=training) if self.drop is not None else t

    def call(self, x, training=None):
        x = x + self._dropped(self._attend(self.ln1(x)), training)
        return x + self._dropped(self.ff2(self.ff1(self.ln2(x))), training)


def _dropout(rate: float, seed: int) -> layers.Dropout:
    """A Dropout layer whose seed variable lives on the host: the GPU kernel that turns it
    into a mask reads it in host memory, so a seed on the GPU would make the host wait for
    the device at every step."""
    with tf.device("/CPU:0"):
        return layers.Dropout(rate, seed=seed)


def _softmax(scores, bias=None):
    """Softmax over keys in fp32 whatever the compute dtype, as torch autocast does."""
    p = tf.cast(scores, tf.float32)
    p = tf.nn.softmax(p if bias is None else p + bias, axis=-1)
    return tf.cast(p, scores.dtype)


def _batchnorm(name: str):
    return layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPS, name=name)


def _dropper(spec: RunSpec):
    """x -> Dropout(spec.dropout)(x), each layer seeded from the spec (identity at rate 0).

    Own seeds make a model's dropout masks a function of the spec alone, whatever else
    drew from Keras's global generator before.
    """
    seeds = itertools.count(spec.seed * 1000 + 1)

    def drop(x):
        return _dropout(spec.dropout, next(seeds))(x) if spec.dropout > 0 else x

    return drop


def _as_sequence(spec: RunSpec, x):
    """Images are read row by row: (H, W, C) -> H steps of W*C features."""
    if spec.info.kind == "image":
        h, w, c = spec.info.shape
        return layers.Reshape((h, w * c))(x)
    return x


def _cnn(spec: RunSpec, x, drop):
    a, info = spec.arch, spec.info
    shape = info.shape
    if info.kind == "tokens":
        x = layers.Embedding(info.vocab, a.embed, name="embed")(x)
        shape = (shape[0], a.embed)
    pad = cnn_geometry(shape)[0]
    if len(shape) == 3:
        conv, pool = layers.Conv2D, layers.MaxPooling2D
    else:
        conv, pool = layers.Conv1D, layers.MaxPooling1D
    for i, filters in ((1, a.c1), (2, a.c2)):
        if spec.batchnorm:
            x = conv(filters, 3, padding=pad, name=f"conv{i}")(x)
            x = layers.ReLU()(_batchnorm(f"bn{i}")(x))
        else:
            x = conv(filters, 3, padding=pad, activation="relu", name=f"conv{i}")(x)
        x = pool(2)(x)
    x = drop(layers.Flatten()(x))
    return drop(layers.Dense(a.dense, activation="relu", name="dense")(x))


def _rnn(spec: RunSpec, x, drop):
    a, info = spec.arch, spec.info
    if info.kind == "tokens":
        x = layers.Embedding(info.vocab, a.embed, name="embed")(x)
    x = _as_sequence(spec, x)
    for i in range(a.layers):
        last = i == a.layers - 1
        # bf16 keeps recurrent layers in fp32, as in torch (whose CUDA autocast would run
        # cuDNN's RNN in fp16)
        kw = {"dtype": "float32"} if spec.precision == "bf16" else {}
        if spec.family == "lstm":
            rnn = layers.LSTM(a.hidden, return_sequences=not last, name=f"rnn{i}", **kw)
        else:
            rnn = layers.GRU(a.hidden, reset_after=True, return_sequences=not last,
                             name=f"rnn{i}", **kw)
        x = rnn(x)
        if not last:
            x = drop(x)
    if spec.batchnorm:
        x = _batchnorm("bn")(x)
    return drop(x)


def _transformer(spec: RunSpec, x, drop):
    a, info = spec.arch, spec.info
    if info.kind == "tokens":
        x = layers.Embedding(info.vocab, a.d_model, name="embed")(x)
    else:
        x = layers.Dense(a.d_model, name="proj")(layers.Reshape(transformer_tokens(info))(x))
    x = PositionalEncoding(x.shape[1], a.d_model)(x)
    for i in range(a.layers):
        seed = spec.seed * 1000 + 500 + i
        x = EncoderBlock(a.d_model, a.heads, a.ff, spec.dropout, seed, name=f"block{i}")(x)
    x = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln")(x)
    x = layers.GlobalAveragePooling1D()(x)
    if spec.batchnorm:
        x = _batchnorm("bn")(x)
    return drop(x)


# ---------------------------------------------------------------------------- seq2seq


# Masked keys get -inf as in torch's SDPA with a boolean mask: softmax gives them exactly 0
# and their gradient is 0 (a fully masked row would be NaN in both; no sentence is empty).
def _key_bias(src, pad: int = PAD):
    """Additive score bias (n, 1, 1, L): -inf at PAD source keys, 0 at real ones."""
    return tf.where(tf.equal(src, pad), -np.inf, 0.0)[:, None, None, :]


def _causal_bias(length):
    """(L, L): query t sees keys <= t."""
    keep = tf.linalg.band_part(tf.ones((length, length)), -1, 0)
    return tf.where(keep > 0, 0.0, -np.inf)


class Seq2SeqBlock(layers.Layer):
    """Encoder layer, or with `cross` a decoder layer (causal self-attention, then
    cross-attention over the encoder output as xq/xk/xv/xo under ln2, then FF under ln3);
    pre-LN, or post-LN (Marian) with the norm after each residual sum.

    Works on flat (n * L, d) activations so that every projection is one 2-D matmul
    (Keras's Dense on 3-D input goes through tensordot's reshapes); only attention sees
    (n, heads, L, d/heads).
    """

    def __init__(self, d, heads, ff, dropout, seed, cross=False, post_ln=False,
                 activation="relu", **kw):
        super().__init__(**kw)
        self.d, self.heads, self.cross, self.post_ln = d, heads, cross, post_ln
        self.scale = 1.0 / math.sqrt(d // heads)
        self.ln1 = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln1")
        self.q, self.k, self.v, self.o = (layers.Dense(d, name=n) for n in "qkvo")
        self.ln2 = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln2")
        norms, linears = [self.ln1, self.ln2], [self.q, self.k, self.v, self.o]
        if cross:
            self.xq, self.xk, self.xv, self.xo = (layers.Dense(d, name="x" + n) for n in "qkvo")
            self.ln3 = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="ln3")
            norms.append(self.ln3)
            linears += [self.xq, self.xk, self.xv, self.xo]
        self.ff1 = layers.Dense(ff, activation=activation, name="ff1")
        self.ff2 = layers.Dense(d, name="ff2")
        self.drop = _dropout(dropout, seed) if dropout > 0 else None
        for layer in norms + linears + [self.ff1]:
            layer.build((None, d))
        self.ff2.build((None, ff))
        self.built = True

    def _split(self, t, n, length):
        """(n * length, d) -> (n, heads, length, d / heads)."""
        dh = self.d // self.heads
        return tf.transpose(tf.reshape(t, (n, length, self.heads, dh)), (0, 2, 1, 3))

    def _kv(self, prefix, kv, n, length):
        """Keys and values, split into heads, of flat rows kv (n * length, d)."""
        k, v = getattr(self, prefix + "k"), getattr(self, prefix + "v")
        return self._split(k(kv), n, length), self._split(v(kv), n, length)

    def cross_kv(self, memory, n, length):
        return self._kv("x", memory, n, length)

    def _attend(self, prefix, y, k, v, n, lq, bias):
        """Heads of queries y (n*lq, d) over split keys and values k, v."""
        q, o = getattr(self, prefix + "q"), getattr(self, prefix + "o")
        scores = tf.matmul(self._split(q(y) * self.scale, n, lq), k, transpose_b=True)
        a = tf.matmul(_softmax(scores, bias), v)
        return o(tf.reshape(tf.transpose(a, (0, 2, 1, 3)), (n * lq, self.d)))

    def _residual(self, x, branch, norm, training):
        if self.post_ln:
            return norm(x + self._dropped(branch(x), training))
        return x + self._dropped(branch(norm(x)), training)

    def _dropped(self, t, training):
        return self.drop(t, training=training) if self.drop is not None else t

    def _ff(self, x):
        return self.ff2(self.ff1(x))

    def forward(self, x, n, length, bias, memory=None, mem_len=None, mem_bias=None,
                training=False, cache=None):
        """x (n*length, d); decoder layers also take the flat memory (n*mem_len, d), or
        with `cache` = (past keys, past values, cross keys, cross values) one position
        per row (length 1), and then return (x, (keys, values)) with this position's
        keys and values added."""
        new = []

        def self_attention(h):
            k, v = self._kv("", h, n, length)
            if cache is not None:
                k, v = tf.concat([cache[0], k], 2), tf.concat([cache[1], v], 2)
                new.extend((k, v))
            return self._attend("", h, k, v, n, length, bias)

        def cross_attention(h):
            k, v = cache[2:] if cache is not None else self.cross_kv(memory, n, mem_len)
            return self._attend("x", h, k, v, n, length, mem_bias)

        x = self._residual(x, self_attention, self.ln1, training)
        if self.cross:
            x = self._residual(x, cross_attention, self.ln2, training)
        x = self._residual(x, self._ff, self.ln3 if self.cross else self.ln2, training)
        return x if cache is None else (x, tuple(new))


class TiedOutput(layers.Layer):
    """Logits h @ E^T + bias, E the embedding shared with the inputs (its only weight is
    the bias: E stays the Embedding layer's)."""

    def __init__(self, vocab: int, **kw):
        super().__init__(**kw)
        self.bias = self.add_weight(shape=(vocab,), initializer="zeros", name="bias")
        self.built = True

    def call(self, h, table, table_t=None):
        """`table_t`, E^T laid out (d, vocab), where a caller keeps one: oneDNN's matmul
        with transpose_b copies E on every call, 12x the product's own time at
        opus-mt's 59,514 x 512 (measured here: 386 ms against 31 ms for 4 rows)."""
        if table_t is not None:
            return tf.matmul(h, tf.cast(table_t, h.dtype)) + self.bias
        return tf.matmul(h, tf.cast(table, h.dtype), transpose_b=True) + self.bias


class Seq2SeqNet(keras.Model):
    """Encoder-decoder Transformer of a Seq2SeqArch, the torch backend's Seq2Seq: one
    embedding for source, target and output, scaled by sqrt(d) before the sinusoidal
    positions; source padding masked in the encoder and in cross-attention; causal
    decoder self-attention; pre-LN with final norms, or post-LN (Marian) without."""

    def __init__(self, arch: Seq2SeqArch, dropout: float = 0.0, seed: int = 0,
                 name: str = "seq2seq"):
        super().__init__(name=name)
        d, base = arch.d_model, seed * 1000
        self.arch, self.d, self.vocab = arch, d, arch.vocab
        self.embed_scale = math.sqrt(d)
        self.embed = layers.Embedding(arch.vocab, d, name="embed")
        self.embed.build((None,))
        # torch extends its table on demand; a graph cannot, so the table is long enough
        # for any sentence this benchmark decodes (and a checkpoint's own limit).
        self.pe = tf.constant(sinusoid(max(512, arch.max_positions), d, arch.positions))
        kw = {"post_ln": arch.post_ln, "activation": arch.activation}
        self.enc = [Seq2SeqBlock(d, arch.heads, arch.ff, dropout, base + 500 + i,
                                 name=f"enc{i}", **kw) for i in range(arch.enc_layers)]
        self.dec = [Seq2SeqBlock(d, arch.heads, arch.ff, dropout, base + 700 + i, cross=True,
                                 name=f"dec{i}", **kw) for i in range(arch.dec_layers)]
        self.enc_ln = self.dec_ln = None
        if arch.final_ln:
            self.enc_ln = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="enc_ln")
            self.dec_ln = layers.LayerNormalization(epsilon=LAYERNORM_EPS, name="dec_ln")
            for ln in (self.enc_ln, self.dec_ln):
                ln.build((None, d))
        self.head = TiedOutput(arch.vocab, name="head")
        self.drops = [_dropout(dropout, base + k) if dropout > 0 else None
                      for k in (1, 2)]  # source, target embeddings
        self.built = True

    def _embed(self, ids, which, training, start=0):
        n, length = tf.shape(ids)[0], tf.shape(ids)[1]
        pe = self.pe[start : start + length]
        x = tf.gather(self.embed.embeddings, ids) * self.embed_scale + pe
        x = tf.cast(tf.reshape(x, (n * length, self.d)), self.compute_dtype)
        drop = self.drops[which]
        return (drop(x, training=training) if drop is not None else x), n, length

    @staticmethod
    def _norm(ln, x):
        return x if ln is None else ln(x)

    def encode(self, src, training=False):
        """(encoder output (n, L, d), key bias (n, 1, 1, L))."""
        bias = _key_bias(src, self.arch.pad)
        x, n, length = self._embed(src, 0, training)
        for block in self.enc:
            x = block.forward(x, n, length, bias, training=training)
        return tf.reshape(self._norm(self.enc_ln, x), (n, length, self.d)), bias

    def _logits(self, x, table_t=None):
        return self.head(self._norm(self.dec_ln, x), self.embed.embeddings, table_t)

    def decode(self, tgt_in, memory, mem_bias, training=False, last_only=False,
               table_t=None):
        """Flat logits (n * T, vocab) of every target position, teacher-forced on tgt_in;
        with `last_only`, (n, vocab) of the last position (decoding needs no other)."""
        x, n, length = self._embed(tgt_in, 1, training)
        mem_len = tf.shape(memory)[1]
        flat = tf.reshape(memory, (-1, self.d))
        causal = _causal_bias(length)
        for block in self.dec:
            x = block.forward(x, n, length, causal, flat, mem_len, mem_bias, training=training)
        if last_only:
            x = tf.reshape(x, (n, length, self.d))[:, -1]
        return self._logits(x, table_t)

    def cross_kv(self, memory):
        """Every decoder layer's cross-attention keys and values over `memory`."""
        n, length = tf.shape(memory)[0], tf.shape(memory)[1]
        flat = tf.reshape(memory, (-1, self.d))
        return [block.cross_kv(flat, n, length) for block in self.dec]

    def decode_step(self, last, mem_bias, caches, table_t=None):
        """Logits (n, vocab) after one more token `last` (n, 1), and each layer's keys
        and values with it; `caches` holds per layer (keys, values, cross keys, cross
        values), the self-attention ones of the earlier positions."""
        x, n, _ = self._embed(last, 1, False, start=tf.shape(caches[0][0])[2])
        grown = []
        for block, cache in zip(self.dec, caches, strict=True):
            x, kv = block.forward(x, n, 1, None, mem_bias=mem_bias, cache=cache)
            grown.append(kv)
        return self._logits(x, table_t), grown

    def logits(self, src, tgt_in, training=False):
        return self.decode(tgt_in, *self.encode(src, training), training=training)

    def call(self, inputs, training=False):
        src, tgt_in = inputs
        out = self.logits(src, tgt_in, training)
        return tf.reshape(out, (tf.shape(tgt_in)[0], tf.shape(tgt_in)[1], self.vocab))


_BODIES = {"cnn": _cnn, "lstm": _rnn, "gru": _rnn, "transformer": _transformer}
_LEAVES = {"embed": "embeddings"}  # canonical leaf name -> Keras attribute


class Model:
    """A Keras model plus its trainable variables in canonical (sizes.weight_shapes) order."""

    frozen = False  # see seq2seq_model

    def __init__(self, net: keras.Model, names: list[str]):
        self.net = net
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


def _input_dtype(spec: RunSpec):
    return tf.int64 if spec.info.kind in ("tokens", "text") else tf.float32


_POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def build(spec: RunSpec) -> Model:
    """The Keras model for `spec`, initialised from bench.init.init_weights(spec).

    Mixed precision is Keras's mixed dtype policy for the model's layers (fp32 variables,
    bf16/fp16 compute); the policy is global in Keras, so it is set only while building."""
    info = spec.info
    keras.config.set_dtype_policy(_POLICIES[spec.precision])
    try:
        with tf.device(_STATE["tf_device"]):
            if spec.family == "seq2seq":
                net = Seq2SeqNet(seq2seq_arch(spec.size, spec.dataset), spec.dropout,
                                 spec.seed, name=f"seq2seq_{spec.size}")
            else:
                inputs = keras.Input(shape=info.shape, dtype=_input_dtype(spec).name)
                x = _BODIES[spec.family](spec, inputs, _dropper(spec))
                logits = layers.Dense(info.n_outputs, name="head")(x)
                net = keras.Model(inputs, logits, name=f"{spec.family}_{spec.size}")
    finally:
        keras.config.set_dtype_policy("float32")
    names = weight_shapes(spec.family, spec.size, spec.dataset, spec.batchnorm)
    model = Model(net, [n for n, _ in names])
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


def batch_indices(order: np.ndarray, batch: int) -> list[tf.Tensor]:
    """`order` cut into batches of `batch` row indices: one upload and one unstack, as
    indexing a tensor per step costs tens of microseconds of Python."""
    with tf.device(_STATE["tf_device"]):
        return tf.unstack(tf.reshape(to_device(order), (-1, batch)))


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


# ---------------------------------------------------------------------------- optimizers


def _dense(gradient):
    # Embedding gradients arrive as IndexedSlices; torch updates every row (momentum and
    # second moments decay for rows absent from the batch too), so update densely as well.
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


class Adam(keras.optimizers.Adam):
    """Keras Adam with torch's eps placement: p -= lr * m_hat / (sqrt(v_hat) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        g = tf.cast(_dense(gradient), dtype)
        b1, b2 = self.beta_1, self.beta_2
        # Bias corrections in float64 like torch's python floats: 1 - 0.999**t in float32
        # loses four digits to cancellation early in training.
        t = tf.cast(self.iterations + 1, tf.float64)
        bc1 = 1 - tf.pow(tf.constant(b1, tf.float64), t)
        bc2 = 1 - tf.pow(tf.constant(b2, tf.float64), t)
        step_size = tf.cast(tf.cast(learning_rate, tf.float64) / bc1, dtype)
        bc2_sqrt = tf.cast(tf.sqrt(bc2), dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, (g - m) * (1 - b1))
        self.assign_add(v, (tf.square(g) - v) * (1 - b2))
        self.assign_sub(variable, step_size * m / (tf.sqrt(v) / bc2_sqrt + self.epsilon))


class RMSprop(keras.optimizers.RMSprop):
    """Keras RMSprop with torch's eps placement: p -= lr * g / (sqrt(v) + eps)."""

    def update_step(self, gradient, variable, learning_rate):
        g = tf.cast(_dense(gradient), variable.dtype)
        lr = tf.cast(learning_rate, variable.dtype)
        v = self._velocities[self._get_variable_index(variable)]
        self.assign(v, self.rho * v + (1 - self.rho) * tf.square(g))
        self.assign_sub(variable, lr * g / (tf.sqrt(v) + self.epsilon))


class SGD(keras.optimizers.SGD):
    """SGD; with momentum torch's form v = m*v + g, p -= lr*v (nesterov: lr*(g + m*v))."""

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum:
            return super().update_step(gradient, variable, learning_rate)
        g = tf.cast(_dense(gradient), variable.dtype)
        lr = tf.cast(learning_rate, variable.dtype)
        v = self.momentums[self._get_variable_index(variable)]
        self.assign(v, self.momentum * v + g)
        step = g + self.momentum * v if self.nesterov else v
        self.assign_sub(variable, lr * step)


def _optimizer(spec: RunSpec) -> keras.optimizers.Optimizer:
    lr = float(spec.lr)
    if spec.optimizer in ("adam", "adamw"):  # adamw's decay is applied by the Trainer
        b1, b2 = ADAM_BETAS
        return Adam(learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=EPSILON)
    if spec.optimizer == "rmsprop":
        return RMSprop(learning_rate=lr, rho=RMSPROP_RHO, epsilon=EPSILON)
    momentum = 0.9 if spec.optimizer in ("momentum", "nesterov") else 0.0
    return SGD(learning_rate=lr, momentum=momentum, nesterov=spec.optimizer == "nesterov")


# ---------------------------------------------------------------------------- training


class Trainer(DecodesThrough):
    """Owns the optimizer and the compiled train/eval functions of one model."""

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
        x_sig = tf.TensorSpec((None, *spec.info.shape), _input_dtype(spec))
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
        if self._seq2seq:
            fns = [self._step, *self._seq2seq_functions(x_sig, y_sig)]
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
            fns = [self._step, self._infer, self._predict]
        for fn in fns:
            # Each Trainer traces its functions once (its variables are new); TF's warning
            # about frequent retracing, keyed by source code, would fire on every fifth.
            fn._omit_frequent_tracing_warning = True

    def _seq2seq_functions(self, x_sig, y_sig):
        self._logits = tf.function(self._teacher_forced, input_signature=[x_sig, y_sig])
        self._eval_s2s = tf.function(self._seq2seq_eval_batch, input_signature=[x_sig, y_sig])
        self.decoder = Decoder(self.model)  # generation, for bench.generate
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


class Decoder:
    """bench.generate's three calls over a Seq2SeqNet, a trained run's or a pretrained
    Marian's, as graph functions (None batch and length dimensions: one trace each).

    A state is (encoder output, key bias, caches). With a cache, the encoder output is
    only needed once, for every decoder layer's cross-attention keys and values, and is
    dropped; each layer's (keys, values, cross keys, cross values) then grows by one
    position per step.
    """

    def __init__(self, model: Model):
        net, arch = model.net, model.net.arch
        self.start, self.eos, self.pad = arch.start, arch.eos, arch.pad
        dh = arch.d_model // arch.heads
        ids = tf.TensorSpec((None, None), tf.int64)
        memory = tf.TensorSpec((None, None, arch.d_model), net.compute_dtype)
        bias = tf.TensorSpec((None, 1, 1, None), tf.float32)
        heads = tf.TensorSpec((None, arch.heads, None, dh), net.compute_dtype)
        caches = [(heads,) * 4] * arch.dec_layers
        table_t = tf.TensorSpec((arch.d_model, arch.vocab), net.compute_dtype)

        def full(memory, bias, prefix, table_t):
            return _logprobs(net.decode(prefix, memory, bias, last_only=True,
                                        table_t=table_t))

        def step(last, bias, caches, table_t):
            logits, grown = net.decode_step(last, bias, caches, table_t)
            return _logprobs(logits), grown

        mask = tf.TensorSpec((arch.vocab,), tf.float32)
        k = tf.TensorSpec((), tf.int32)

        def full_top(memory, bias, prefix, table_t, mask, k):
            return _top(net.decode(prefix, memory, bias, last_only=True, table_t=table_t),
                        mask, k)

        def step_top(last, bias, caches, table_t, mask, k):
            logits, grown = net.decode_step(last, bias, caches, table_t)
            return _top(logits, mask, k), grown

        self._net = net
        self._encode = tf.function(net.encode, input_signature=[ids])
        self._cross = tf.function(net.cross_kv, input_signature=[memory])
        self._full = tf.function(full, input_signature=[memory, bias, ids, table_t])
        self._step = tf.function(step, input_signature=[ids, bias, caches, table_t])
        self._full_top = tf.function(full_top,
                                     input_signature=[memory, bias, ids, table_t, mask, k])
        self._step_top = tf.function(step_top,
                                     input_signature=[ids, bias, caches, table_t, mask, k])
        self._table_t, self._frozen = None, model.frozen
        self._vocab = arch.vocab
        self._empty = (0, arch.heads, 0, dh)  # a layer's keys before the first step
        for fn in (self._encode, self._cross, self._full, self._step, self._full_top,
                   self._step_top):
            fn._omit_frequent_tracing_warning = True

    def encode(self, src, cache: bool = True):
        # the output layer's E^T, laid out apart (see TiedOutput) in the compute dtype (so
        # bf16 casts it once, not every step): once for a pretrained model, once per call
        # of generate for a trainer's, whose weights change between
        if self._table_t is None or not self._frozen:
            with tf.device(_STATE["tf_device"]):
                self._table_t = tf.cast(tf.transpose(self._net.embed.embeddings),
                                        self._net.compute_dtype)
        memory, bias = self._encode(_on_device(src))
        if not cache:
            return memory, bias, None
        n = tf.shape(memory)[0]
        empty = tf.zeros((n, *self._empty[1:]), memory.dtype)
        return None, bias, [(empty, empty, k, v) for k, v in self._cross(memory)]

    @staticmethod
    def tile(state, idx: np.ndarray):
        memory, bias, caches = state
        return (None if memory is None else take(memory, idx), take(bias, idx),
                None if caches is None else [tuple(take(t, idx) for t in c) for c in caches])

    @staticmethod
    def _check_step(caches, prefix: np.ndarray) -> None:
        past = int(caches[0][0].shape[2])
        if prefix.shape[1] != past + 1:  # a caller that skipped or repeated a step
            raise ValueError(f"cache holds {past} positions; prefix has {prefix.shape[1]}, "
                             "not one more")

    def next_logprobs(self, state, prefix: np.ndarray) -> np.ndarray:
        """Log-probabilities (M, vocab) of the token after each prefix row; with a cache,
        the state's caches grow by this position (the state is updated in place)."""
        memory, bias, caches = state
        if caches is None:
            return self._full(memory, bias, _on_device(prefix), self._table_t).numpy()
        self._check_step(caches, prefix)
        logp, grown = self._step(_on_device(prefix[:, -1:]), bias, caches, self._table_t)
        caches[:] = [(k, v, *c[2:]) for (k, v), c in zip(grown, caches, strict=True)]
        return logp.numpy()

    def next_top(self, state, prefix: np.ndarray, k: int, banned=(),
                 normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """The k most likely tokens after each prefix row, best first: (log-probabilities,
        ids), each (M, k), ranked in the graph with the `banned` ids at -inf after the
        softmax, so that only (M, k) leave it (as in the torch backend; always
        normalised here, which greedy decoding does not need but costs little beside the
        output layer)."""
        memory, bias, caches = state
        mask = np.zeros(self._vocab, np.float32)
        mask[list(banned)] = -np.inf
        args = (self._table_t, tf.constant(mask), tf.constant(min(k, self._vocab), tf.int32))
        if caches is None:
            vals, ids = self._full_top(memory, bias, _on_device(prefix), *args)
        else:
            self._check_step(caches, prefix)
            (vals, ids), grown = self._step_top(_on_device(prefix[:, -1:]), bias, caches,
                                                *args)
            caches[:] = [(keys, values, *c[2:])
                         for (keys, values), c in zip(grown, caches, strict=True)]
        return vals.numpy(), ids.numpy().astype(np.int64)


def _logprobs(logits):
    return tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)


def _top(logits, mask, k):
    """The k best of each row's log-softmax after `mask` (0, or -inf at banned ids)."""
    logits = tf.cast(logits, tf.float32)
    vals, ids = tf.math.top_k(logits + mask, k)
    return vals - tf.reduce_logsumexp(logits, axis=-1, keepdims=True), ids


def seq2seq_model(arch: Seq2SeqArch, weights: list[np.ndarray],
                  precision: str = "fp32") -> Model:
    """A Seq2SeqNet of `arch` holding `weights` (canonical, bench.sizes.seq2seq_shapes):
    a pretrained model to decode with, under the precision's Keras policy (see build)."""
    keras.config.set_dtype_policy(_POLICIES[precision])
    try:
        with tf.device(_STATE["tf_device"]):
            net = Seq2SeqNet(arch)
    finally:
        keras.config.set_dtype_policy("float32")
    model = Model(net, [n for n, _ in seq2seq_shapes(arch)])
    set_weights(model, weights)
    model.frozen = True  # nothing trains it: a Decoder may keep tensors derived from it
    return model


def _on_device(a):
    return a if isinstance(a, tf.Tensor) else to_device(a)
