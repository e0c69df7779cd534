"""The encoder-decoder in Keras, the benchmark's seq2seq and a pretrained Marian alike
(bench.models.seq2seq.spec says what it computes), with the key/value cache and the Decoder
that bench.translation.generate drives."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ...registry import LAYERNORM_EPS
from ...translation.text_pairs import PAD
from ..common import sinusoid
from ..tf_layers import seeded_dropout, softmax_fp32
from .spec import Seq2SeqArch, seq2seq_arch

if TYPE_CHECKING:
    from ...spec import RunSpec


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
        self.drop = seeded_dropout(dropout, seed) if dropout > 0 else None
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
        a = tf.matmul(softmax_fp32(scores, bias), v)
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
        self.drops = [seeded_dropout(dropout, base + k) if dropout > 0 else None
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


class Decoder:
    """bench.translation.generate's three calls over a Seq2SeqNet, a trained run's or a pretrained
    Marian's, as graph functions (None batch and length dimensions: one trace each).

    A state is (encoder output, key bias, caches). With a cache, the encoder output is
    only needed once, for every decoder layer's cross-attention keys and values, and is
    dropped; each layer's (keys, values, cross keys, cross values) then grows by one
    position per step.
    """

    def __init__(self, model):
        net, arch = model.net, model.net.arch
        self.device = model.device
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
            with tf.device(self.device):
                self._table_t = tf.cast(tf.transpose(self._net.embed.embeddings),
                                        self._net.compute_dtype)
        memory, bias = self._encode(self._on_device(src))
        if not cache:
            return memory, bias, None
        n = tf.shape(memory)[0]
        empty = tf.zeros((n, *self._empty[1:]), memory.dtype)
        return None, bias, [(empty, empty, k, v) for k, v in self._cross(memory)]

    def _on_device(self, ids) -> tf.Tensor:
        if isinstance(ids, tf.Tensor):
            return ids
        with tf.device(self.device):
            return tf.identity(tf.convert_to_tensor(np.asarray(ids, np.int64)))

    def tile(self, state, idx: np.ndarray):
        memory, bias, caches = state

        def take(t):
            with tf.device(self.device):
                return tf.gather(t, idx)

        return (None if memory is None else take(memory), take(bias),
                None if caches is None else [tuple(take(t) for t in c) for c in caches])

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
            return self._full(memory, bias, self._on_device(prefix), self._table_t).numpy()
        self._check_step(caches, prefix)
        logp, grown = self._step(self._on_device(prefix[:, -1:]), bias, caches, self._table_t)
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
            vals, ids = self._full_top(memory, bias, self._on_device(prefix), *args)
        else:
            self._check_step(caches, prefix)
            (vals, ids), grown = self._step_top(self._on_device(prefix[:, -1:]), bias, caches,
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


def model(spec: RunSpec) -> Seq2SeqNet:
    return Seq2SeqNet(seq2seq_arch(spec.size, spec.dataset), spec.dropout, spec.seed,
                      name=f"seq2seq_{spec.size}")
