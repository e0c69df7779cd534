"""bench.study.records: atomic record writes and reads that never return half a record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import writes_denied

from bench.study import records
from bench.study.records import RecordWriteError, read_record, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


def _record(**kw):
    return {"run_id": "cnn-torch-digits-xs-abc", "status": "ok", **kw}


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_write_then_read(tmp_path):
    rec = _record(test_acc=0.97, curve=[{"epoch": 1, "val_acc": 0.5}], nested={"a": [1, 2]})
    path = tmp_path / "runs" / "r.json"  # parent created on demand
    write_json_atomic(path, rec)
    assert json.loads(path.read_text()) == rec
    assert read_record(path) == rec
    assert _leftovers(path.parent) == []


def test_nan_and_inf_become_null(tmp_path):
    rec = _record(loss=float("nan"), rate=float("inf"), low=float("-inf"),
                  curve=[{"val_loss": float("nan")}, 1.5], pair=(float("nan"), 2.0))
    path = tmp_path / "r.json"
    write_json_atomic(path, rec)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)  # strict parsers (pandas, jq, browsers) can read it
    assert back["loss"] is None and back["rate"] is None and back["low"] is None
    assert back["curve"] == [{"val_loss": None}, 1.5]
    assert back["pair"] == [None, 2.0]
    assert rec["loss"] != rec["loss"]  # the caller's record is left as it was


def test_overwrite_replaces_whole_file(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, _record(blob="x" * 10000))
    write_json_atomic(path, _record(status="diverged"))
    assert read_record(path) == _record(status="diverged")
    assert _leftovers(tmp_path) == []


def test_failed_rename_keeps_old_file_and_names_path(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    write_json_atomic(path, _record())
    old = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(records.os, "replace", broken_replace)
    with pytest.raises(RecordWriteError) as e:
        write_json_atomic(path, _record(status="diverged"))
    assert str(path) in str(e.value)
    assert path.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_unserialisable_value_leaves_no_temp_file(tmp_path):
    path = tmp_path / "r.json"
    write_json_atomic(path, _record())
    old = path.read_bytes()
    with pytest.raises((TypeError, ValueError, RecordWriteError)):
        write_json_atomic(path, _record(model=object()))
    assert path.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_read_only_directory(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    path = d / "r.json"
    write_json_atomic(path, _record())
    old = path.read_bytes()
    with writes_denied(d):
        with pytest.raises(RecordWriteError) as e:
            write_json_atomic(path, _record(status="diverged"))
        # the CLI prints it as its one-line error; an OSError to callers that catch those
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"cannot write {path}: ")
        assert isinstance(e.value, OSError)
        assert path.read_bytes() == old
        assert read_record(path) == _record()
        assert _leftovers(d) == []


def test_disk_full_mid_write_keeps_the_old_record(tmp_path):
    """A write that fails half-way (here: the file-size limit, as on a full disk)."""
    path = tmp_path / "r.json"
    write_json_atomic(path, _record())
    old = path.read_bytes()
    big = json.dumps(_record(curve=[{"epoch": i, "val_acc": 0.5} for i in range(2000)]))
    code = (
        "import json, resource, sys\n"
        "from bench.study.records import RecordWriteError, write_json_atomic\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        f"    write_json_atomic({str(path)!r}, json.loads(sys.stdin.read()))\n"
        "except RecordWriteError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], input=big, capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 3, p.stderr
    assert str(path) in p.stdout and "File too large" in p.stdout
    assert path.read_bytes() == old
    assert _leftovers(tmp_path) == []


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    path = tmp_path / "r.json"
    dead = tmp_path / ".r.json.k1ll3d.tmp"
    dead.write_text('{"run_id": "x", "sta')
    before = records._PROCESS_START - 5  # written before we started
    os.utime(dead, (before, before))
    (tmp_path / ".r.json.writing.tmp").write_text("")  # a live duplicate writer's, just now
    (tmp_path / ".other.json.abc.tmp").write_text("")
    os.utime(tmp_path / ".other.json.abc.tmp", (0, 0))
    assert records.remove_stale_temps(path) == 1
    # Another run's write, and a write newer than this process, are left alone.
    assert _leftovers(tmp_path) == [".other.json.abc.tmp", ".r.json.writing.tmp"]


def test_parent_is_a_file_raises_record_write_error(tmp_path):
    (tmp_path / "runs").write_text("not a directory")
    path = tmp_path / "runs" / "r.json"
    with pytest.raises(RecordWriteError) as e:
        write_json_atomic(path, _record())
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content", [
    b"",
    b'{"run_id": "x", "status": "ok", "test_acc": 0.9',  # truncated mid-write
    b"\x00\xff\xfe garbage \x89PNG",
    b"[1, 2, 3]",
    b'"just a string"',
    b'{"run_id": "x"}',  # no status
    b'{"status": "ok"}',  # no run id
    b"NaN",
])
def test_read_record_none_for_unusable_files(tmp_path, content):
    path = tmp_path / "r.json"
    path.write_bytes(content)
    assert read_record(path) is None


def test_read_record_missing_and_directory(tmp_path):
    assert read_record(tmp_path / "nope.json") is None
    assert read_record(tmp_path) is None


def test_every_status_is_read_back_and_has_its_own_report_column(tmp_path):
    """The report keeps its own list of statuses: a status records can hold but the report
    lacks would be counted apart from the others, after them."""
    from bench.report.overview import status_counts

    rows = []
    for status in records.STATUSES:
        path = tmp_path / f"{status}.json"
        write_json_atomic(path, _record(status=status, family="cnn", framework="torch"))
        rows.append(read_record(path))
    assert [r["status"] for r in rows] == list(records.STATUSES)
    counts = status_counts(pd.DataFrame(rows))
    assert list(counts.columns) == ["family", "framework", *records.STATUSES, "total"]
    assert counts[list(records.STATUSES)].to_numpy().tolist() == [[1] * len(records.STATUSES)]
    # runners keep final records and rerun the rest: only a crash is worth retrying
    assert [s for s in records.STATUSES if s not in records.FINAL_STATUSES] == ["error"]
