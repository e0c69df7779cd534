"""bench.measure: timed segments and blocks, host memory and facts."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.measure import BlockTimer, host_facts


def test_warmup_steps_never_enter_blocks():
    t = BlockTimer(warmup=3, min_steps=2, min_seconds=0.0)
    for s in (5.0, 1.0, 1.0):  # slow compilation step, then warm-up
        t.add(s, 10)
    assert t.blocks == [] and t.timed_steps == 0
    for _ in range(4):
        t.add(0.1, 10)
    out = t.summary()
    assert out["first_step_s"] == 5.0
    assert out["warmup_s"] == pytest.approx(7.0)
    assert out["timed_steps"] == 4
    assert out["timed_seconds"] == pytest.approx(0.4)
    assert out["throughput_blocks"] == 2
    assert out["samples_per_s"] == pytest.approx(100.0)
    assert out["throughput_partial"] is False


def test_block_needs_both_min_steps_and_min_seconds():
    # short steps: the time floor decides (4 x 0.125 s >= 0.5 s, although 3 steps are enough)
    t = BlockTimer(warmup=0, min_steps=3, min_seconds=0.5)
    for _ in range(3):
        t.add(0.125, 1)
    assert t.blocks == []
    t.add(0.125, 1)
    assert t.blocks == [(4, 0.5, 4)]
    # long steps: the step floor decides (3 steps although 1 already passes 0.5 s)
    t = BlockTimer(warmup=0, min_steps=3, min_seconds=0.5)
    t.add(1.0, 1)
    t.add(1.0, 1)
    assert t.blocks == []
    t.add(1.0, 1)
    assert t.blocks == [(3, 3.0, 3)]


def test_median_min_max_over_blocks_and_open_tail_excluded():
    t = BlockTimer(warmup=0, min_steps=1, min_seconds=0.0)
    for seconds in (1.0, 0.5, 0.25, 2.0, 0.1):  # 100 samples per step
        t.add(seconds, 100)
    out = t.summary()
    rates = [100 / s for s in (1.0, 0.5, 0.25, 2.0, 0.1)]
    assert out["throughput_blocks"] == 5
    assert out["samples_per_s"] == pytest.approx(float(np.median(rates)))
    assert out["samples_per_s_min"] == pytest.approx(50.0)
    assert out["samples_per_s_max"] == pytest.approx(1000.0)

    t = BlockTimer(warmup=0, min_steps=2, min_seconds=0.0)
    for _ in range(4):
        t.add(1.0, 10)
    t.add(0.001, 10)  # a lone fast step left open must not move the figure
    out = t.summary()
    assert out["throughput_blocks"] == 2
    assert out["samples_per_s_max"] == pytest.approx(10.0)
    assert out["timed_steps"] == 5


def test_partial_block_is_used_and_flagged():
    t = BlockTimer(warmup=1, min_steps=100, min_seconds=10.0)
    t.add(3.0, 32)
    t.add(0.5, 32)
    t.add(0.5, 16)
    out = t.summary()
    assert out["throughput_partial"] is True
    assert out["throughput_blocks"] == 1
    assert out["samples_per_s"] == pytest.approx(48.0)


def test_no_timed_steps_gives_none_not_crash():
    t = BlockTimer(warmup=5, min_steps=1, min_seconds=0.0)
    t.add(1.0, 10)
    out = t.summary()
    assert out["samples_per_s"] is None
    assert out["block_step_ms_median"] is None and out["block_step_ms_max"] is None
    assert out["throughput_blocks"] == 0 and out["throughput_partial"] is False
    assert out["first_step_s"] == 1.0


def test_step_times_are_block_means_in_ms():
    t = BlockTimer(warmup=0, min_steps=1, min_seconds=0.0)
    steps = [0.001 * k for k in range(1, 101)]
    for s in steps:
        t.add(s, 1)
    out = t.summary()
    assert out["block_step_ms_median"] == pytest.approx(np.median(steps) * 1e3)
    assert out["block_step_ms_max"] == pytest.approx(100.0)
    # a segment of 10 steps in 1 s is one block of 100 ms steps
    t = BlockTimer(warmup=0, min_steps=10, min_seconds=0.0)
    t.add(1.0, 80, steps=10)
    assert t.summary()["block_step_ms_median"] == pytest.approx(100.0)


def test_due_syncs_after_the_first_step_at_warm_up_end_and_when_a_block_is_full():
    t = BlockTimer(warmup=4, min_steps=5, min_seconds=0.5)
    assert t.due(1, 0.0)  # the first step alone: it holds the compilation
    t.add(3.0, 8)
    assert not t.due(2, 0.0) and t.due(3, 0.0)  # steps 2-4 end the warm-up
    t.add(0.3, 24, steps=3)
    assert t.warmup_seconds == pytest.approx(3.3)
    assert not t.due(4, 10.0)  # 4 steps: too few however long
    assert not t.due(5, 0.1)  # the host queued 5 steps in 0.1 s: not yet 0.5 s
    assert t.due(5, 0.6)
    t.add(0.7, 40, steps=5)
    assert t.blocks == [(40, 0.7, 5)] and t.summary()["first_step_s"] == 3.0


def test_rates_name_the_throughput_keys():
    t = BlockTimer(warmup=0, min_steps=1, min_seconds=0.0)
    t.add(0.5, 100)
    out = t.rates("infer_samples")
    assert out["infer_samples_per_s"] == 200.0 and "samples_per_s" not in out
    assert out["infer_samples_per_s_min"] == out["infer_samples_per_s_max"] == 200.0



def test_peak_rss_positive_and_sees_allocation():
    # In a fresh process: in this one, memory that earlier tests freed can stay resident and
    # serve the new block without raising the resident set at all.
    code = ("import numpy as np; from bench.measure import peak_rss_mb, reset_peak_rss; "
            "assert peak_rss_mb() > 0; reset_peak_rss(); before = peak_rss_mb(); "
            "block = np.ones(64 * 2**20 // 8); print(before, peak_rss_mb())")  # 64 MiB, touched
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-2000:]
    before, after = map(float, p.stdout.split())
    assert after >= before + 40, (before, after)


def test_host_facts_keys():
    facts = host_facts()
    for key in ("hostname", "cpu_model", "cpu_count", "load_avg_1m_start", "python_version",
                "platform"):
        assert key in facts
    assert facts["cpu_count"] >= 1
