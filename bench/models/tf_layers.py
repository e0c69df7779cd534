"""Keras pieces more than one family builds from: seeded dropout, batch norm with the
benchmark's constants, an fp32 softmax, sinusoid positions, and the classifier frame
(input, a family's body, the head)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import keras
import tensorflow as tf
from keras import layers

from ..registry import BATCHNORM_EPS, BATCHNORM_MOMENTUM
from .common import sinusoid

if TYPE_CHECKING:
    from ..spec import RunSpec


class PositionalEncoding(layers.Layer):
    """Adds the fixed sinusoidal table (bench.models.common.sinusoid, torch's too)."""

    def __init__(self, length: int, d: int, **kw):
        super().__init__(**kw)
        self.pe = tf.constant(sinusoid(length, d))

    def call(self, x):
        return x + tf.cast(self.pe, x.dtype)


def seeded_dropout(rate: float, seed: int) -> layers.Dropout:
    """A Dropout layer whose seed variable lives on the host: the GPU kernel that turns it
    into a mask reads it in host memory, so a seed on the GPU would make the host wait for
    the device at every step."""
    with tf.device("/CPU:0"):
        return layers.Dropout(rate, seed=seed)


def softmax_fp32(scores, bias=None):
    """Softmax over keys in fp32 whatever the compute dtype, as torch autocast does."""
    p = tf.cast(scores, tf.float32)
    p = tf.nn.softmax(p if bias is None else p + bias, axis=-1)
    return tf.cast(p, scores.dtype)


def batchnorm(name: str):
    return layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, epsilon=BATCHNORM_EPS, name=name)


def dropper(spec: RunSpec):
    """x -> Dropout(spec.dropout)(x), each layer seeded from the spec (identity at rate 0).

    Own seeds make a model's dropout masks a function of the spec alone, whatever else
    drew from Keras's global generator before.
    """
    seeds = itertools.count(spec.seed * 1000 + 1)

    def drop(x):
        return seeded_dropout(spec.dropout, next(seeds))(x) if spec.dropout > 0 else x

    return drop


def input_dtype(spec: RunSpec):
    return tf.int64 if spec.info.kind in ("tokens", "text") else tf.float32


def classifier(spec: RunSpec, body) -> keras.Model:
    """Input -> `body(spec, x, drop)` -> Dense head, a Keras functional model."""
    inputs = keras.Input(shape=spec.info.shape, dtype=input_dtype(spec).name)
    x = body(spec, inputs, dropper(spec))
    logits = layers.Dense(spec.info.n_outputs, name="head")(x)
    return keras.Model(inputs, logits, name=f"{spec.family}_{spec.size}")
