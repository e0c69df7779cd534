"""The encoder-decoder translation model (the article's third example, `generate()`).
Its sizes, its architecture record (Seq2SeqArch) and the formulas on them.

Pre-LN encoder-decoder, one embedding tied across source, target and output; source padding
masked, decoder self-attention causal (seq2seq_shapes). The same networks, post-LN with
SiLU and Marian's position table, hold a pretrained Marian checkpoint (bench.translation.marian;
Seq2SeqArch says which).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import DATASETS, DatasetInfo
from ...translation.text_pairs import BOS, EOS, PAD
from ..common import Shapes, attention_shapes, feed_forward_shapes, norm_shapes


@dataclass(frozen=True)
class Seq2SeqSize:
    d_model: int
    heads: int
    enc_layers: int
    dec_layers: int
    ff: int


# `article` has the shape of the article's Marian model (opus-mt-en-fr): 6+6 layers,
# d_model 512, 8 heads, FFN 2048; with this task's 62-word vocabulary, not Marian's
# 59,514, it has 44.2M parameters instead of about 75M (the embedding is the difference).
SIZES = {
    "xs": Seq2SeqSize(16, 2, 1, 1, 32),
    "s": Seq2SeqSize(32, 2, 1, 1, 64),
    "m": Seq2SeqSize(64, 4, 2, 2, 128),
    "l": Seq2SeqSize(128, 4, 3, 3, 256),
    "xl": Seq2SeqSize(256, 8, 4, 4, 1024),
    "article": Seq2SeqSize(512, 8, 6, 6, 2048),
}


@dataclass(frozen=True)
class Seq2SeqArch:
    """Everything that fixes what an encoder-decoder computes, in both backends: the
    benchmark's own `seq2seq` (pre-LN, ReLU, interleaved positions, a final LayerNorm on
    each stack) and a pretrained Marian checkpoint (bench.translation.marian: post-LN, SiLU,
    positions as sines then cosines, no final LayerNorm). Both share one canonical weight list."""

    vocab: int
    d_model: int
    heads: int
    enc_layers: int
    dec_layers: int
    ff: int
    post_ln: bool = False  # LayerNorm after each residual add (BART/Marian), not before
    activation: str = "relu"  # the feed-forward's; "silu" is Marian's "swish"
    positions: str = "interleaved"  # sin/cos on even/odd features; "halves": sin | cos
    start: int = 1  # the token decoding starts from (Marian: its pad)
    eos: int = 2
    pad: int = 0
    max_positions: int = 0  # longest sentence the position table covers (0: any)

    @property
    def final_ln(self) -> bool:
        """Pre-LN stacks end in a LayerNorm; post-LN ones are normalised already."""
        return not self.post_ln


def _arch(s: Seq2SeqSize, info: DatasetInfo) -> Seq2SeqArch:
    return Seq2SeqArch(info.vocab, s.d_model, s.heads, s.enc_layers, s.dec_layers, s.ff,
                       start=BOS, eos=EOS, pad=PAD)


def seq2seq_arch(size: str, dataset: str) -> Seq2SeqArch:
    """The benchmark's own translation model at a named size on a translation dataset."""
    return _arch(SIZES[size], DATASETS[dataset])


def seq2seq_shapes(a: Seq2SeqArch) -> Shapes:
    """Encoder-decoder (Vaswani et al. 2017): one embedding shared by the source, the target
    and the output layer (as Marian ties them), plus an output bias. Per encoder layer ln1,
    attention, ln2, feed-forward; per decoder layer ln1, self-attention, ln2,
    cross-attention (x), ln3, feed-forward: the same names pre-LN or post-LN, where a norm
    follows the branch its number names instead of preceding it."""
    d = a.d_model
    w: Shapes = [("embed", (a.vocab, d))]
    for i in range(a.enc_layers):
        b = f"enc{i}."
        w += norm_shapes(b + "ln1", d) + attention_shapes(b, d) + norm_shapes(b + "ln2", d)
        w += feed_forward_shapes(b, d, a.ff)
    w += norm_shapes("enc_ln", d) if a.final_ln else []
    for i in range(a.dec_layers):
        b = f"dec{i}."
        w += norm_shapes(b + "ln1", d) + attention_shapes(b, d) + norm_shapes(b + "ln2", d)
        w += attention_shapes(b + "x", d) + norm_shapes(b + "ln3", d)
        w += feed_forward_shapes(b, d, a.ff)
    w += norm_shapes("dec_ln", d) if a.final_ln else []
    return w + [("head.bias", (a.vocab,))]


def weight_shapes(family: str, s: Seq2SeqSize, info: DatasetInfo, batchnorm: bool) -> Shapes:
    return seq2seq_shapes(_arch(s, info))


def flops(family: str, s: Seq2SeqSize, info: DatasetInfo) -> int:
    # per padded sentence: the encoder over the source, the decoder (self-attention,
    # cross-attention, FFN) over the target positions, and the tied output layer
    d, ls, lt = s.d_model, info.shape[0], info.target_len - 1
    enc = 4 * ls * d * d + 2 * ls * ls * d + 2 * ls * d * s.ff
    dec = (4 * lt * d * d + 2 * lt * lt * d + 2 * lt * d * d + 2 * ls * d * d
           + 2 * lt * ls * d + 2 * lt * d * s.ff)
    return 2 * (s.enc_layers * enc + s.dec_layers * dec + lt * d * info.n_outputs)


def activations(family: str, s: Seq2SeqSize, info: DatasetInfo) -> int:
    d, ls, lt = s.d_model, info.shape[0], info.target_len - 1
    enc = ls * (8 * d + 2 * s.ff) + 2 * s.heads * ls * ls
    dec = lt * (12 * d + 2 * s.ff) + 2 * s.heads * (lt * lt + lt * ls)
    return ls * d + s.enc_layers * enc + lt * d + s.dec_layers * dec + 2 * lt * info.vocab
