"""bench.measure.slots: never more measuring processes than the cores they were promised."""

import contextlib
import os
import subprocess
import sys
import textwrap
import time

from bench.measure import slots

WAITER = textwrap.dedent("""
    import sys
    from bench.measure.slots import slot
    with slot("cpu", 1, sys.argv[1], poll_s=0.05) as i:
        print("got", i, flush=True)
""")


def test_available_cores():
    n = slots.available_cores()
    assert isinstance(n, int) and n >= 1
    assert n <= (os.cpu_count() or n)


def test_second_holder_waits_until_release(tmp_path, repo_root):
    with slots.slot("cpu", 1, str(tmp_path), poll_s=0.05) as i:
        assert i == 0
        proc = subprocess.Popen([sys.executable, "-c", WAITER, str(tmp_path)], cwd=repo_root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # it says it waits (stderr) rather than starting (stdout, then exit)
            line = proc.stderr.readline()
            assert "waiting for a free cpu slot" in line, (line, proc.stdout.read())
            time.sleep(0.3)
            assert proc.poll() is None, "second holder got the slot while the first held it"
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert out.strip() == "got 0"


def test_killed_holder_frees_slot(tmp_path, repo_root):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom bench.measure.slots import slot\n"
         "with slot('cpu', 1, sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
         str(tmp_path)],
        cwd=repo_root, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
    finally:
        holder.kill()
        holder.wait()
    t0 = time.monotonic()
    with slots.slot("cpu", 1, str(tmp_path), poll_s=0.05) as i:
        assert i == 0
    assert time.monotonic() - t0 < 2


def test_n_slots_hand_out_distinct_indices(tmp_path):
    with slots.slot("cpu", 2, str(tmp_path)) as a, slots.slot("cpu", 2, str(tmp_path)) as b:
        assert {a, b} == {0, 1}
    # kinds are independent
    with slots.slot("cpu", 1, str(tmp_path)) as a, slots.slot("gpu", 1, str(tmp_path)) as b:
        assert a == b == 0


def test_slot_released_on_exception(tmp_path):
    try:
        with slots.slot("cpu", 1, str(tmp_path)):
            raise RuntimeError("run failed")
    except RuntimeError:
        pass
    t0 = time.monotonic()
    with slots.slot("cpu", 1, str(tmp_path), poll_s=0.05) as i:
        assert i == 0
    assert time.monotonic() - t0 < 1


def test_measuring_slots_switch(monkeypatch, tmp_path):
    taken = []

    def fake_slot(kind, n, lock_dir=None, poll_s=0.5):
        taken.append((kind, n))
        return contextlib.nullcontext(0)

    monkeypatch.setattr(slots, "slot", fake_slot)
    monkeypatch.setenv("BENCH_SLOTS", "0")
    with slots.measuring_slots(threads=1, gpu=True):
        pass
    assert taken == []
    monkeypatch.setenv("BENCH_SLOTS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with slots.measuring_slots(threads=1, gpu=True):
        pass
    assert taken == [("cpu", slots.available_cores()), ("gpu", 1)]
    taken.clear()
    with slots.measuring_slots(threads=10**6, gpu=False):
        pass
    assert taken == [("cpu", 1)]  # more threads than cores still gets one slot


def test_visible_gpus_respects_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert slots.visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert slots.visible_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert slots.visible_gpus() == 0
