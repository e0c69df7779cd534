"""A pretrained Hugging Face Marian checkpoint (e.g. Helsinki-NLP/opus-mt-en-fr), read from
a local directory without `transformers`: its config, its weights in the canonical layout
both backends build from (bench.models.seq2seq.spec.seq2seq_shapes), its generation settings and a
tokenizer that gives MarianTokenizer's ids.

The directory holds what `save_pretrained` / `snapshot_download` leave: config.json,
model.safetensors or pytorch_model.bin, source.spm, target.spm, vocab.json and optionally
generation_config.json. Nothing here downloads. Anything unreadable, missing, of another
architecture or of the wrong shape is a MarianError (a SpecError: one line, exit 2) that
names the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.seq2seq.spec import Seq2SeqArch, seq2seq_shapes
from ..registry import SpecError


class MarianError(SpecError):
    """A checkpoint directory this module cannot use, with the file named."""


# Hugging Face's names for the feed-forward activation; the backends have relu and silu.
_ACTIVATIONS = {"swish": "silu", "silu": "silu", "relu": "relu"}
# Config switches whose non-default values would make another network than Marian's.
_MUST_BE = {"share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
            "scale_embedding": True, "normalize_before": False,
            "normalize_embedding": False, "add_final_layer_norm": False}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MarianError(f"{path}: missing (a Marian checkpoint directory holds "
                          "config.json, model.safetensors or pytorch_model.bin, source.spm, "
                          "target.spm and vocab.json)") from None
    except (OSError, ValueError) as e:
        raise MarianError(f"{path}: unreadable ({e})") from None


@dataclass(frozen=True)
class Generation:
    """The checkpoint's own decoding defaults, as Hugging Face's `generate` reads them
    (generation_config.json, else config.json; Hugging Face's defaults where neither
    says)."""

    num_beams: int = 1
    max_length: int = 20  # counts the start token, as in Hugging Face
    length_penalty: float = 1.0
    banned: tuple[int, ...] = ()  # single-token bad_words_ids
    forced_eos: bool = False


def read_config(directory: Path) -> tuple[Seq2SeqArch, Generation]:
    """The network and the decoding defaults of the checkpoint in `directory`."""
    path = Path(directory) / "config.json"
    c = _json(path)
    if c.get("model_type") != "marian":
        raise MarianError(f"{path}: model_type is {c.get('model_type')!r}, not 'marian'")
    for key, want in _MUST_BE.items():
        if key in c and bool(c[key]) != want:
            raise MarianError(f"{path}: {key}={c[key]!r} is not supported (Marian "
                              f"checkpoints have {want})")
    act = _ACTIVATIONS.get(c.get("activation_function", "swish"))
    if act is None:
        raise MarianError(f"{path}: activation {c['activation_function']!r} is not "
                          f"supported (only {', '.join(_ACTIVATIONS)})")
    try:
        vocab = int(c["vocab_size"])
        if int(c.get("decoder_vocab_size") or vocab) != vocab:
            raise MarianError(f"{path}: separate source and target vocabularies are not "
                              "supported")
        if (c["encoder_attention_heads"], c["encoder_ffn_dim"]) != (
                c["decoder_attention_heads"], c["decoder_ffn_dim"]):
            raise MarianError(f"{path}: encoder and decoder of different widths are not "
                              "supported")
        arch = Seq2SeqArch(vocab, int(c["d_model"]), int(c["encoder_attention_heads"]),
                           int(c["encoder_layers"]), int(c["decoder_layers"]),
                           int(c["encoder_ffn_dim"]), post_ln=True, activation=act,
                           positions="halves", start=int(c["decoder_start_token_id"]),
                           eos=int(c["eos_token_id"]), pad=int(c["pad_token_id"]),
                           max_positions=int(c["max_position_embeddings"]))
    except KeyError as e:
        raise MarianError(f"{path}: no {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise MarianError(f"{path}: bad value ({e})") from None
    if arch.d_model % arch.heads:
        raise MarianError(f"{path}: d_model {arch.d_model} not divisible by "
                          f"{arch.heads} heads")
    gen_path = Path(directory) / "generation_config.json"
    g = {**c, **(_json(gen_path) if gen_path.is_file() else {})}
    banned = tuple(int(w[0]) for w in g.get("bad_words_ids") or [] if len(w) == 1)
    forced = g.get("forced_eos_token_id")
    return arch, Generation(num_beams=int(g.get("num_beams") or 1),
                            max_length=int(g.get("max_length") or 20),
                            length_penalty=float(g.get("length_penalty", 1.0)),
                            banned=banned, forced_eos=forced is not None
                            and int(forced) == arch.eos)


# ---------------------------------------------------------------------------- weights

_LN = {"gamma": "weight", "beta": "bias"}
_PROJ = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
_LAYER = {"enc": {"ln1": "self_attn_layer_norm", "ln2": "final_layer_norm"},
          "dec": {"ln1": "self_attn_layer_norm", "ln2": "encoder_attn_layer_norm",
                  "ln3": "final_layer_norm"}}


def hf_name(name: str) -> tuple[str, bool]:
    """(Hugging Face's state-dict key, whether the array is transposed: torch's Linear
    keeps (out, in), the canonical layout (in, out)) of a canonical weight."""
    if name == "embed":
        return "model.shared.weight", False
    if name == "head.bias":
        return "final_logits_bias", False
    layer, part, leaf = name.split(".")
    stack, i = layer[:3], int(layer[3:])
    base = f"model.{'encoder' if stack == 'enc' else 'decoder'}.layers.{i}."
    if part in _LAYER[stack]:
        return base + f"{_LAYER[stack][part]}.{_LN[leaf]}", False
    if part in ("ff1", "ff2"):
        module = "fc1" if part == "ff1" else "fc2"
    else:
        module = ("encoder_attn." if part.startswith("x") else "self_attn.") + \
            _PROJ[part[-1]]
    return base + f"{module}.{'weight' if leaf == 'kernel' else 'bias'}", leaf == "kernel"


# Where a tied checkpoint may keep the shared embedding instead of model.shared.weight.
_EMBED_ALIASES = ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
                  "lm_head.weight")


def _read_tensors(directory: Path) -> tuple[Path, dict[str, np.ndarray]]:
    st, pt = directory / "model.safetensors", directory / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return st, load_file(str(st))
        except (OSError, SafetensorError, ValueError, TypeError) as e:
            raise MarianError(f"{st}: unreadable ({e})") from None
    if pt.is_file():
        from .torch_pickle import TorchPickleError, load_state_dict

        try:
            return pt, load_state_dict(pt)
        except TorchPickleError as e:
            raise MarianError(f"{pt}: {e}") from None
    raise MarianError(f"{st}: missing (nor is there a pytorch_model.bin)")


def read_weights(directory: Path, arch: Seq2SeqArch) -> list[np.ndarray]:
    """The checkpoint's weights as canonical float32 arrays, checked against `arch`."""
    path, tensors = _read_tensors(Path(directory))
    if "model.shared.weight" not in tensors:
        for alias in _EMBED_ALIASES:
            if alias in tensors:
                tensors["model.shared.weight"] = tensors[alias]
                break
    out = []
    for name, shape in seq2seq_shapes(arch):
        key, transposed = hf_name(name)
        if key not in tensors:
            if name == "head.bias":  # Hugging Face, too, starts a missing one at zero
                out.append(np.zeros(shape, np.float32))
                continue
            raise MarianError(f"{path}: no tensor {key!r}")
        a = np.asarray(tensors[key], dtype=np.float32)
        a = a.reshape(-1) if name == "head.bias" else a
        a = a.T if transposed else a
        if a.shape != shape:
            raise MarianError(f"{path}: {key} has shape {tuple(np.shape(tensors[key]))}; "
                              f"config.json makes it {shape[::-1] if transposed else shape}")
        out.append(np.ascontiguousarray(a))
    return out


def write_checkpoint(directory: Path, arch: Seq2SeqArch, weights: list[np.ndarray],
                     generation: Generation | None = None) -> Path:
    """config.json and model.safetensors of canonical `weights` in Hugging Face's layout
    (what `MarianMTModel.from_pretrained` reads): decode speed compares both libraries on
    the same random weights without either one's initialiser."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for (name, _), w in zip(seq2seq_shapes(arch), weights, strict=True):
        key, transposed = hf_name(name)
        a = w.T if transposed else w
        tensors[key] = np.ascontiguousarray(a[None] if name == "head.bias" else a,
                                            dtype=np.float32)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    g = generation or Generation()
    act = {"silu": "swish"}.get(arch.activation, arch.activation)
    config = {
        "model_type": "marian", "architectures": ["MarianMTModel"],
        "vocab_size": arch.vocab, "decoder_vocab_size": arch.vocab, "d_model": arch.d_model,
        "encoder_layers": arch.enc_layers, "decoder_layers": arch.dec_layers,
        "encoder_attention_heads": arch.heads, "decoder_attention_heads": arch.heads,
        "encoder_ffn_dim": arch.ff, "decoder_ffn_dim": arch.ff, "activation_function": act,
        "max_position_embeddings": arch.max_positions, "scale_embedding": True,
        "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
        "pad_token_id": arch.pad, "eos_token_id": arch.eos,
        "decoder_start_token_id": arch.start, "is_encoder_decoder": True,
        "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
        "num_beams": g.num_beams, "max_length": g.max_length,
    }
    if g.banned:
        config["bad_words_ids"] = [[t] for t in g.banned]
    if g.forced_eos:
        config["forced_eos_token_id"] = arch.eos
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


def opus_mt_en_fr() -> Seq2SeqArch:
    """The shape of Helsinki-NLP/opus-mt-en-fr (its config.json): 59,514 tokens, 6 + 6
    post-LN layers, d_model 512, 8 heads, FFN 2048, swish, 512 positions; token 59513 is
    pad and starts decoding, 0 is EOS."""
    return Seq2SeqArch(59514, 512, 8, 6, 6, 2048, post_ln=True, activation="silu",
                       positions="halves", start=59513, eos=0, pad=59513, max_positions=512)


# ---------------------------------------------------------------------------- tokenizer


class Tokenizer:
    """MarianTokenizer's ids from the checkpoint's own sentencepiece models and vocab.json:
    a leading language code (">>fr<<") kept as one token, the source model's pieces
    looked up in vocab.json (a piece it lacks is <unk>), then </s>. Decoding joins the
    pieces of the ids that are not special tokens (</s>, <unk>, <pad>), as
    `decode(skip_special_tokens=True)` does."""

    def __init__(self, directory: Path):
        import sentencepiece

        directory = Path(directory)
        self.models = []
        for name in ("source.spm", "target.spm"):
            path = directory / name
            if not path.is_file():
                raise MarianError(f"{path}: missing")
            try:
                self.models.append(sentencepiece.SentencePieceProcessor(model_file=str(path)))
            except (OSError, RuntimeError) as e:
                raise MarianError(f"{path}: not a sentencepiece model ({e})") from None
        path = directory / "vocab.json"
        self.vocab = _json(path)
        missing = [t for t in ("</s>", "<unk>", "<pad>") if t not in self.vocab]
        if missing:
            raise MarianError(f"{path}: no {missing[0]!r} token")
        self.pieces = {int(i): t for t, i in self.vocab.items()}
        self.eos, self.unk, self.pad = (int(self.vocab[t]) for t in ("</s>", "<unk>", "<pad>"))

    def ids(self, text: str) -> list[int]:
        code = []
        if text.startswith(">>") and (end := text.find("<<")) != -1:
            code, text = [text[: end + 2]], text[end + 2 :]
        pieces = code + self.models[0].encode(text, out_type=str)
        return [int(self.vocab.get(p, self.unk)) for p in pieces] + [self.eos]

    def encode(self, texts: list[str], max_len: int) -> np.ndarray:
        """Token ids (N, longest), EOS-terminated, padded with <pad>."""
        rows = [self.ids(t) for t in texts]
        for text, r in zip(texts, rows, strict=True):
            if len(r) > max_len:
                raise MarianError(f"source of {len(r)} tokens; the model's positions hold "
                                  f"{max_len}: {text[:40]!r}...")
        out = np.full((len(rows), max(map(len, rows))), self.pad, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def decode(self, ids) -> str:
        skip = {self.eos, self.unk, self.pad}
        pieces = [self.pieces[int(i)] for i in ids if int(i) not in skip
                  and int(i) in self.pieces]
        return self.models[1].decode_pieces(pieces).replace("\u2581", " ").strip()
