"""One framework per process, in tests too.

`python -m pytest` runs the framework-neutral tests and the torch ones;
`BENCH_TEST_FRAMEWORK=tf python -m pytest` runs only the TensorFlow ones (modules named
test_tf_*). tests/test_backend.py runs in both: it tests the backend of the process's
framework (FRAMEWORK) through the contract in bench.backend_api, once for both. Tests that
compare frameworks start one subprocess per framework (tests/parity_worker.py).
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = os.environ.get("BENCH_TEST_FRAMEWORK", "torch")
# Modules of neither framework that both processes collect.
EVERY_FRAMEWORK = {"test_backend.py"}


def pytest_ignore_collect(collection_path, config):
    name = collection_path.name
    if not name.startswith("test_") or not name.endswith(".py") or name in EVERY_FRAMEWORK:
        return None
    if FRAMEWORK == "tf":
        return not name.startswith("test_tf_")
    return True if name.startswith("test_tf_") else None


# The tests that read the smoke study's results (built once, see smoke_workflow).
SMOKE_FIXTURES = {"smoke_workflow", "copy_smoke"}


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n auto --dist loadgroup`, pyproject.toml's pytest options) a
    worker takes whole modules, so a module-scoped fixture is built once. The modules that
    read the smoke study go first: one worker builds it on every core while the others wait
    for it, and their long tests (SLURM, the browser) do not end the run alone."""
    smoke_modules = {item.path for item in items if SMOKE_FIXTURES & set(item.fixturenames)}
    items.sort(key=lambda item: item.path not in smoke_modules)  # stable: order kept within
    for item in items:
        item.add_marker(pytest.mark.xdist_group(item.path.name))


@pytest.fixture
def bench_cmd():
    """argv prefix that runs the CLI with this interpreter from the repo root."""
    return [sys.executable, "-m", "bench"]


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


def copy_workflow(dest: Path) -> Path:
    """The files a user's checkout runs the workflow from, copied into `dest`."""
    for name in ("Snakefile", "workflow", "config"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            shutil.copy(src, dest / name)
    return dest


def snakemake_env(cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SLOT_DIR": str(cwd / ".slots")}
    # The jobs' `python` must be this interpreter (the one with bench and the frameworks).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=cwd, env=snakemake_env(cwd),
        capture_output=True, text=True, timeout=1800,
    )


def study_variant(wd: Path, name: str, **changes) -> str:
    """config/<name>.yaml in `wd`: the smoke config with `changes` ("study.seeds": [0, 1])."""
    import yaml

    cfg = yaml.safe_load((wd / "config/smoke.yaml").read_text())
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        (cfg[section] if section else cfg)[leaf] = value
    (wd / f"config/{name}.yaml").write_text(yaml.safe_dump(cfg))
    return f"config/{name}.yaml"


@pytest.fixture(scope="session")
def smoke_workflow(tmp_path_factory):
    """One real run of config/smoke.yaml, shared by every test that inspects its outputs,
    read-only: tests that run the workflow again work on a copy (see `copy_smoke`).

    Under pytest-xdist each worker has a session of its own: the first to get here builds
    the study in the run's shared temporary folder while the others wait on the lock."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the folder every worker's base folder is in
    wd, done = root / "smoke", root / "smoke.json"
    with open(root / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(wd, ignore_errors=True)  # what a failed build left
            wd.mkdir()
            p = snakemake(copy_workflow(wd), "--cores", "2", "--configfile", "config/smoke.yaml")
            assert p.returncode == 0, p.stderr[-4000:]
            done.write_text(json.dumps({"args": p.args, "stdout": p.stdout, "stderr": p.stderr}))
    d = json.loads(done.read_text())
    return wd, subprocess.CompletedProcess(d["args"], 0, d["stdout"], d["stderr"])


@pytest.fixture
def copy_smoke(smoke_workflow, tmp_path):
    """A private copy of the finished smoke study (results, reports, Snakemake state)."""
    wd, _ = smoke_workflow
    dest = tmp_path / "smoke"
    shutil.copytree(wd, dest, symlinks=True, ignore=shutil.ignore_patterns(".slots"))
    return dest


@pytest.fixture(scope="session")
def s2s_data():
    """The translation pairs the seq2seq backend tests train and decode on."""
    from bench.data import load

    return load("en_fr_numbers")


@pytest.fixture(scope="session")
def trained_seq2seq(s2s_data):
    """An xs translation model of this process's framework after 300 Adam steps: right on
    some sentences, wrong on others, so decoded rows end at many lengths. Nothing may train
    it further (tests/test_backend.py and tests/test_tf_backend.py decode with it)."""
    import numpy as np

    from bench.backend_api import load_backend
    from bench.spec import RunSpec

    backend = load_backend(FRAMEWORK)
    backend.setup(1, "cpu", 0)
    spec = RunSpec.create(family="seq2seq", framework=FRAMEWORK, dataset="en_fr_numbers",
                          size="xs", optimizer="adam", lr=3e-3)
    trainer = backend.Trainer(backend.build(spec), spec)
    x, y = backend.to_device(s2s_data.x_train), backend.to_device(s2s_data.y_train)
    rng = np.random.default_rng(0)
    for _ in range(300):
        idx = rng.integers(0, len(s2s_data.y_train), 64)
        trainer.step(backend.take(x, idx), backend.take(y, idx), spec.lr)
    return trainer


@contextlib.contextmanager
def writes_denied(directory: Path):
    """No new files in `directory` for the block: a permission error, even for root.

    Root ignores permission bits, so as root the directory is made immutable (chattr +i);
    skips when neither way is enforced here.
    """
    mode = directory.stat().st_mode & 0o7777
    if os.geteuid() == 0:
        immutable = bool(shutil.which("chattr")) and subprocess.run(
            ["chattr", "+i", str(directory)], capture_output=True).returncode == 0
    else:
        os.chmod(directory, 0o555)
        immutable = False
    try:
        probe = directory / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip("cannot deny writes to a directory on this machine")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], capture_output=True)
        os.chmod(directory, mode)


# The report tests' shared renders (module-scoped: built once per test module that asks);
# tests/report_data.py holds the synthetic records they are built from. `strict` makes a
# panel that fails to build raise instead of showing its error on the page.


@pytest.fixture(scope="module")
def strict():
    """A panel that fails to build raises here, instead of showing its error on the page."""
    from bench.report import page_kit

    with pytest.MonkeyPatch.context() as m:
        m.setattr(page_kit, "STRICT", True)
        yield


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The smoke study's runs, the final runs of a study and two tuning studies, rendered."""
    from report_data import build, smoke_records, tuned_records

    tmp = tmp_path_factory.mktemp("full")
    recs = smoke_records()
    return build(tmp, recs + tuned_records(recs), tune=True)


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """cnn tuned at xs (its parameters lose 0.1 to the baseline) and at m (they gain 0.1),
    and xs's parameters run at m as well as m's own (a transfer with no difference)."""
    from report_data import CNN_XS, _finals, smoke_records, write_summary, write_tuning_study

    from bench import report

    tmp = tmp_path_factory.mktemp("two")
    recs = smoke_records()
    finals = (_finals(recs, "cnn_xs", "xs", -0.1) + _finals(recs, "cnn_m", "m", 0.1)
              + _finals(recs, "cnn_xs", "m", 0.1))
    summary = write_summary(recs + finals, tmp / "results" / "summary.parquet")
    tune_dir = tmp / "results" / "tune"
    write_tuning_study(tune_dir, "cnn_xs", cell=CNN_XS)
    write_tuning_study(tune_dir, "cnn_m", cell=dict(CNN_XS, size="m"))
    report.build_report(summary, tmp / "reports", tune_dir)
    return tmp


@pytest.fixture(scope="module")
def gen_report(tmp_path_factory):
    """The seq2seq runs beside the cnn runs of the smoke study, rendered."""
    from report_data import build, seq2seq_records, smoke_records

    tmp = tmp_path_factory.mktemp("gen")
    cnn = [r for r in smoke_records() if r["family"] == "cnn"]
    return build(tmp, cnn + seq2seq_records())
