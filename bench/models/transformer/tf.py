"""The Transformer classifier in Keras (bench.models.transformer.spec says what it
computes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from ...registry import LAYERNORM_EPS
from ..tf_layers import PositionalEncoding, batchnorm, classifier, seeded_dropout, softmax_fp32
from .spec import transformer_tokens

if TYPE_CHECKING:
    from ...spec import RunSpec


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
        self.drop = seeded_dropout(dropout, seed) if dropout > 0 else None

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
        a = tf.matmul(softmax_fp32(scores), v)
        a = tf.reshape(tf.transpose(a, (0, 2, 1, 3)), (-1, self.length, self.d))
        return self.o(a)

    def _dropped(self, t, training):
        return self.drop(t, training=training) if self.drop is not None else t

    def call(self, x, training=None):
        x = x + self._dropped(self._attend(self.ln1(x)), training)
        return x + self._dropped(self.ff2(self.ff1(self.ln2(x))), training)


def body(spec: RunSpec, x, drop):
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
        x = batchnorm("bn")(x)
    return drop(x)


def model(spec: RunSpec) -> keras.Model:
    return classifier(spec, body)
