"""The Transformer classifier in PyTorch (bench.models.transformer.spec says what it
computes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ...registry import LAYERNORM_EPS
from ..torch_layers import (
    BatchNorm,
    Block,
    Model,
    linear_bindings,
    maybe_bn,
    norm_bindings,
    plain,
    positions,
)
from .spec import transformer_tokens

if TYPE_CHECKING:
    from ...spec import RunSpec


class Transformer(Model):
    """Embedding or projection + sinusoidal positions, pre-LN blocks, LN, mean pool, head."""

    def __init__(self, spec: RunSpec):
        super().__init__()
        info, s = spec.info, spec.arch
        if info.kind == "tokens":
            self.embed, self.proj, length = nn.Embedding(info.vocab, s.d_model), None, info.shape[0]
        else:
            length, feats = transformer_tokens(info)
            self.embed, self.proj = None, nn.Linear(feats, s.d_model)
        self.length = length
        self.register_buffer("pe", positions(length, s.d_model), persistent=False)
        self.blocks = nn.ModuleList(
            Block(s.d_model, s.heads, s.ff, spec.dropout) for _ in range(s.layers)
        )
        self.ln = nn.LayerNorm(s.d_model, eps=LAYERNORM_EPS)
        self.bn = maybe_bn(spec.batchnorm, s.d_model)
        self.drop = nn.Dropout(spec.dropout)
        self.head = nn.Linear(s.d_model, info.n_outputs)

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x)
        else:  # series in patches of consecutive steps, images row by row
            x = self.proj(x.reshape(len(x), self.length, -1))
        x = x + self.pe
        for block in self.blocks:
            x = block(x)
        x = self.ln(x).mean(1)
        return self.head(self.drop(self.bn(x)))

    def bindings(self):
        if self.embed is not None:
            out = [plain("embed", self.embed.weight)]
        else:
            out = linear_bindings("proj", self.proj)
        for i, block in enumerate(self.blocks):
            out += block.bindings(f"block{i}.")
        out += norm_bindings("ln", self.ln)
        if isinstance(self.bn, BatchNorm):
            out += norm_bindings("bn", self.bn)
        return out + linear_bindings("head", self.head)


def model(spec: RunSpec) -> Transformer:
    return Transformer(spec)
