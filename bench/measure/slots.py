"""CPU slots: never more measuring processes than the cores they were promised.

`snakemake --cores 8` on a 2-core laptop would start eight single-thread jobs on two
cores and every throughput figure would be a quarter of the truth. A job first takes one of
`cores // threads` slots (an exclusive lock file per slot, per machine) and holds it while
it measures; extra jobs wait idle. Locks vanish with the process, so a killed job frees its
slot at once.
"""

from __future__ import annotations

import fcntl
import glob
import os
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path


def available_cores() -> int:
    """Cores this process may run on (respects taskset, cgroups cpusets and SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def visible_gpus() -> int:
    """GPUs this process may use, without importing a framework."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([d for d in env.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))


def cpu_slot(threads: int, lock_dir: str | None = None, poll_s: float = 0.5):
    """Hold one of `available_cores() // threads` slots (at least one) while in the block."""
    return slot("cpu", max(1, available_cores() // max(threads, 1)), lock_dir, poll_s)


def gpu_slot(lock_dir: str | None = None, poll_s: float = 0.5):
    """Hold one slot per visible GPU: one GPU job at a time per GPU."""
    return slot("gpu", max(1, visible_gpus()), lock_dir, poll_s)


@contextmanager
def slot(kind: str, n: int, lock_dir: str | None = None, poll_s: float = 0.5):
    """Hold one of `n` exclusive `kind` slots on this machine while in the block."""
    base = Path(lock_dir or os.environ.get("BENCH_SLOT_DIR") or tempfile.gettempdir())
    d = base / f"bench-slots-{os.getuid()}"  # per user: another user's folder is not ours
    d.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        for i in range(n):
            f = open(d / f"{kind}-{i}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield i
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()
            return
        if not waited:
            print(f"waiting for a free {kind} slot ({n} on this machine)", file=sys.stderr,
                  flush=True)
            waited = True
        time.sleep(poll_s)


@contextmanager
def measuring_slots(threads: int, gpu: bool):
    """The CPU slot, plus a GPU slot for GPU runs; BENCH_SLOTS=0 turns both off."""
    with ExitStack() as stack:
        # Under SLURM the scheduler already gives each job its own cores.
        if os.environ.get("BENCH_SLOTS", "1") != "0" and "SLURM_JOB_ID" not in os.environ:
            stack.enter_context(cpu_slot(threads))
            if gpu:
                stack.enter_context(gpu_slot())
        yield
