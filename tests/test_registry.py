"""bench.registry: families, datasets, optimizers, regularisers; modules free of frameworks."""

import subprocess
import sys
from pathlib import Path

import pytest
from spec_cases import one_line

import bench.registry
import bench.sizes
from bench.registry import SpecError
from bench.spec import RunSpec

# Every module but the backends (with TF's optimizers) and the families' models in each
# framework, found on disk so that a new module is checked too.
_BENCH = Path(__file__).resolve().parents[1] / "bench"
_OF_FRAMEWORK = {"torch": ("torch_backend", "torch", "torch_layers"),
                 "tensorflow": ("tf_backend", "tf", "tf_layers", "tf_optimizers")}


def _modules(keep) -> list[str]:
    return sorted("bench." + ".".join(p.relative_to(_BENCH).with_suffix("").parts)
                  for p in _BENCH.rglob("*.py") if keep(p.stem))


NEUTRAL_MODULES = _modules(lambda stem: stem not in ("__init__", "__main__") and not any(
    stem in stems for stems in _OF_FRAMEWORK.values()))


# ---------------------------------------------------------------------------- imports


def test_neutral_modules_import_no_framework(repo_root):
    code = (
        "import sys\n"
        f"for m in {NEUTRAL_MODULES!r}:\n"
        "    __import__(m)\n"
        "bad = [f for f in ('torch', 'tensorflow') if f in sys.modules]\n"
        "print('FRAMEWORKS:', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FRAMEWORKS: []" in out.stdout, out.stdout


@pytest.mark.parametrize("framework,other", [("torch", "tensorflow"), ("tensorflow", "torch")])
def test_a_frameworks_modules_import_that_framework_only(repo_root, framework, other):
    mods = _modules(lambda stem: stem in _OF_FRAMEWORK[framework])
    assert len(mods) >= 6  # the backend, the shared layers, one per family folder
    code = (f"import sys\nfor m in {mods!r}:\n    __import__(m)\n"
            f"print('OTHER:', {other!r} in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OTHER: False" in out.stdout, out.stdout


# ---------------------------------------------------------------------------- registries


def test_every_family_has_every_size_name():
    for fam in bench.registry.CLASSIFIERS:
        assert set(bench.sizes.SIZES[fam]) == set(bench.sizes.SIZE_NAMES), fam
    # the translation model tops out at `article`, Marian's shape, already GPU-sized
    assert set(bench.sizes.SIZES["seq2seq"]) == set(bench.sizes.SIZE_NAMES) - {"xxl"}


def test_article_seq2seq_has_the_marian_shape():
    s = bench.sizes.SIZES["seq2seq"]["article"]
    assert (s.enc_layers, s.dec_layers, s.d_model, s.heads, s.ff) == (6, 6, 512, 8, 2048)
    assert bench.sizes.param_count("seq2seq", "article", "en_fr_numbers") == 44_172_350


@pytest.mark.parametrize("family,dataset", [("seq2seq", "mnist1d"), ("cnn", "en_fr_numbers")])
def test_a_family_refuses_data_it_cannot_read(family, dataset):
    with pytest.raises(SpecError, match=f"family {family!r} cannot read dataset") as e:
        RunSpec(family=family, framework="torch", dataset=dataset, size="xs")
    one_line(e)
    with pytest.raises(SpecError):
        bench.sizes.param_count(family, "xs", dataset)


def test_seq2seq_takes_label_smoothing_and_no_batch_norm():
    base = dict(framework="torch", size="xs")
    s = RunSpec.create(family="seq2seq", dataset="en_fr_numbers", regulariser="label_smoothing",
                       **base)
    assert s.label_smoothing == 0.1
    with pytest.raises(SpecError, match="no batch norm"):
        RunSpec.create(family="seq2seq", dataset="en_fr_numbers", regulariser="batchnorm", **base)
    with pytest.raises(SpecError, match="label smoothing is for seq2seq"):
        RunSpec.create(family="cnn", dataset="mnist1d", regulariser="label_smoothing", **base)


def test_article_cnn_on_mnist_has_the_articles_layers():
    # Conv(32,3x3)-pool-Conv(64,3x3)-pool-Dense(128)-Dense(10), valid padding.
    assert bench.sizes.weight_shapes("cnn", "article", "mnist") == [
        ("conv1.kernel", (3, 3, 1, 32)), ("conv1.bias", (32,)),
        ("conv2.kernel", (3, 3, 32, 64)), ("conv2.bias", (64,)),
        ("dense.kernel", (5 * 5 * 64, 128)), ("dense.bias", (128,)),
        ("head.kernel", (128, 10)), ("head.bias", (10,)),
    ]
    assert bench.sizes.param_count("cnn", "article", "mnist") == 225_034


def test_article_lstm_on_tokens_has_the_articles_layers():
    # Embedding(10000, 64)-LSTM(128)-LSTM(128)-Dense(1), one 4h bias per layer (Keras).
    assert bench.sizes.weight_shapes("lstm", "article", "tokens") == [
        ("embed", (10000, 64)),
        ("rnn0.kernel", (64, 512)), ("rnn0.recurrent_kernel", (128, 512)), ("rnn0.bias", (512,)),
        ("rnn1.kernel", (128, 512)), ("rnn1.recurrent_kernel", (128, 512)),
        ("rnn1.bias", (512,)),
        ("head.kernel", (128, 1)), ("head.bias", (1,)),
    ]
    assert bench.sizes.param_count("lstm", "article", "tokens") == 870_529


# ---------------------------------------------------------------------------- regularisers


def test_parse_regulariser_canonical_order_and_dedup():
    a, sa = bench.registry.parse_regulariser("dropout+l2")
    b, sb = bench.registry.parse_regulariser("l2+dropout")
    assert a == b == "l2+dropout"
    assert sa == sb == {"l2": 1e-4, "dropout": 0.2}
    assert bench.registry.parse_regulariser("l2+l2")[0] == "l2"
    assert bench.registry.parse_regulariser("none") == ("none", {})


@pytest.mark.parametrize("label,bad", [
    ("foo", "'foo'"), ("dropout+foo", "'foo'"), ("none+dropout", "none"),
    ("lr_decay+lr_step", "two learning-rate schedules"), ("", "empty"), ("+", "empty"),
])
def test_parse_regulariser_rejects(label, bad):
    with pytest.raises(SpecError) as e:
        bench.registry.parse_regulariser(label)
    assert bad in one_line(e)


