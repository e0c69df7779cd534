"""The Generation page's decode-speed section: shown when `python -m bench decode-speed`
wrote its table, absent otherwise (the page stays as it was)."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
from report_data import build, pages_text, smoke_records, visible_text

from bench import report
from bench.measure.decode_speed import build_doc, cells, uncached
from bench.report import generation_decode
from bench.study.records import write_json_atomic


def decode_doc() -> dict:
    """Two lengths at batch 1 and 64, greedy; ours in PyTorch at 0.9x and 1.1x Hugging
    Face's, TensorFlow at 1.5x; the cache 2x at 20 tokens, 4x at 64; uncached left out at
    batch 64 x 64 tokens."""
    a = argparse.Namespace(batches="1,64", lengths="20,64", beams="1", precisions="fp32",
                           skip="", skip_uncached="b64:l64", threads=1, repeats=2, rounds=1)
    res: dict = {"torch": {}, "tf": {}, "hf": {}}
    for cell in cells(a):
        key = "/".join(map(str, cell)) + "/"
        _, batch, _, length = cell
        hf = 100.0 * batch
        res["hf"][key + "cache"] = hf
        res["torch"][key + "cache"] = hf * (0.9 if batch == 1 else 1.1)
        res["tf"][key + "cache"] = hf * 1.5
        if uncached(a, cell):
            up = 2.0 if length == 20 else 4.0
            res["torch"][key + "nocache"] = res["torch"][key + "cache"] / up
            res["tf"][key + "nocache"] = res["tf"][key + "cache"] / up
    return build_doc(a, res, {"load_avg_1m_start": 0.5, "load_avg_1m_end": 0.75,
                              "gemm_gflops": {"fp32": 74.0, "bf16": 190.0},
                              "versions": {"torch": "2.x"}})


@pytest.fixture(scope="module")
def cnn_only(tmp_path_factory):
    return [r for r in smoke_records() if r["family"] == "cnn"]


def test_the_table_is_on_the_generation_page_when_written(tmp_path, cnn_only):
    path = tmp_path / "results" / "decode_speed.json"
    write_json_atomic(path, decode_doc())
    summary_dir = tmp_path / "r"
    out = build(summary_dir, cnn_only)  # without the table
    before = pages_text(out)["generation.html"]
    report.build_report(summary_dir / "results" / "summary.parquet", out, None, None, path)
    texts = pages_text(out)
    gen = visible_text(texts["generation.html"])
    assert "holds no seq2seq runs" in gen  # the runs' message stays, the table follows
    assert "decode speed against Hugging Face" in gen
    assert "ours, PyTorch: cached" in gen and "Hugging Face generate" in gen
    assert ("In fp32, our cached PyTorch decode is 0.90-1.10x Hugging Face's (0.90-1.10x at "
            "20, 0.90-1.10x at 64 tokens; at least 0.8x in every cell)") in gen
    assert "the cache speeds ours, PyTorch up 2.00x at 20, 4.00x at 64 tokens" in gen
    assert "ours in TensorFlow is 1.50x Hugging Face's" in gen
    assert "not measured in 1 of 4 cells (--skip-uncached b64:l64)" in gen
    assert "load average 0.50 to 0.75" in gen and "fp32 74, bf16 190 GFLOP/s" in gen
    csv = pd.read_csv(out / "data" / "generation-decode-speed.csv")
    assert len(csv) == 4 and list(csv["torch_over_hf"].round(2)) == [0.9, 0.9, 1.1, 1.1]
    assert csv["torch_speedup"].isna().sum() == 1
    assert "decode speed" not in visible_text(before)
    # other pages are untouched by it
    assert "decode speed against Hugging Face" not in visible_text(texts["index.html"])


def test_no_file_no_section(tmp_path, cnn_only):
    out = build(tmp_path, cnn_only)
    report.build_report(tmp_path / "results" / "summary.parquet", out, None, None,
                        tmp_path / "results" / "decode_speed.json")  # absent
    gen = pages_text(out)["generation.html"]
    assert "decode speed" not in visible_text(gen).lower()
    assert not (out / "data" / "generation-decode-speed.csv").exists()


def test_a_goal_missed_is_named_and_a_bad_file_is_one_line(tmp_path):
    doc = decode_doc()
    doc["cells"][1]["torch_cache"] = 0.5 * doc["cells"][1]["hf_cache"]
    panel = generation_decode.decode_speed_panel(doc, "k")
    assert "below 0.8x in batch 1 greedy 64" in panel.caption
    bad = tmp_path / "decode.json"
    bad.write_text(json.dumps({"what": "something else"}))
    with pytest.raises(generation_decode.DecodeSpeedError, match="not a decode-speed table"):
        generation_decode.load_decode_speed(bad)
