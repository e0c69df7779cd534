"""The CNN in PyTorch (bench.models.cnn.spec says what it computes)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..torch_layers import (
    BatchNorm,
    Model,
    conv_bindings,
    linear_bindings,
    maybe_bn,
    norm_bindings,
    plain,
)
from .spec import cnn_geometry

if TYPE_CHECKING:
    from ...spec import RunSpec

# 2-D convolutions in channels-last layout (see CNN); False gives torch's default NCHW.
CHANNELS_LAST = True


class CNN(Model):
    """Conv-[BN]-ReLU-Pool twice, flatten (channels-last order), dense, head.

    Images use Conv2d and run channels-last: a (N, H, W, C) batch permuted to NCHW already
    has channels-last strides, and with channels-last weights oneDNN convolves it directly.
    In NCHW the first convolution (one input channel) computes in a blocked layout and
    reorders its whole output to NCHW and its gradient back, which costs more than the
    convolution itself. Series and tokens use Conv1d over the length axis.
    """

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        self.embed = None
        if info.kind == "tokens":
            self.embed = nn.Embedding(info.vocab, s.embed)
            shape = (info.shape[0], s.embed)
        else:
            shape = info.shape
        self.image = len(shape) == 3
        pad, dims = cnn_geometry(shape)
        conv = nn.Conv2d if self.image else nn.Conv1d
        padding = 1 if pad == "same" else 0
        self.conv1 = conv(shape[-1], s.c1, 3, padding=padding)
        self.conv2 = conv(s.c1, s.c2, 3, padding=padding)
        self.bn1, self.bn2 = maybe_bn(spec.batchnorm, s.c1), maybe_bn(spec.batchnorm, s.c2)
        self.pool = nn.MaxPool2d(2) if self.image else nn.MaxPool1d(2)
        self.dense = nn.Linear(math.prod(d[3] for d in dims) * s.c2, s.dense)
        self.head = nn.Linear(s.dense, info.n_outputs)
        self.drop = nn.Dropout(spec.dropout)
        self.channels_last = self.image and CHANNELS_LAST
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x)
        # channels to axis 1; channels-last strides stay as they are
        if self.image:
            x = x.permute(0, 3, 1, 2)
            if not self.channels_last:  # NCHW strides, also where C = 1 leaves them ambiguous
                x = x.clone(memory_format=torch.contiguous_format)
        else:
            x = x.transpose(1, 2)
        # relu(pool(h)) == pool(relu(h)) exactly, values and gradients (ReLU is monotone),
        # and the ReLU then touches a quarter of the elements: 15% faster on one thread.
        x = F.relu(self.pool(self.bn1(self.conv1(x))))
        x = F.relu(self.pool(self.bn2(self.conv2(x))))
        x = x.permute(0, 2, 3, 1) if self.image else x.transpose(1, 2)
        x = self.drop(x.flatten(1))
        x = self.drop(F.relu(self.dense(x)))
        return self.head(x)

    def bindings(self):
        out = [plain("embed", self.embed.weight)] if self.embed is not None else []
        for i, (c, bn) in enumerate(((self.conv1, self.bn1), (self.conv2, self.bn2)), 1):
            out += conv_bindings(f"conv{i}", c)
            if isinstance(bn, BatchNorm):
                out += norm_bindings(f"bn{i}", bn)
        return out + linear_bindings("dense", self.dense) + linear_bindings("head", self.head)



def model(spec: RunSpec) -> CNN:
    return CNN(spec)
