"""The checks of a Marian checkpoint against Hugging Face's answers (tests/marian_reference.py),
shared by the PyTorch (tests/test_marian.py) and TensorFlow (tests/test_tf_marian.py) tests:
each runs them with its own backend, in its own process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from bench.translation import marian
from bench.translation.generate import Rules, beam_search, greedy

REFERENCE = Path(__file__).with_name("marian_reference.py")
LOGIT_TOL = 1e-4


def make_reference(kind: str, out: Path) -> tuple[Path, dict]:
    """(checkpoint directory, reference arrays), made by transformers in a torch process."""
    p = subprocess.run([sys.executable, str(REFERENCE), kind, str(out)], capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    with np.load(out / "reference.npz") as z:
        ref = {k: z[k] for k in z.files}
    ref["decoded"] = json.loads(str(ref["decoded"]))
    return out / "checkpoint", ref


def generated(rows: np.ndarray, eos: int) -> list[list[int]]:
    """`generate`'s output rows without the start token, up to and including EOS."""
    out = []
    for row in rows[:, 1:].tolist():
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def load(backend, ckpt: Path):
    arch, gen = marian.read_config(ckpt)
    model = backend.seq2seq_model(arch, marian.read_weights(ckpt, arch))
    return arch, gen, model


def teacher_forced(backend, model, src, tgt) -> np.ndarray:
    """Logits (N, T, vocab) of every target position."""
    if backend.NAME == "torch":
        import torch

        with torch.no_grad():
            return model(backend.to_device(src), backend.to_device(tgt)).numpy()
    return model.net((backend.to_device(src), backend.to_device(tgt))).numpy()


def logit_difference(backend, ckpt: Path, ref: dict) -> float:
    _, _, model = load(backend, ckpt)
    got = teacher_forced(backend, model, ref["ids"], ref["dec_in"])
    assert got.shape == ref["logits"].shape
    return float(np.abs(got - ref["logits"]).max())


def decodings(backend, ckpt: Path, ref: dict) -> dict:
    """Our greedy and beam tokens, with and without the cache, and Hugging Face's."""
    arch, gen, model = load(backend, ckpt)
    decoder = backend.Decoder(model)
    rules = Rules(banned=gen.banned, forced_eos=gen.forced_eos)
    n = int(ref["max_new"])
    out = {"hf_greedy": generated(ref["greedy"], arch.eos),
           "hf_beam": generated(ref["beam"], arch.eos)}
    for cache in (True, False):
        out[f"greedy_{cache}"] = greedy(decoder, ref["ids"], n, batch=4, cache=cache,
                                        rules=rules)
        out[f"beam_{cache}"] = beam_search(decoder, ref["ids"], 4, 1.0, n, batch=4,
                                           cache=cache, rules=rules)
    return out
