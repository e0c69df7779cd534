"""Hugging Face's own answers for a random-weight Marian checkpoint, made offline in a
PyTorch process (tests/test_marian.py and tests/test_tf_marian.py compare ours to them).

Usage: python tests/marian_reference.py {small,full} OUT_DIR

Writes OUT_DIR/checkpoint/ as `save_pretrained` does (config.json, generation_config.json,
model.safetensors) with source.spm, target.spm and vocab.json laid out as MarianTokenizer
expects (sentencepiece models trained here on a few hundred generated sentences; vocab.json
has </s> 0, <unk> 1, the pieces, filler tokens up to the vocabulary size and <pad> last,
as opus-mt's does), and OUT_DIR/reference.npz: MarianTokenizer's ids for SENTENCES,
teacher-forced logits, greedy and beam-search tokens of `generate` and decoded strings,
and the parameter counts. `full` has opus-mt-en-fr's shape (vocabulary 59,514).

Random weights at the usual scale (0.02) give nearly flat distributions, where a 1e-6
difference could flip an argmax: the weights here are drawn at 0.2, and the output bias
is random (it is a buffer Hugging Face would leave at zero), so that decoding is decided
by clear margins and the bias's loading is tested.
"""

import itertools
import json
import sys
from pathlib import Path

import numpy as np

SENTENCES = [
    "The cat sat on the mat.",
    "Where is the train station?",
    "I would like two coffees, please.",
    "Zürich ☃ has a lake",  # pieces no vocabulary holds: <unk>
    "The committee will meet again next Tuesday at nine o'clock.",
    "Hello",
]
MAX_NEW = {"small": 12, "full": 8}
BEAMS = 4
CONFIGS = {
    "small": dict(vocab_size=0, d_model=32, encoder_layers=2, decoder_layers=2,
                  encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                  decoder_ffn_dim=64, max_position_embeddings=64),
    "full": dict(vocab_size=59514, d_model=512, encoder_layers=6, decoder_layers=6,
                 encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                 decoder_ffn_dim=2048, max_position_embeddings=512),
}


def corpus() -> tuple[list[str], list[str]]:
    """A few hundred English and French sentences from templates: enough for small
    sentencepiece models."""
    en_s = ["the cat", "my brother", "a tall woman", "the committee", "our teacher", "he",
            "the old train", "every student"]
    en_v = ["sees", "wants", "buys", "finds", "will meet", "likes", "paints"]
    en_o = ["the red house.", "two coffees, please.", "a small lake.", "the station?",
            "nine apples.", "the mat!", "the blue sky."]
    fr_s = ["le chat", "mon frère", "une grande femme", "le comité", "notre professeur",
            "il", "le vieux train", "chaque étudiant"]
    fr_v = ["voit", "veut", "achète", "trouve", "rencontrera", "aime", "peint"]
    fr_o = ["la maison rouge.", "deux cafés, s'il vous plaît.", "un petit lac.", "la gare ?",
            "neuf pommes.", "le tapis !", "le ciel bleu."]
    en = [" ".join(t).capitalize() for t in itertools.product(en_s, en_v, en_o)]
    fr = [" ".join(t).capitalize() for t in itertools.product(fr_s, fr_v, fr_o)]
    return en, fr


def _spm(sentences: list[str], size: int) -> bytes:
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=size,
        model_type="unigram", character_coverage=1.0, minloglevel=2, num_threads=1)
    return model.getvalue()


def build(kind: str, out: Path) -> None:
    import sentencepiece
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    torch.manual_seed(0)
    ckpt = out / "checkpoint"
    ckpt.mkdir(parents=True)
    en, fr = corpus()
    pieces = []
    for name, text in (("source.spm", en), ("target.spm", fr)):
        blob = _spm(text, 60)
        (ckpt / name).write_bytes(blob)
        sp = sentencepiece.SentencePieceProcessor(model_proto=blob)
        pieces += [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                   if not (sp.is_control(i) or sp.is_unknown(i))]
    tokens = ["</s>", "<unk>"] + sorted(set(pieces))
    cfg = dict(CONFIGS[kind])
    vocab = cfg["vocab_size"] or len(tokens) + 8
    cfg["vocab_size"] = cfg["decoder_vocab_size"] = vocab
    tokens += [f"<filler{i}>" for i in range(vocab - 1 - len(tokens))] + ["<pad>"]
    (ckpt / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    pad = vocab - 1
    config = MarianConfig(**cfg, activation_function="swish", scale_embedding=True,
                          pad_token_id=pad, eos_token_id=0, decoder_start_token_id=pad,
                          forced_eos_token_id=0, dropout=0.0, attention_dropout=0.0,
                          activation_dropout=0.0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(0.0, 0.05)
        model.final_logits_bias[0, 0] += 0.2
    # opus-mt's generation settings
    model.generation_config.update(bad_words_ids=[[pad]], num_beams=BEAMS, max_length=512,
                                   forced_eos_token_id=0)
    model.save_pretrained(ckpt)
    tok = MarianTokenizer.from_pretrained(ckpt)
    batch = tok(SENTENCES, return_tensors="pt", padding=True)
    rng = np.random.default_rng(0)
    dec_in = np.concatenate([np.full((len(SENTENCES), 1), pad),
                             rng.integers(2, vocab - 1, (len(SENTENCES), 5))], 1)
    new = MAX_NEW[kind]
    with torch.no_grad():
        logits = model(**batch, decoder_input_ids=torch.as_tensor(dec_in)).logits.numpy()
        greedy = model.generate(**batch, num_beams=1, do_sample=False, max_new_tokens=new)
        beam = model.generate(**batch, num_beams=BEAMS, do_sample=False, length_penalty=1.0,
                              max_new_tokens=new)
    np.savez(out / "reference.npz", ids=batch["input_ids"].numpy(), dec_in=dec_in,
             logits=logits, greedy=greedy.numpy(), beam=beam.numpy(), max_new=new,
             decoded=np.array(json.dumps(tok.batch_decode(greedy, skip_special_tokens=True))),
             num_parameters=model.num_parameters(),
             trainable=model.num_parameters(only_trainable=True))




if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))
