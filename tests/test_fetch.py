"""bench.fetch: verified downloads of mnist.npz / imdb.npz, served here from 127.0.0.1 only."""

import hashlib
import http.server
import importlib.util
import io
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from bench import cli, data, fetch


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _mnist_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return _npz(x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
                y_train=np.arange(20, dtype=np.uint8) % 10,
                x_test=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
                y_test=np.arange(10, dtype=np.uint8) % 10)


def _ragged(n: int) -> np.ndarray:
    seqs = np.empty(n, dtype=object)
    for i in range(n):
        seqs[i] = [1] + list(range(3, 3 + i % 7))  # ragged int lists, as in Keras's file
    return seqs


def _imdb_bytes() -> bytes:
    return _npz(x_train=_ragged(20), y_train=np.arange(20) % 2,
                x_test=_ragged(10), y_test=np.arange(10) % 2)


MNIST, IMDB = _mnist_bytes(), _imdb_bytes()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class _Server:
    """Files by path; `truncate` paths announce more bytes than they send."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                srv.requests.append(self.path)
                body = srv.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                extra = 1000 if self.path in srv.truncate else 0
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if extra else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    s.files = {"/mnist.npz": MNIST, "/imdb.npz": IMDB}
    t = threading.Thread(target=s.httpd.serve_forever, args=(0.01,), daemon=True)
    t.start()
    monkeypatch.setattr(fetch, "REGISTRY", {
        "mnist": (f"{s.base}/mnist.npz", _sha(MNIST), "mnist.npz"),
        "imdb": (f"{s.base}/imdb.npz", _sha(IMDB), "imdb.npz"),
    })
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _run(capsys, *argv) -> tuple[int, list[str]]:
    rc = cli.main(["fetch", *argv])
    return rc, capsys.readouterr().err.splitlines()


def _one_line_error(rc, err, *words):
    # Only our own "fetch:" progress lines may precede it: no traceback, no usage block.
    assert rc == 2
    assert err and all(line.startswith("fetch: ") for line in err[:-1]), err
    assert err[-1].startswith("python -m bench fetch: error: ")
    for w in words:
        assert w in err[-1]


def test_cli_downloads_verifies_and_loads(server, tmp_path, capsys):
    d = tmp_path / "data"
    rc, err = _run(capsys, "mnist", "--data-dir", str(d))
    assert rc == 0
    assert (d / "mnist.npz").read_bytes() == MNIST
    assert _sha(MNIST) in err[-1] and str(d / "mnist.npz") in err[-1]
    assert len(err) <= 13  # start, at most ten progress lines, done
    assert data.load("mnist", d).sizes() == {"n_train": 18, "n_val": 2, "n_test": 10}
    assert sorted(p.name for p in d.iterdir()) == ["mnist.npz"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path, capsys, monkeypatch):
    url, _, fn = fetch.REGISTRY["mnist"]
    monkeypatch.setitem(fetch.REGISTRY, "mnist", (url, "0" * 64, fn))
    rc, err = _run(capsys, "mnist", "--data-dir", str(tmp_path))
    _one_line_error(rc, err, "checksum mismatch", _sha(MNIST))
    assert list(tmp_path.iterdir()) == []


def test_truncated_download_leaves_nothing(server, tmp_path, capsys):
    server.truncate.add("/mnist.npz")
    rc, err = _run(capsys, "mnist", "--data-dir", str(tmp_path))
    _one_line_error(rc, err, "truncated")
    assert list(tmp_path.iterdir()) == []


def test_http_error_leaves_nothing(server, tmp_path):
    del server.files["/mnist.npz"]
    with pytest.raises(data.DataError, match="HTTP 404"):
        fetch.fetch("mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_leaves_nothing(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(fetch.REGISTRY, "mnist",
                        (f"http://127.0.0.1:{port}/mnist.npz", _sha(MNIST), "mnist.npz"))
    rc, err = _run(capsys, "mnist", "--data-dir", str(tmp_path))
    _one_line_error(rc, err, "cannot reach")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_mid_stream_leaves_nothing(server, tmp_path, monkeypatch):
    def log(msg):
        if "%" in msg:  # the first progress line: part of the file is on disk
            assert len(list(tmp_path.iterdir())) == 1
            raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "CHUNK", 1024)
    monkeypatch.setattr(fetch, "_log", log)
    with pytest.raises(KeyboardInterrupt):
        fetch.fetch("mnist", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_good_file_kept_bad_replaced_failure_harmless(server, tmp_path, capsys):
    dest = tmp_path / "mnist.npz"
    assert fetch.fetch("mnist", tmp_path) == dest
    assert len(server.requests) == 1
    assert fetch.fetch("mnist", tmp_path) == dest
    assert len(server.requests) == 1  # verified in place, not downloaded again
    assert "already there" in capsys.readouterr().err

    dest.write_bytes(b"not mnist")
    fetch.fetch("mnist", tmp_path)
    assert dest.read_bytes() == MNIST and len(server.requests) == 2
    assert "downloading it again" in capsys.readouterr().err

    dest.write_bytes(b"old copy")
    server.truncate.add("/mnist.npz")
    with pytest.raises(data.DataError, match="truncated"):
        fetch.fetch("mnist", tmp_path)
    assert dest.read_bytes() == b"old copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnist.npz"]


def test_imdb_without_allow_pickle_is_never_unpickled(server, tmp_path, capsys, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("imdb.npz was loaded or unpickled")

    for mod, attr in ((np, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(mod, attr, refuse)
    rc, err = _run(capsys, "imdb", "--data-dir", str(tmp_path))
    assert rc == 0
    assert (tmp_path / "imdb.npz").read_bytes() == IMDB
    assert "--allow-pickle" in err[-1]


def test_imdb_with_allow_pickle_loads(server, tmp_path, capsys):
    rc, err = _run(capsys, "imdb", "mnist", "--data-dir", str(tmp_path), "--allow-pickle")
    assert rc == 0
    assert not any("needs --allow-pickle" in line for line in err)
    assert data.load("imdb", tmp_path, allow_pickle=True).x_train.shape == (18, 50)
    assert (tmp_path / "mnist.npz").is_file()


def test_unknown_name_one_line(tmp_path, capsys):
    rc, err = _run(capsys, "mnist", "cifar10", "--data-dir", str(tmp_path))
    _one_line_error(rc, err, "'cifar10'", "mnist, imdb")
    assert err == err[-1:]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                    reason="keras is not installed: cannot compare with its dataset sources")
def test_registry_matches_installed_keras_source():
    root = Path(importlib.util.find_spec("keras").submodule_search_locations[0])
    for name, (url, sha, filename) in fetch.REGISTRY.items():
        src = (root / "src" / "datasets" / f"{name}.py").read_text()
        folder = url.removesuffix(filename)
        assert f'"{folder}"' in src, name  # Keras's origin_folder
        assert f'origin=f"{{origin_folder}}{filename}"' in src, name
        assert f'"{sha}"' in src, name


def test_structural_check_failure_one_line(server, tmp_path, capsys, monkeypatch):
    server.files["/mnist.npz"] = b"verified, but not an npz"
    url, _, fn = fetch.REGISTRY["mnist"]
    monkeypatch.setitem(fetch.REGISTRY, "mnist", (url, _sha(b"verified, but not an npz"), fn))
    rc, err = _run(capsys, "mnist", "--data-dir", str(tmp_path))
    _one_line_error(rc, err, "not an .npz (zip) archive")
