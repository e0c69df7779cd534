"""Run records on disk: atomic writes, safe reads."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path

FINAL_STATUSES = ("ok", "diverged", "oom", "pruned")
STATUSES = (*FINAL_STATUSES, "error")


_PROCESS_START = time.time()


class RecordWriteError(OSError):
    pass


def _clean(obj):
    """JSON has no NaN/inf: store them as null so every reader can parse the record."""
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it.

    A reader sees the old file or the new one, never a partial one; on failure nothing
    under `path` changes and the error says which file could not be written.
    """
    path = Path(path)
    try:
        text = json.dumps(_clean(obj), indent=1, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        msg = f"cannot write {path}: record is not JSON-serialisable ({e})"
        raise RecordWriteError(msg) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RecordWriteError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; others on a cluster must read it
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise RecordWriteError(f"cannot write {path}: {e.strerror or e}") from None


def remove_stale_temps(path: str | Path) -> int:
    """Delete temporary files a killed writer of `path` left behind; returns how many.

    Call it only when about to write `path` yourself: they are never read as records, but
    without this every killed write would leave one for good. Only files older than this
    process count: a write takes milliseconds, so those writers are dead, while a newer file
    may belong to a duplicate job still writing (an orphan of a killed Snakemake).
    """
    path = Path(path)
    n = 0
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.stat().st_mtime < _PROCESS_START:
                tmp.unlink()
                n += 1
        except OSError:
            pass
    return n


def foreign_version(rec: dict) -> str | None:
    """The bench version that wrote `rec` when it is not this one (its numbers mean something
    else), else None."""
    from .. import __version__

    version = rec.get("bench_version")
    return None if version == __version__ else str(version)


def read_record(path: str | Path) -> dict | None:
    """The record at `path`, or None when it is missing or unreadable (never half-read)."""
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "run_id" in rec and "status" in rec else None
