"""The frameworks page (bench.report.frameworks): PyTorch against TensorFlow as the runs
trained and with both uncompiled, and a winner that flips between the two reported as such."""

import re

from report_data import build, smoke_records, visible_text

from bench.report import settings, tables

# TensorFlow's probe: XLA 2.5x its graph mode on the GRU, slower than graph mode on the CNN
PROBES = {"gru": (400.0, 1000.0, True), "cnn": (1000.0, 600.0, False)}


def compiled_tf(recs):
    """The synthetic study with TensorFlow at `compile: best` (PyTorch uncompiled): the GRU
    trains under XLA, the CNN in graph mode. Synthetic TF is 1.5x PyTorch as run, so the
    GRU's TF is 1.5 x 400 / 1000 = 0.6x PyTorch with both uncompiled: its winner flips."""
    out = []
    for r in recs:
        r = dict(r)
        if r["framework"] == "tf":
            eager, comp, used = PROBES[r["family"]]
            r.update(compile="best", compile_used=used,
                     compile_probe={"eager_samples_per_s": eager,
                                    "compiled_samples_per_s": comp, "compiled": used})
        else:
            r["compile_used"] = False
        out.append(r)
    return out


def test_a_winner_that_flips_with_compilation_is_reported_as_flipping(tmp_path):
    out = build(tmp_path, compiled_tf(smoke_records()))
    assert not (out / "settings").exists()  # one policy: PyTorch uncompiled, TF best
    fw = visible_text((out / "frameworks.html").read_text())
    assert ("as run (PyTorch uncompiled, TensorFlow at its best (compiled in 3 of 6 cells))"
            in fw)
    assert "Both uncompiled (a compiled side's rate times its probe's" in fw
    at = fw.index("The winner flips in")
    flipped = fw[at:fw.index("Model memory", at)]
    assert flipped.startswith("The winner flips in 3 cell(s), so no framework wins overall: ")
    assert re.search(r"gru xs \(as run TensorFlow is 1\.[45]\d*x faster than PyTorch, both "
                     r"uncompiled PyTorch is 1\.[5-7]\d*x faster than TensorFlow\)", flipped)
    assert "cnn" not in flipped  # graph mode ran: the two comparisons agree
    index = visible_text((out / "index.html").read_text())
    assert "Frameworks: Training throughput as run (PyTorch uncompiled, TensorFlow" in index
    assert "The winner flips in 3 cell(s)" in index


def test_without_compilation_there_is_one_comparison(tmp_path):
    fw = visible_text((build(tmp_path, smoke_records()) / "frameworks.html").read_text())
    assert "as run (both uncompiled)" in fw
    assert "Both uncompiled (a compiled" not in fw and "flips" not in fw


def test_one_framework_in_two_modes_keeps_them_apart():
    recs = compiled_tf(smoke_records())
    extra = [dict(r, compile=True, compile_used=True, run_id=r["run_id"] + "-xla")
             for r in recs if r["framework"] == "tf"]
    df = tables.normalise(__import__("pandas").DataFrame(
        [__import__("bench.study.aggregate", fromlist=["flatten"]).flatten(r)
         for r in recs + extra]))
    parts = settings.split_by_setting(df)
    assert len(parts) == 3  # PyTorch uncompiled, TF best, TF compiled: nothing shared
    words = sorted(settings.describe_setting(k) for k, _ in parts)
    assert any(w.endswith(", compiled") for w in words)
    assert any(w.endswith(", compile best") for w in words)


def test_a_per_framework_policy_is_described_by_framework():
    assert settings.compile_phrase("torch=False,tf=best") == (", PyTorch uncompiled, "
                                                            "TensorFlow compile best")
    assert settings.compile_phrase("False") == ""
    assert settings.compile_phrase("True") == ", compiled"


def test_the_page_says_how_many_steps_each_framework_ran_per_call(tmp_path):
    recs = [dict(r, steps_per_call=32 if r["framework"] == "tf" else 1)
            for r in smoke_records()]
    fw = visible_text((build(tmp_path, recs) / "frameworks.html").read_text())
    assert ("Training steps per call into the framework: PyTorch 1, TensorFlow 32 "
            "(TensorFlow loops over a mini-batch run's steps inside its graph") in fw
    same = visible_text((build(tmp_path / "same", smoke_records()) / "frameworks.html")
                        .read_text())
    assert "steps per call" not in same


def test_the_overview_headline_says_how_many_steps_each_framework_ran_per_call(tmp_path):
    recs = [dict(r, steps_per_call=32 if r["framework"] == "tf" else 1)
            for r in smoke_records()]
    index = visible_text((build(tmp_path, recs) / "index.html").read_text())
    at = index.index("Frameworks: Training throughput as run")
    assert "Training steps per call into the framework: PyTorch 1, TensorFlow 32" in index[at:]
    plain = visible_text((build(tmp_path / "same", smoke_records()) / "index.html").read_text())
    assert "steps per call" not in plain
