"""LSTM and GRU in PyTorch (bench.models.rnn.spec says what they compute)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..torch_layers import (
    BatchNorm,
    Binding,
    Model,
    linear_bindings,
    maybe_bn,
    norm_bindings,
    plain,
    to_tensor,
)

if TYPE_CHECKING:
    from ...spec import RunSpec


class RNN(Model):
    """Stacked LSTM or GRU, last hidden state, [BN], dropout, head.

    Images are read row by row (H steps of W*C features). Dropout also acts between layers.
    """

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        self.cell = spec.family
        self.embed = nn.Embedding(info.vocab, s.embed) if info.kind == "tokens" else None
        fin = s.embed if info.kind == "tokens" else math.prod(info.shape[1:])
        rnn = nn.LSTM if spec.family == "lstm" else nn.GRU
        self.rnn = rnn(fin, s.hidden, s.layers, batch_first=True,
                       dropout=spec.dropout if s.layers > 1 else 0.0)
        self.hidden, self.layers = s.hidden, s.layers
        if spec.family == "lstm":  # Keras has one bias: keep torch's second at zero
            for i in range(s.layers):
                b = getattr(self.rnn, f"bias_hh_l{i}")
                nn.init.zeros_(b)
                b.requires_grad_(False)
        self.bn = maybe_bn(spec.batchnorm, s.hidden)
        self.drop = nn.Dropout(spec.dropout)
        self.head = nn.Linear(s.hidden, info.n_outputs)

    def forward(self, x):
        x = self.embed(x) if self.embed is not None else x.flatten(2)
        if torch.is_autocast_enabled(x.device.type) and (
                torch.get_autocast_dtype(x.device.type) == torch.bfloat16):
            # bf16 keeps recurrent layers in fp32, in both frameworks: CUDA autocast would
            # run cuDNN's RNN in fp16 whatever dtype was asked for (AutocastRNN.cpp)
            with torch.autocast(x.device.type, enabled=False):
                out, _ = self.rnn(x.float())
        else:
            out, _ = self.rnn(x)
        return self.head(self.drop(self.bn(out[:, -1])))

    def bindings(self):
        h = self.hidden
        if self.cell == "lstm":
            to_t = to_c = lambda a: a.T
        else:  # Keras z,r,h columns <-> torch r,z,n rows
            def to_t(a):
                return np.concatenate([a[..., h:2 * h], a[..., :h], a[..., 2 * h:]], -1).T

            def to_c(a):
                a = a.T
                return np.concatenate([a[..., h:2 * h], a[..., :h], a[..., 2 * h:]], -1)
        out = [plain("embed", self.embed.weight)] if self.embed is not None else []
        for i in range(self.layers):
            w = {k: getattr(self.rnn, f"{k}_l{i}") for k in ("weight_ih", "weight_hh",
                                                              "bias_ih", "bias_hh")}
            out.append(plain(f"rnn{i}.kernel", w["weight_ih"], to_t, to_c))
            out.append(plain(f"rnn{i}.recurrent_kernel", w["weight_hh"], to_t, to_c))
            if self.cell == "lstm":
                out.append(plain(f"rnn{i}.bias", w["bias_ih"]))
            else:
                out.append(self._gru_bias(f"rnn{i}.bias", w["bias_ih"], w["bias_hh"], to_t))
        if isinstance(self.bn, BatchNorm):
            out += norm_bindings("bn", self.bn)
        return out + linear_bindings("head", self.head)

    @staticmethod
    def _gru_bias(name, b_ih, b_hh, to_t):
        """Keras (2, 3h) rows [input, recurrent], columns z,r,h."""
        def put(a):
            with torch.no_grad():
                b_ih.copy_(to_tensor(to_t(a[0:1]))[:, 0])
                b_hh.copy_(to_tensor(to_t(a[1:2]))[:, 0])

        def get():
            both = torch.stack([b_ih, b_hh]).detach().cpu().numpy()
            h = both.shape[1] // 3
            return np.concatenate([both[:, h:2 * h], both[:, :h], both[:, 2 * h:]], 1)

        return Binding(name, [b_ih, b_hh], put, get)


def model(spec: RunSpec) -> RNN:
    return RNN(spec)
