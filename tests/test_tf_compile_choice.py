"""`compile: best` in TensorFlow: a real probe of graph mode against XLA, then the run."""

import pytest

from bench import compile_choice, tf_backend, train
from bench.data import load
from bench.registry import SpecError
from bench.spec import RunSpec


def spec(**kw):
    return RunSpec.create(**{**dict(family="cnn", framework="tf", dataset="mnist1d", size="xs",
                                    epochs=1, compile="best", warmup_steps=1, block_steps=2,
                                    block_seconds=0.0), **kw})


def test_a_best_run_probes_graph_mode_and_xla_and_records_both(tmp_path, monkeypatch):
    monkeypatch.setattr(compile_choice, "_MEMO", {})
    rec = train.run(spec(), load("mnist1d"), tf_backend, compile_cache=tmp_path)
    probe = rec["compile_probe"]
    assert rec["status"] == "ok" and probe["source"] == "probed"
    assert probe["eager_samples_per_s"] > 0 and probe["compiled_samples_per_s"] > 0
    assert rec["compile_used"] is probe["compiled"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{probe['key']}.json"]


def test_an_unresolved_best_never_reaches_a_trainer():
    tf_backend.setup(1, "cpu")
    with pytest.raises(SpecError, match="unresolved"):
        tf_backend.Trainer(tf_backend.build(spec(compile=False)), spec())
