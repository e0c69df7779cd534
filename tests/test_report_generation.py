"""The Generation page (bench.report.generation and its satellites): translation quality,
decoding, beam against greedy, examples, and robustness to older records."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from report_data import (
    SEQ_DECODE_RATIO,
    SEQ_EM,
    SEQ_EXAMPLES,
    SEQ_LONG,
    SIZES,
    _gen_panel,
    assert_same,
    figures,
    frame,
    pages_text,
    seq2seq_record,
    seq2seq_records,
    smoke_records,
    visible_text,
)

from bench import report
from bench.report import generation, tables

pytestmark = pytest.mark.usefixtures("strict")


def test_generation_page_is_built_linked_and_the_other_pages_cope(gen_report):
    out = gen_report
    assert "generation.html" in report.PAGE_FILES
    texts = pages_text(out)
    for name, text in texts.items():
        assert 'href="generation.html"' in text, name
        assert "could not be built" not in text, name
    gen = texts["generation.html"]
    assert '<a href="generation.html" class="here" aria-current="page">Generation</a>' in gen
    assert gen.count("plotly-graph-div") == 3  # quality, speed, beam; examples is a table
    key = "seq2seq-en-fr-numbers"
    for panel in ("quality", "speed", "beam", "examples"):
        assert (out / "data" / f"generation-{panel}-{key}.csv").is_file()
        assert f'href="data/generation-{panel}-{key}.csv"' in gen
    # the scale page calls seq2seq's accuracy exact match; the sweep has nothing to sweep
    scale = visible_text(texts["scale.html"])
    assert "seq2seq on en_fr_numbers: exact match, throughput and memory" in scale
    assert "seq2seq: test accuracy is the greedy exact match" in scale
    assert "No optimizer x regulariser sweep ran for seq2seq on en_fr_numbers" in (
        visible_text(texts["sweep.html"]))
    index = visible_text(texts["index.html"])
    assert "seq2seq on en_fr_numbers (pooled, 12 runs): m (172k params) beats xs" in index
    assert "for seq2seq test accuracy is the greedy exact match, at chance 0" in index
    assert "Generation: translation quality" in index
    # the published comparison stays with the MNIST-1D classifiers
    pub = pd.read_csv(out / "data" / "published.csv")
    assert set(pub["family"]) == {"cnn", "gru"}


def test_generation_quality_means_and_failures_at_zero(gen_report):
    pts = pd.read_csv(gen_report / "data" / "generation-quality-seq2seq-en-fr-numbers.csv")
    recs = seq2seq_records()
    pooled = pts[pts["framework"] == tables.POOLED].set_index(["metric", "size"])
    assert pooled.loc[("exact_match", "s"), "y"] == pytest.approx(SEQ_EM["s"])
    assert pooled.loc[("exact_match", "s"), "n_seeds"] == 6
    # the diverged PyTorch m run enters exact match at 0 (not 1/62), on both test sets
    ok_m = [r["exact_match"] for r in recs if r["size"] == "m" and r["status"] == "ok"]
    assert len(ok_m) == 5
    at = pooled.loc[("exact_match", "m")]
    assert at["y"] == pytest.approx(sum(ok_m) / 6) and at["n_failed"] == 1
    assert pooled.loc[("exact_match_long", "m"), "y"] == 0.0
    torch_m = pts[(pts["trace"] == "torch exact_match") & (pts["size"] == "m")].iloc[0]
    # PyTorch seeds 0 and 2 at 0.79 and 0.81, seed 1 diverged: at 0
    assert torch_m["y"] == pytest.approx((2 * SEQ_EM["m"] + 0.0) / 3)
    assert torch_m["n_failed"] == 1 and torch_m["n_seeds"] == 3
    # BLEU and chrF: ok runs only, per framework, never pooled
    bleu = pts[(pts["trace"] == "torch bleu") & (pts["size"] == "m")].iloc[0]
    assert bleu["n_seeds"] == 2 and bleu["y"] == pytest.approx(np.mean(
        [r["bleu"] for r in recs if r["framework"] == "torch" and r["size"] == "m"
         and r["status"] == "ok"]))
    assert not ((pts["framework"] == tables.POOLED) & pts["metric"].str.contains("bleu|chrf")).any()
    df = tables.normalise(pd.DataFrame([{"family": "seq2seq", "status": "oom", "n_classes": 62},
                                        {"family": "cnn", "status": "oom", "n_classes": 10}]))
    assert list(df["chance"]) == [0.0, 0.1] and list(df["acc_stat"]) == [0.0, 0.1]


def test_generation_captions_follow_the_data(tmp_path):
    page = generation.generation_page(frame(seq2seq_records(), tmp_path))
    for panel in figures(page):  # the CSV rows are the plotted points
        assert len(panel.fig.data) >= 4, panel.key
        for trace in panel.fig.data:
            rows = panel.data[panel.data["trace"] == trace.meta]
            for axis in ("x", "y"):
                assert_same(list(rows[axis]), list(getattr(trace, axis)),
                             f"{panel.key} {trace.meta}")
    quality = _gen_panel(page, "quality").caption
    # m: 0.8 +- 0.01 by seed and one run at 0 (the 6 runs' mean 2/3); xs 0.2 +- 0.01
    assert re.search(r"pooled, 12 runs: m \(172k params\) beats xs \(6\.69k params\) by "
                     r"\+0\.467 exact match \(95% Welch CI \[\+0\.\d+, \+0\.\d+\]\)", quality)
    assert "Exact match on test_long stays near 0, as expected" in quality
    assert "1 of 18 runs failed (exact match counted at 0; excluded from BLEU and chrF)" in (
        quality)
    speed = _gen_panel(page, "speed")
    assert speed.caption.count("throughput ratio 2.00x: PyTorch is 2.00x faster than "
                               "TensorFlow (95% CI") == 3
    assert speed.caption.count("(latency ratio TensorFlow/PyTorch 1.50x) PyTorch is 1.50x "
                               "faster than TensorFlow") == 3
    ratio = speed.data[speed.data["trace"] == "ratio decode_tokens_per_s"]
    # exact where both frameworks ran the same seeds' offsets; at m PyTorch lost seed 1
    np.testing.assert_allclose(ratio["y"], SEQ_DECODE_RATIO, rtol=1e-3)
    np.testing.assert_allclose(ratio["y"].iloc[:2], SEQ_DECODE_RATIO, rtol=1e-9)
    beam = _gen_panel(page, "beam")
    helps = beam.caption.split("Beam search helps (interval above zero): ")[1].split(". ")[0]
    assert re.fullmatch(r"exact match on test at xs \+0\.005 \[\+0\.004, \+0\.006\], "
                        r"s \+0\.005 \[.*?\], m \+0\.005 \[.*?\]; "
                        r"BLEU on test at xs \+0\.50 \[.*?\], s \+0\.50 \[.*?\], "
                        r"m \+0\.50 \[.*?\]", helps)
    unclear = beam.caption.split("No clear difference (interval includes zero): ")[1]
    assert "exact match on test_long at xs +0.000" in unclear and "BLEU on test_long" in unclear
    assert "hurts" not in beam.caption
    # every size alike: no claim, and the caption says so
    flat = generation.generation_page(frame(seq2seq_records(None, {s: 0.5 for s in SIZES}),
                                            tmp_path, "flat.parquet"))
    quality = _gen_panel(flat, "quality").caption
    assert ("pooled, 12 runs: no clear difference in exact match between m (172k params) and "
            "xs (6.69k params) (difference +0.000, 95% Welch CI [") in quality
    assert "beats" not in quality


def test_generation_examples_table_escapes_the_sentences(tmp_path):
    recs = seq2seq_records()
    bad = "<b>vingt & un</b>"
    for r in recs:
        if r["status"] == "ok":
            r["examples"][0]["greedy"] = bad
    from bench.report.html import render_page

    page = generation.generation_page(frame(recs, tmp_path))
    text = render_page(page, "")
    sec = re.search(r'<section class="panel" id="generation-examples-.*?</section>', text,
                    flags=re.S).group(0)
    assert "&lt;b&gt;vingt &amp; un&lt;/b&gt;" in sec and "<b>" not in sec
    shown = visible_text(sec)
    for src, ref in SEQ_EXAMPLES + SEQ_LONG:
        assert src in shown and ref in shown
    # the best of the largest size by validation exact match: PyTorch seed 2
    assert "cent mille [torch 2]" in shown and "Run torch m adam+none seed 2" in shown
    ex = _gen_panel(page, "examples").data
    assert len(ex) == 6 and set(ex["test"]) == {"test", "test_long"}
    assert set(ex["seed"]) == {2} and list(ex["exact"])[:3] == ["beam", "greedy and beam",
                                                                 "greedy and beam"]


def test_generation_page_without_seq2seq_runs_says_so(tmp_path):
    page = generation.generation_page(frame([r for r in smoke_records() if r["family"] == "cnn"],
                                            tmp_path))
    text = "".join(map(str, page.blocks))
    assert "holds no seq2seq runs" in text and not page.panels
    failed = [seq2seq_record("torch", "xs", 0, "oom"), seq2seq_record("tf", "xs", 1000, "error")]
    page = generation.generation_page(frame(failed, tmp_path, "failed.parquet"))
    assert "None of the 2 seq2seq runs finished with status ok" in "".join(map(str, page.blocks))
    assert not page.panels


def test_generation_page_copes_with_seq2seq_records_without_the_new_fields(tmp_path):
    """Records without translation quality, decoding speed or examples (an older engine):
    each panel says what is missing; a failed run alone is no exact-match point at 0."""
    new = tables.NUMBER_COLUMNS[tables.NUMBER_COLUMNS.index("exact_match"):] + ["examples"]
    recs = [{k: v for k, v in r.items() if k not in new} for r in seq2seq_records()]
    page = generation.generation_page(frame(recs, tmp_path))
    assert [p.fig for p in page.panels] == [None] * 4
    text = " ".join(p.message for p in page.panels)
    for what in ("translation quality", "decoding speed", "both greedy and beam-search scores",
                 "decoded examples"):
        assert f"recorded {what}" in text or f"recorded its {what}" in text, what
    # one framework at one size, one seed: no interval, no ratio, no size trend
    one = [r for r in seq2seq_records() if r["framework"] == "tf" and r["size"] == "s"
           and r["seed"] == 1000]
    page = generation.generation_page(frame(one, tmp_path, "one.parquet"))
    assert "only one size has successful runs" in _gen_panel(page, "quality").caption
    assert "no framework ratio" in _gen_panel(page, "speed").caption
    assert "Beam search helps nowhere" in _gen_panel(page, "beam").caption
