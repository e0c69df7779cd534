"""The CNN in Keras (bench.models.cnn.spec says what it computes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import keras
from keras import layers

from ..tf_layers import batchnorm, classifier
from .spec import cnn_geometry

if TYPE_CHECKING:
    from ...spec import RunSpec


def body(spec: RunSpec, x, drop):
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
            x = layers.ReLU()(batchnorm(f"bn{i}")(x))
        else:
            x = conv(filters, 3, padding=pad, activation="relu", name=f"conv{i}")(x)
        x = pool(2)(x)
    x = drop(layers.Flatten()(x))
    return drop(layers.Dense(a.dense, activation="relu", name="dense")(x))


def model(spec: RunSpec) -> keras.Model:
    return classifier(spec, body)
