"""`python -m bench translate`: the article's generate() call on a run the pipeline trained,
decoded in either framework from the framework-neutral weights file."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from bench.spec import RunSpec

SENTENCES = ["one hundred and eighty-one", "seventy-one", "twenty-one thousand, eighty",
             "ninety-nine thousand, nine hundred and ninety-nine", "zero"]


def bench(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True,
                          text=True, timeout=timeout)


def train(tmp_path, framework: str, **extra) -> str:
    out = tmp_path / framework / "run.json"
    p = bench("train", "--family", "seq2seq", "--framework", framework, "--dataset",
              "en_fr_numbers", "--size", "xs", "--lr", "0.01", "--batch-size", "32",
              "--epochs", "3", "--block-seconds", "0", "--block-steps", "2",
              "--save-model", "--out", str(out))
    assert p.returncode == 0, p.stderr[-3000:]
    return str(out)


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    pytest.importorskip("torch")
    return train(tmp_path_factory.mktemp("translate"), "torch")


def test_translate_prints_one_line_per_sentence(torch_run):
    p = bench("translate", "--run", torch_run, *SENTENCES)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == len(SENTENCES)
    record = json.loads(open(torch_run).read())
    assert record["weights_file"] == "run.weights.npz"
    beam = bench("translate", "--run", torch_run, "--beam", "4", *SENTENCES)
    assert beam.returncode == 0 and len(beam.stdout.splitlines()) == len(SENTENCES)


@pytest.mark.parametrize("args,message", [
    (["hello"], "'hello' is not in the model's vocabulary"),
    (["one", "--beam", "0"], "--beam must be at least 1"),
    (["one", ""], "an empty text: nothing to translate"),  # not a translation of nothing
])
def test_bad_input_is_one_line(torch_run, args, message):
    p = bench("translate", "--run", torch_run, *args)
    assert p.returncode == 2 and message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_missing_or_foreign_weights_are_one_line_errors(torch_run, tmp_path):
    record = json.loads(open(torch_run).read())
    lonely = tmp_path / "lonely.json"
    lonely.write_text(json.dumps(record))  # a record whose weights were never kept
    p = bench("translate", "--run", str(lonely), "one")
    assert p.returncode == 2 and "--save-model" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    # weights of another size under this record's name
    other = RunSpec.create(family="seq2seq", framework="torch", dataset="en_fr_numbers",
                           size="s")
    from bench.init import init_weights
    from bench.translation import weights_file

    weights_file.save(tmp_path / "lonely.weights.npz", other, init_weights(other))
    p = bench("translate", "--run", str(lonely), "one")
    assert p.returncode == 2 and "not this run's seq2seq xs" in p.stderr
    # a classifier's record
    record.update(family="cnn", dataset="mnist1d")
    lonely.write_text(json.dumps(record))
    p = bench("translate", "--run", str(lonely), "one")
    assert p.returncode == 2 and "not a translation model" in p.stderr


@pytest.mark.slow
def test_a_model_decodes_alike_in_both_frameworks(tmp_path, torch_run):
    """Trained in PyTorch, decoded in TensorFlow, and the reverse: the same tokens."""
    if importlib.util.find_spec("tensorflow") is None:  # never imported here: one framework
        pytest.skip("tensorflow is not installed")
    tf_run = train(tmp_path, "tf")
    for run in (torch_run, tf_run):
        outs = {fw: bench("translate", "--run", run, "--framework", fw, *SENTENCES)
                for fw in ("torch", "tf")}
        for fw, p in outs.items():
            assert p.returncode == 0, (fw, p.stderr[-2000:])
        assert outs["torch"].stdout == outs["tf"].stdout
        beams = {fw: bench("translate", "--run", run, "--framework", fw, "--beam", "4",
                           *SENTENCES).stdout for fw in ("torch", "tf")}
        assert beams["torch"] == beams["tf"]
    shutil.rmtree(tmp_path / "tf")
