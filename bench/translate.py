"""`python -m bench translate --run RECORD "one hundred and eighty-one"`: the article's
`model.generate(...)` example, on a translation model the pipeline trained.

The run must have kept its weights (`--save-model`, config `save_model: true`). They are
framework-neutral, so `--framework` may decode in the other framework than the one that
trained.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from .registry import FRAMEWORKS, SpecError
from .spec import RunSpec


def add_parsers(sub) -> None:
    p = sub.add_parser("translate", help="translate sentences with a trained seq2seq run "
                                         "(greedy or beam search)")
    p.add_argument("text", nargs="+", help="source sentences, e.g. 'one hundred and eighty-one'")
    p.add_argument("--run", required=True, help="the run's record, results/runs/<id>.json")
    p.add_argument("--framework", choices=FRAMEWORKS,
                   help="framework that decodes (default: the one that trained)")
    p.add_argument("--beam", type=int, default=1, help="beam width (1: greedy, the default)")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = log-probability / length**this (default 1.0)")
    p.add_argument("--max-len", type=int, default=0,
                   help="most tokens to generate (default: the dataset's longest target)")
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


def translate(spec: RunSpec, weights_path: Path, texts: list[str], framework: str,
              beam: int = 1, length_penalty: float = 1.0, max_len: int = 0,
              threads: int = 1) -> list[str]:
    """Decode `texts` with the weights in `weights_path` in `framework`."""
    from . import text_pairs, weights_file
    from .backend_api import load_backend
    from .generate import beam_search, greedy
    from .seq2seq_eval import max_len as longest

    if beam < 1 or max_len < 0:
        raise SpecError("--beam must be at least 1 and --max-len at least 0")
    vocab = text_pairs.vocabulary(text_pairs.PAIRS[spec.dataset])
    src = encode_sources(texts, vocab, spec.info.shape[0])
    weights = weights_file.load(weights_path, spec)
    spec = spec.with_(framework=framework, device="cpu", threads=threads, compile=False)
    try:
        backend = load_backend(framework)
    except ImportError as e:
        raise SpecError(f"framework {framework!r} is not installed ({e.name}); "
                        f"pip install -e '.[{framework}]'") from None
    backend.setup(threads, "cpu", spec.seed)
    model = backend.build(spec)
    backend.set_weights(model, weights)
    trainer = backend.Trainer(model, spec)
    steps = max_len or longest(spec.info)
    if beam == 1:
        rows = greedy(trainer, src, steps, batch=64)
    else:
        rows = beam_search(trainer, src, beam, length_penalty, steps, batch=64)
    return [text_pairs.decode(r, vocab) for r in rows]


def main(a) -> int:
    from .weights_file import path_for

    record = Path(a.run)
    spec = _spec(record)
    out = translate(spec, path_for(record), a.text, a.framework or spec.framework, a.beam,
                    a.length_penalty, a.max_len, a.threads)
    for line in out:
        print(line)
    return 0
