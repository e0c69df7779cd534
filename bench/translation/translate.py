"""`python -m bench translate --run RECORD "one hundred and eighty-one"`: the article's
`model.generate(...)` example, on a translation model the pipeline trained, or with
`--pretrained DIR` on a Hugging Face Marian checkpoint (bench.translation.marian), e.g.
opus-mt-en-fr.

A run must have kept its weights (`--save-model`, config `save_model: true`). They are
framework-neutral, so `--framework` may decode in the other framework than the one that
trained. A checkpoint decodes as Hugging Face's `generate` would by default (its
num_beams, max_length, bad_words_ids and forced_eos_token_id) unless --beam,
--length-penalty or --max-len say otherwise. Translations go to stdout, one line each;
which decoding ran goes to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path

from ..registry import FRAMEWORKS, SpecError
from ..spec import RunSpec


def add_parsers(sub) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained seq2seq run "
                                         "(greedy or beam search)")
    p.add_argument("text", nargs="*", help="source sentences, e.g. 'one hundred and eighty-one'")
    p.add_argument("--input", metavar="FILE",
                   help="read the sentences from FILE, one a line ('-': stdin), after any "
                        "given as arguments")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="the run's record, results/runs/<id>.json")
    what.add_argument("--pretrained", metavar="DIR",
                      help="a local Hugging Face Marian checkpoint (config.json, "
                           "model.safetensors or pytorch_model.bin, source.spm, target.spm, "
                           "vocab.json), e.g. opus-mt-en-fr")
    p.add_argument("--framework", choices=FRAMEWORKS,
                   help="framework that decodes (default: the one that trained; torch for "
                        "--pretrained)")
    p.add_argument("--beam", type=int,
                   help="beam width (1: greedy; default 1, or the checkpoint's num_beams)")
    p.add_argument("--length-penalty", type=float,
                   help="beam score = log-probability / length**this (default 1.0, or the "
                        "checkpoint's)")
    p.add_argument("--max-len", type=int, default=0,
                   help="most tokens to generate (default: the dataset's longest target, or "
                        "the checkpoint's max_length - 1)")
    p.add_argument("--no-cache", action="store_true",
                   help="rerun the decoder over the whole prefix at every step (no "
                        "key/value cache; the same tokens, slower)")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(func=main)


def _spec(record_path: Path) -> RunSpec:
    try:
        record = json.loads(record_path.read_text())
    except OSError as e:
        raise SpecError(f"cannot read run record {record_path}: {e.strerror}") from None
    except ValueError:
        raise SpecError(f"run record {record_path} is not valid JSON") from None
    names = {f.name for f in fields(RunSpec)}
    spec = RunSpec.from_dict({k: v for k, v in record.items() if k in names})
    if spec.family != "seq2seq":
        raise SpecError(f"run {record_path.name} is a {spec.family}, not a translation "
                        "model (family seq2seq)")
    if record.get("status") != "ok":
        raise SpecError(f"run {record_path.name} has status {record.get('status')!r}, not ok")
    return spec


def encode_sources(texts: list[str], vocab: list[str], length: int):
    from . import text_pairs

    known = set(vocab[len(text_pairs.SPECIALS):])
    for text in texts:
        unknown = [w for w in text_pairs.words(text.lower()) if w not in known]
        if unknown:
            raise SpecError(f"{unknown[0]!r} is not in the model's vocabulary (number words "
                            f"below a million, e.g. 'one hundred and eighty-one')")
    try:
        return text_pairs.encode([t.lower() for t in texts], vocab, length, bos=False)
    except ValueError as e:
        raise SpecError(f"source too long for the model: {e}") from None


def _check(texts: list[str], beam: int, max_len: int) -> None:
    if beam < 1 or max_len < 0:
        raise SpecError("--beam must be at least 1 and --max-len at least 0")
    if any(not t.strip() for t in texts):
        raise SpecError("an empty text: nothing to translate")


def _backend(framework: str, threads: int, seed: int = 0):
    from ..backend_api import load_backend

    try:
        backend = load_backend(framework)
    except ImportError as e:
        raise SpecError(f"framework {framework!r} is not installed ({e.name}); "
                        f"pip install -e '.[{framework}]'") from None
    backend.setup(threads, "cpu", seed)
    return backend


def _decode(decoder, src, beam: int, length_penalty: float, steps: int, cache: bool,
            rules=None) -> list[list[int]]:
    from .generate import NO_RULES, beam_search, greedy

    rules = rules or NO_RULES
    if beam == 1:
        return greedy(decoder, src, steps, batch=64, cache=cache, rules=rules)
    return beam_search(decoder, src, beam, length_penalty, steps, batch=64, cache=cache,
                       rules=rules)


def describe(framework: str, beam: int, length_penalty: float, steps: int,
             cache: bool) -> str:
    """Which decoding ran, in one line."""
    how = "greedy" if beam == 1 else f"beam {beam}, length penalty {length_penalty:g}"
    kv = "key/value cache" if cache else "no key/value cache"
    return f"decoded in {framework}: {how}, at most {steps} tokens, {kv}"


def translate(spec: RunSpec, weights_path: Path, texts: list[str], framework: str,
              beam: int = 1, length_penalty: float = 1.0, max_len: int = 0,
              threads: int = 1, cache: bool = True) -> list[str]:
    """Decode `texts` with the weights in `weights_path` in `framework`."""
    from . import text_pairs, weights_file
    from .seq2seq_eval import max_len as longest

    _check(texts, beam, max_len)
    vocab = text_pairs.vocabulary(text_pairs.PAIRS[spec.dataset])
    src = encode_sources(texts, vocab, spec.info.shape[0])
    weights = weights_file.load(weights_path, spec)
    spec = spec.with_(framework=framework, device="cpu", threads=threads, compile=False)
    backend = _backend(framework, threads, spec.seed)
    model = backend.build(spec)
    backend.set_weights(model, weights)
    trainer = backend.Trainer(model, spec)
    rows = _decode(trainer, src, beam, length_penalty, max_len or longest(spec.info), cache)
    return [text_pairs.decode(r, vocab) for r in rows]


def translate_pretrained(directory: Path, texts: list[str], framework: str,
                         beam: int | None = None, length_penalty: float | None = None,
                         max_len: int = 0, threads: int = 1, cache: bool = True,
                         precision: str = "fp32") -> tuple[list[str], str]:
    """Decode `texts` with the Marian checkpoint in `directory`: (translations, which
    decoding ran). Settings left None are the checkpoint's own."""
    from . import marian
    from .generate import Rules

    arch, gen = marian.read_config(directory)
    beam = gen.num_beams if beam is None else beam
    length_penalty = gen.length_penalty if length_penalty is None else length_penalty
    _check(texts, beam, max_len)
    tokenizer = marian.Tokenizer(directory)
    src = tokenizer.encode(texts, arch.max_positions)
    weights = marian.read_weights(directory, arch)
    backend = _backend(framework, threads)
    decoder = backend.Decoder(backend.seq2seq_model(arch, weights, precision))
    steps = max_len or max(gen.max_length - 1, 1)
    rows = _decode(decoder, src, beam, length_penalty, steps, cache,
                   Rules(banned=gen.banned, forced_eos=gen.forced_eos))
    return ([tokenizer.decode(r) for r in rows],
            describe(framework, beam, length_penalty, steps, cache))


def _texts(a) -> list[str]:
    texts = list(a.text)
    if a.input:
        try:
            f = sys.stdin if a.input == "-" else open(a.input, encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise SpecError(f"cannot read {a.input}: {e.strerror}") from None
        with f:
            texts += f.read().splitlines()
    if not texts:
        raise SpecError("nothing to translate: give sentences or --input FILE")
    return texts


def main(a) -> int:
    from .seq2seq_eval import max_len as longest
    from .weights_file import path_for

    a.text = _texts(a)
    cache = not a.no_cache
    if a.pretrained:
        out, how = translate_pretrained(Path(a.pretrained), a.text, a.framework or "torch",
                                        a.beam, a.length_penalty, a.max_len, a.threads,
                                        cache)
    else:
        record = Path(a.run)
        spec = _spec(record)
        framework = a.framework or spec.framework
        beam = 1 if a.beam is None else a.beam
        lp = 1.0 if a.length_penalty is None else a.length_penalty
        out = translate(spec, path_for(record), a.text, framework, beam, lp, a.max_len,
                        a.threads, cache)
        how = describe(framework, beam, lp, a.max_len or longest(spec.info), cache)
    for line in out:
        print(line)
    print(how, file=sys.stderr)
    return 0
