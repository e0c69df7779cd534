"""`python -m bench fetch mnist imdb`: download the user datasets Keras uses, verified.

mnist.npz and imdb.npz are the only datasets that are not embedded; this fetches the same
files `keras.datasets` downloads, from the same place, and checks the same sha256, without
importing a framework. A download streams into a temporary file next to the destination and
replaces it only once the size and hash check out, so an interrupted or corrupt transfer never
leaves a partial file nor damages a good one already there. imdb.npz holds pickled arrays:
it is never unpickled here unless `--allow-pickle` is given.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from .data import DataError

# Keras's own origin and file_hash, copied from keras/src/datasets/mnist.py and imdb.py
# (load_data); tests check that they still appear in the installed Keras source.
_KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
REGISTRY: dict[str, tuple[str, str, str]] = {
    "mnist": (_KERAS_ORIGIN + "mnist.npz",
              "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1", "mnist.npz"),
    "imdb": (_KERAS_ORIGIN + "imdb.npz",
             "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f", "imdb.npz"),
}
MEMBERS = ("x_train", "y_train", "x_test", "y_test")
CHUNK = 1 << 16


def add_parsers(sub) -> None:
    p = sub.add_parser("fetch", help="download mnist.npz / imdb.npz (Keras's files, sha256 "
                                     "verified) into the data directory")
    # Checked in main rather than with `choices`: argparse would print a usage block too.
    p.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    p.add_argument("--data-dir", default="data", help="where mnist.npz / imdb.npz go")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load imdb.npz's pickled arrays as a check (runs code from it)")
    p.set_defaults(func=main)


def _log(msg: str) -> None:
    print(f"fetch: {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _download(url: str, dest: Path, timeout: float) -> tuple[str, str]:
    """Stream url into a temp file beside dest; returns its sha256 and the temp path."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as r:
            length = r.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            _log(f"{dest.name} <- {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
            h, done, next_pct, last = hashlib.sha256(), 0, 10, time.monotonic()
            while chunk := r.read(CHUNK):
                f.write(chunk)
                h.update(chunk)
                done += len(chunk)
                pct = 100 * done // total if total else 0
                # Every tenth, or every 5 s when the size is unknown or the link is slow.
                if done != total and ((total and pct >= next_pct)
                                      or time.monotonic() - last >= 5):
                    _log(f"{dest.name}: {done / 1e6:.1f} MB" + (f" ({pct}%)" if total else ""))
                    next_pct, last = (pct // 10 + 1) * 10, time.monotonic()
        if total is not None and done != total:
            raise DataError(f"download of {url} truncated: got {done} of {total} bytes")
        return h.hexdigest(), tmp
    except BaseException as e:  # KeyboardInterrupt too: never leave a partial file
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, urllib.error.HTTPError):
            raise DataError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
        if isinstance(e, urllib.error.URLError):
            raise DataError(f"cannot reach {url}: {e.reason}") from None
        if isinstance(e, (OSError, http.client.HTTPException)):
            raise DataError(f"download of {url} failed: {type(e).__name__}: {e}") from None
        raise


def _check(name: str, path: Path, allow_pickle: bool) -> None:
    """Structure of a verified file: the arrays the loaders read, never unpickled by default."""
    import numpy as np

    from . import data

    # np.load falls back to unpickling what is neither .npy nor zip: test the container first.
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not an .npz (zip) archive")
    if name == "mnist":
        try:
            with np.load(path, allow_pickle=False) as z:
                shapes = {k: z[k].shape for k in MEMBERS}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise DataError(f"{path} is not an mnist.npz in the Keras layout: {e}") from None
        if any(len(shapes[k]) != 3 or shapes[k][1:] != (28, 28) for k in ("x_train", "x_test")):
            raise DataError(f"{path}: x arrays have shapes {shapes}, want (N, 28, 28)")
        return
    try:
        with zipfile.ZipFile(path) as z:
            missing = {f"{k}.npy" for k in MEMBERS} - set(z.namelist())
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not an .npz (zip) archive: {e}") from None
    if missing:
        raise DataError(f"{path} lacks {', '.join(sorted(missing))}")
    if allow_pickle:
        data.load(name, path.parent, allow_pickle=True)
    else:
        _log(f"{path.name} holds pickled arrays: training on {name} needs --allow-pickle")


def fetch(name: str, data_dir: str | Path = "data", *, allow_pickle: bool = False,
          registry: dict | None = None, timeout: float = 30) -> Path:
    """Make data_dir/<file> the verified Keras file for name; raises DataError (one line)."""
    registry = REGISTRY if registry is None else registry
    if name not in registry:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(registry)}")
    url, sha, filename = registry[name]
    dest = Path(data_dir) / filename
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_file():
            if _sha256(dest) == sha:
                _log(f"{dest} already there, sha256 {sha} verified")
                _check(name, dest, allow_pickle)
                return dest
            _log(f"{dest} exists but its sha256 differs: downloading it again")
        got, tmp = _download(url, dest, timeout)
        try:
            if got != sha:
                raise DataError(f"checksum mismatch for {url}: sha256 {got}, expected {sha}")
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone already once replaced
    except OSError as e:
        raise DataError(f"cannot write {dest}: {e}") from None
    _log(f"{dest} done, sha256 {sha} verified")
    _check(name, dest, allow_pickle)
    return dest


def main(a) -> int:
    unknown = [n for n in a.names if n not in REGISTRY]
    if unknown:
        raise DataError(f"unknown dataset {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(REGISTRY)}")
    for name in dict.fromkeys(a.names):
        fetch(name, a.data_dir, allow_pickle=a.allow_pickle)
    return 0
