"""Liveness: who runs a trial, whether it is still there, and reaping the trials it left.

Resume. A worker writes its owner (host, boot id, pid and process start time) and a
heartbeat into each trial it runs. Before each trial every worker *reaps* RUNNING trials
whose owner is gone: on the same machine that is exact (the pid is dead or belongs to
another process); elsewhere the heartbeat is older than ``grace_s``. A reaped trial is
marked FAIL with ``bench:void = lost`` and its ticket is reissued with the same parameters
(see `tickets`), so its budget is retried; finished trials are never rerun.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

from .common import log
from .storage import trial_id
from .tickets import TICKET, VOID

# system attributes kept on the trials a worker runs
OWNER, HEARTBEAT = "bench:owner", "bench:heartbeat"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such live process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie is dead too


def owner_info(worker: int) -> dict:
    pid = os.getpid()
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid,
            "start": _start_ticks(pid) or "", "worker": worker}


def owner_alive(owner: dict | None, last_beat: float | None, grace_s: float,
                now: float | None = None) -> bool:
    """Whether the process that runs a trial is still there.

    Same machine (host and boot id match): exact, from /proc (a reused pid has another
    start time). Another machine: its heartbeat is younger than `grace_s`.
    """
    now = time.time() if now is None else now
    if owner and owner.get("host") == socket.gethostname() and owner.get("boot") == _boot_id():
        if not Path("/proc/self/stat").exists():  # not Linux: the pid is all we have
            try:
                os.kill(int(owner["pid"]), 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return _start_ticks(int(owner["pid"])) == (owner.get("start") or None)
    return last_beat is not None and now - last_beat <= grace_s


def reap(study, storage, defn: dict) -> int:
    """Mark RUNNING trials whose worker is gone as FAIL (void: lost); returns how many.

    `storage` is the one `study` was loaded from.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = t.system_attrs.get(HEARTBEAT)
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        owner = t.system_attrs.get(OWNER)
        if owner is None:  # popped a moment ago; its owner is being written
            if beat is not None and time.time() - beat <= defn["grace_s"]:
                continue
        elif owner_alive(owner, beat, defn["grace_s"]):
            continue
        tid = trial_id(storage, study, t.number)
        try:
            storage.set_trial_system_attr(tid, VOID, "lost")
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # finished meanwhile, or another worker reaped it first
        who = f"pid {owner['pid']} on {owner['host']}" if owner else "an unknown worker"
        log(f"trial {t.number} (ticket {t.system_attrs.get(TICKET)}) was left running by "
            f"{who}, which is gone: marked lost; its parameters run again")
        n += 1
    return n


class Heartbeat:
    """Writes the time into the trial every `every` seconds while training runs."""

    def __init__(self, storage, trial_id: int, every: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, every),
                                        daemon=True)

    def _beat(self, storage, trial_id, every):
        while not self._stop.wait(every):
            try:
                storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
            except Exception:  # noqa: BLE001 - the trial finished or storage hiccup: stop
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
