"""Timing blocks, host memory and environment facts; framework-neutral."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BlockTimer:
    """Groups timed segments of steps into blocks of at least `min_steps` steps and
    `min_seconds`.

    A segment is the steps between two host syncs. The loop asks `due` after each call
    (one step, or up to `room` steps) whether to sync: after the first step (compilation), at the end of the `warmup` steps,
    and when the open block is long enough. Between syncs a GPU host queues steps ahead, so
    a segment's time, taken after the sync that drains the queue, is what its steps cost.

    Throughput is the median over blocks, and their spread, so one slow moment on a
    shared machine moves one block, not the figure. Steps before `warmup` are timed apart
    (compilation and allocator warm-up) and never enter a block. Step times are per block
    (its seconds over its steps): single steps are not timed, as that needs a sync each.
    """

    warmup: int
    min_steps: int
    min_seconds: float
    seen: int = 0
    warmup_seconds: float = 0.0
    first_step_seconds: float = 0.0
    timed_steps: int = 0
    timed_seconds: float = 0.0
    blocks: list[tuple[int, float, int]] = field(default_factory=list)  # samples, secs, steps
    _open: list[float] = field(default_factory=lambda: [0, 0, 0.0])  # steps, samples, secs

    def due(self, pending: int, seconds: float) -> bool:
        """Whether to sync after `pending` untimed steps that the host took `seconds` to
        queue (a lower bound on their time)."""
        if self.seen == 0:  # the first step alone: it holds the compilation
            return True
        if self.seen < self.warmup:
            return self.seen + pending >= self.warmup
        o = self._open
        return o[0] + pending >= self.min_steps and o[2] + seconds >= self.min_seconds

    def room(self, pending: int) -> int:
        """How many more steps a caller that queues several per call may queue on top of
        `pending` before `due` must be asked: the first step alone, then to the warm-up's
        end, then to the open block's `min_steps`, then any number (the block still waits
        for its `min_seconds`)."""
        if self.seen == 0:
            return 1
        if self.seen < self.warmup:
            return max(self.warmup - self.seen - pending, 1)
        short = self.min_steps - self._open[0] - pending
        return short if short > 0 else 1 << 30

    def add(self, seconds: float, samples: int, steps: int = 1) -> None:
        """One segment: `steps` steps of `samples` samples in all, `seconds` to the sync."""
        if self.seen == 0:
            self.first_step_seconds = seconds / steps
        self.seen += steps
        if self.seen <= self.warmup:
            self.warmup_seconds += seconds
            return
        self.timed_steps += steps
        self.timed_seconds += seconds
        o = self._open
        o[0] += steps
        o[1] += samples
        o[2] += seconds
        if o[0] >= self.min_steps and o[2] >= self.min_seconds:
            self.blocks.append((int(o[1]), o[2], int(o[0])))
            self._open = [0, 0, 0.0]

    def summary(self) -> dict:
        """Median/min/max samples per second over blocks, and of the blocks' mean step times.

        When the run was too short for one full block, the partial block is used and
        `throughput_partial` says so. The caller names the rates (training, inference).
        """
        blocks = list(self.blocks)
        partial = False
        if not blocks and self._open[0]:
            blocks = [(int(self._open[1]), self._open[2], int(self._open[0]))]
            partial = True
        rates = [n / s for n, s, _ in blocks if s > 0]
        step_ms = [s / k * 1e3 for _, s, k in blocks if k]
        return {
            "samples_per_s": statistics.median(rates) if rates else None,
            "samples_per_s_min": min(rates) if rates else None,
            "samples_per_s_max": max(rates) if rates else None,
            "throughput_blocks": len(rates),
            "throughput_partial": partial,
            "timed_steps": self.timed_steps,
            "timed_seconds": self.timed_seconds,
            "first_step_s": self.first_step_seconds,
            "warmup_s": self.warmup_seconds,
            # a block's mean step time, its median and its worst over the blocks
            "block_step_ms_median": float(np.median(step_ms)) if step_ms else None,
            "block_step_ms_max": max(step_ms) if step_ms else None,
        }

    def rates(self, what: str) -> dict:
        """summary() with the throughput keys named for what was counted:
        `<what>_per_s[_min|_max]`, e.g. train_samples_per_s or decode_tokens_per_s."""
        out = self.summary()
        for k in ("", "_min", "_max"):
            out[f"{what}_per_s{k}"] = out.pop(f"samples_per_s{k}")
        return out


def release_free_memory() -> None:
    """Hand freed heap back to the OS (glibc), so a run's RSS starts from live memory only.

    Several runs share a process in a job; without this, memory freed by an earlier, larger
    run stays resident and would be counted in every later run's peak.
    """
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status in MB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Current resident set size (VmRSS)."""
    return _status_mb("VmRSS") or 0.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size since the last reset (VmHWM), else since process start."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def host_facts() -> dict:
    """What the record needs to say where it ran, and how loaded the machine was."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start": load1,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


class Stopwatch:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
