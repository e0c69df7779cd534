"""One framework per process, in tests too.

`python -m pytest` runs the framework-neutral tests and the torch ones;
`BENCH_TEST_FRAMEWORK=tf python -m pytest` runs only the TensorFlow ones. Tests that
compare frameworks start one subprocess per framework (tests/parity_worker.py).
"""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = os.environ.get("BENCH_TEST_FRAMEWORK", "torch")


def pytest_ignore_collect(collection_path, config):
    name = collection_path.name
    if not name.startswith("test_") or not name.endswith(".py"):
        return None
    if FRAMEWORK == "tf":
        return not name.startswith("test_tf_")
    return True if name.startswith("test_tf_") else None


@pytest.fixture
def bench_cmd():
    """argv prefix that runs the CLI with this interpreter from the repo root."""
    return [sys.executable, "-m", "bench"]


@pytest.fixture(scope="session")
def repo_root():
    return ROOT
