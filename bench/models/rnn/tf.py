"""LSTM and GRU in Keras (bench.models.rnn.spec says what they compute)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from ..tf_layers import batchnorm, classifier

if TYPE_CHECKING:
    from ...spec import RunSpec


def _as_sequence(spec: RunSpec, x):
    """Images are read row by row: (H, W, C) -> H steps of W*C features."""
    if spec.info.kind == "image":
        h, w, c = spec.info.shape
        return layers.Reshape((h, w * c))(x)
    return x


def body(spec: RunSpec, x, drop):
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
        x = batchnorm("bn")(x)
    return drop(x)


def model(spec: RunSpec) -> keras.Model:
    return classifier(spec, body)
