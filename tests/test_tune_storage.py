"""bench.tune on a real PostgreSQL server: the RDB storage a cluster's studies use.

The fixture starts a throwaway server for this module (initdb into a temporary folder,
pg_ctl listening on 127.0.0.1 at a free port; as the `postgres` user when the tests run as
root, since PostgreSQL refuses root), gives each test a database of its own and stops the
server whatever happens. Without PostgreSQL's binaries (Debian: `apt-get install
postgresql`) or the psycopg driver (the `postgres` extra) the tests are skipped.
"""

import glob
import itertools
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from test_tune import (
    _assert_each_trial_ran_once,
    _assert_exact_budget,
    _create,
    _definition,
    _fake,
    _most_at_once,
    _ran,
    _start_fake_workers,
    _wait_workers,
)

from bench import tune

URL_ENV = "BENCH_TEST_OPTUNA_URL"
PG_TOOLS = ("initdb", "pg_ctl", "postgres")


def _pg_bindir() -> Path | None:
    """The folder with initdb, pg_ctl and postgres: on PATH, pg_config's, or Debian's newest."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    if shutil.which("pg_config"):
        p = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(p.stdout.strip()))
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(d) for d in sorted(debian, reverse=True,
                                           key=lambda d: [int(x) for x in re.findall(r"\d+", d)])]
    for d in candidates:
        if all((d / tool).is_file() for tool in PG_TOOLS):
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_server():
    """(host, port, user) of a PostgreSQL server that lives as long as this module's tests."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed "
                                          "(pip install -e '.[postgres]')")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found; "
                    "on Debian: apt-get install postgresql")
    run_as: list[str] = []
    root = os.geteuid() == 0
    # as root: in /tmp, which the server's user can reach (pytest's own tmp dirs are 0700)
    base = Path(tempfile.mkdtemp(prefix="bench-pg-", dir="/tmp" if root else None))
    if root:  # initdb and postgres refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = pwd.getpwnam("nobody")
        os.chown(base, owner.pw_uid, owner.pw_gid)
        run_as = (["runuser", "-u", owner.pw_name, "--"] if shutil.which("runuser") else
                  ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}",
                   "--clear-groups", "--"])
    data, log = base / "data", base / "server.log"

    def pg(tool: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*run_as, str(bindir / tool), *map(str, args)], cwd=base,
                              capture_output=True, text=True, timeout=timeout)

    def log_tail() -> str:
        try:
            return log.read_text()[-3000:]
        except OSError:
            return ""

    try:
        p = pg("initdb", "-D", data, "-U", "bench", "--auth=trust", "-E", "UTF8",
               "--locale=C", "--no-sync")
        assert p.returncode == 0, f"initdb failed:\n{p.stdout[-2000:]}{p.stderr[-2000:]}"
        # a test server: nothing here needs to survive a crash
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
        for _ in range(3):  # the free port may be taken before the server binds it
            port = _free_port()
            p = pg("pg_ctl", "-D", data, "-l", log, "-o", f"-p {port}", "-w", "-t", "60",
                   "start")
            if p.returncode == 0:
                break
        assert p.returncode == 0, f"pg_ctl start failed:\n{p.stderr[-2000:]}\n{log_tail()}"
        yield "127.0.0.1", port, "bench"
    finally:
        pid_file = data / "postmaster.pid"
        if pid_file.exists():
            try:
                stopped = pg("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop",
                             timeout=60).returncode == 0
            except subprocess.TimeoutExpired:
                stopped = False
            if not stopped and pid_file.exists():  # pg_ctl could not: by its pid
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass
        shutil.rmtree(base, ignore_errors=True)


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_server, monkeypatch, tmp_path):
    """A fresh database on the server; its URL is in $BENCH_TEST_OPTUNA_URL, as on a cluster."""
    import psycopg

    host, port, user = pg_server
    name = f"optuna_{next(_databases)}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    monkeypatch.setenv(URL_ENV, url)
    monkeypatch.setenv("BENCH_SLOT_DIR", str(tmp_path / "slots"))
    return url


def _rows(url: str, sql: str):
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute(sql).fetchall()


def test_postgresql_study_with_several_workers_at_once_has_exactly_n_trials(pg_url, tmp_path):
    defn = _definition(trials=8, epochs=2, storage="rdb", rdb_url_env=URL_ENV)
    assert pg_url not in json.dumps(defn)  # the URL stays out of files and command lines
    study_dir = _create(tmp_path, defn)
    _wait_workers(_start_fake_workers(tmp_path, study_dir, 4, together=True,
                                      FAKE_SLEEP="0.05", BENCH_SLOTS="0"))
    p = _assert_exact_budget(study_dir)
    trials = tune.load(defn, study_dir).get_trials()
    assert p["void"] == 0 and len(trials) == 8  # no duplicate, no lost, no extra trial
    assert len(_assert_each_trial_ran_once(tmp_path, study_dir, 4)) >= 2
    assert _most_at_once(trials) >= 2
    # the trials are in PostgreSQL, not in a file beside the study
    assert not (study_dir / tune.JOURNAL_FILE).exists()
    states = dict(_rows(pg_url, "SELECT state, count(*) FROM trials GROUP BY state"))
    assert sum(states.values()) == 8 and set(states) <= {"COMPLETE", "PRUNED"}, states

    best = tune.export(study_dir)
    assert best["storage"] == f"rdb (${URL_ENV})" and best["n_trials"] == 8
    assert best["best_value"] == max(t.value for t in trials)
    df = pd.read_csv(study_dir / tune.CSV_FILE)
    assert len(df) == 8 and df["counted"].all() and sorted(df["ticket"]) == list(range(8))
    assert len(pd.read_parquet(study_dir / tune.PARQUET_FILE)) == 8


def test_postgresql_study_survives_a_worker_killed_mid_trial(pg_url, tmp_path):
    defn = _definition(trials=6, epochs=4, storage="rdb", rdb_url_env=URL_ENV)
    study_dir = _create(tmp_path, defn)
    procs = _start_fake_workers(tmp_path, study_dir, 3, together=True, FAKE_SLEEP="0.15",
                                BENCH_SLOTS="0")
    storage = tune.open_storage(defn, study_dir)
    victim, deadline = None, time.time() + 60
    while victim is None and time.time() < deadline and procs[2].poll() is None:
        trials = tune.load(defn, study_dir, storage).get_trials(deepcopy=False)
        # worker 2 mid-trial (an epoch reported, two or more to come) while two or more
        # tickets wait: the other workers then loop again, and reap, after the kill
        waiting = sum(t.state.name == "WAITING" for t in trials)
        for t in trials if waiting >= 2 else []:
            owner = t.system_attrs.get(tune.OWNER) or {}
            if (t.state.name == "RUNNING" and owner.get("worker") == 2 and t.intermediate_values
                    and max(t.intermediate_values) <= 2):
                victim = t
        time.sleep(0.02)
    assert victim is not None, "worker 2 was never seen mid-trial with tickets left"
    procs[2].send_signal(signal.SIGKILL)
    procs[2].wait()
    _wait_workers(procs[:2])  # the live workers reap the lost trial and run it again

    p = _assert_exact_budget(study_dir)
    trials = tune.load(defn, study_dir).get_trials()
    void = {t.number: t.system_attrs[tune.VOID] for t in trials if tune.is_void(t)}
    assert void.pop(victim.number) == "lost"
    assert 1 <= len(trials[victim.number].intermediate_values) < 4  # killed mid-trial
    # both live workers may reissue the lost ticket at once: the later copy is voided
    # unrun when popped (see tune.claim), so it never counts and never trains
    assert set(void.values()) <= {"duplicate"}
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    [retry] = [t for t in retries if not tune.is_void(t)]
    assert retry.state.is_finished() and retry.params == victim.params
    assert retry.user_attrs["worker"] in (0, 1)
    assert all(t.number in void and not t.intermediate_values for t in retries if t is not retry)
    assert p["void"] == 1 + len(void) and len(trials) == 6 + 1 + len(void)
    ran = [n for ns in _ran(tmp_path, (0, 1)).values() for n in ns]  # each trial once
    assert sorted(ran) == sorted(t.number for t in trials if t.user_attrs.get("worker") in (0, 1))
    assert all("worker" in t.user_attrs for t in trials if not tune.is_void(t))
    # the killed job's rerun finds the study complete and changes nothing
    assert tune.run_worker(study_dir, 2, train_fn=_fake())["ran"] == []
    assert len(tune.load(defn, study_dir).get_trials()) == len(trials)
    assert tune.export(study_dir)["void_trials"] == p["void"]
