"""`python -m bench speed`: the four cells per model, each framework's best, best against
best, interleaving, the JSON file; one real run of a tiny model.

Imports neither framework: the workers are subprocesses (or faked here).
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from bench.measure import speed

COLUMNS = ["torch eager", "torch compiled", "tf graph", "tf XLA"]
# samples/s a fake worker reports per (framework, mode, impl)
RATES = {("torch", "eager", "ours"): 2000.0, ("torch", "compiled", "ours"): 1000.0,
         ("tf", "eager", "ours"): 1300.0, ("tf", "compiled", "ours"): 1500.0,
         ("torch", "eager", "reference"): 1000.0, ("torch", "compiled", "reference"): 1000.0,
         ("tf", "eager", "reference"): 1300.0, ("tf", "compiled", "reference"): 2000.0}


def args(**kw):
    base = dict(worker=None, threads=1, modes="eager,compiled", compile=False, device="cpu",
                precision="fp32", rounds=2, steps=5, frameworks="torch,tf",
                models="cnn/xs/mnist1d,lstm/xs/mnist1d", reference=False, json=None)
    return SimpleNamespace(**{**base, **kw})


@pytest.fixture
def fake_cells(monkeypatch):
    """Replace the worker processes: each call answers its cell's rate, and is logged."""
    calls = []

    def run_cell(a, fw, mode, impl):
        calls.append((fw, mode, impl))
        out = {m: {"rate": RATES[fw, mode, impl], "first_step_s": 3.0 if mode == "compiled"
                   else 0.1, "warmup_s": 4.0} for m in a.models.split(",")}
        out["_device"] = "cpu (test)"
        return subprocess.CompletedProcess([], 0, json.dumps(out) + "\n", "")

    monkeypatch.setattr(speed, "_run_cell", run_cell)
    return calls


def test_table_has_four_columns_best_of_each_and_best_vs_best(fake_cells, capsys, tmp_path):
    out_file = tmp_path / "speed.json"
    assert speed.main(args(json=str(out_file))) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for c in COLUMNS + ["torch best", "tf best", "torch/tf best"]:
        assert c in header
    row = next(line for line in out.splitlines() if line.startswith("cnn/xs/mnist1d"))
    # torch's best is eager (2,000), tf's is XLA (1,500): 2000 / 1500
    assert "eager 2,000" in row and "XLA 1,500" in row and row.split()[-1] == "1.33"
    assert "first step / warm-up" in out

    got = json.loads(out_file.read_text())
    cell = got["models"]["lstm/xs/mnist1d"]["cells"]["tf XLA"]
    assert cell["rates"] == [1500.0, 1500.0] and cell["median"] == 1500.0
    assert cell["first_step_s"] == [3.0, 3.0]
    best = got["models"]["lstm/xs/mnist1d"]["best"]
    assert best["torch"]["mode"] == "eager" and best["tf"]["column"] == "tf XLA"
    assert got["models"]["lstm/xs/mnist1d"]["best_ratio"] == pytest.approx(2000 / 1500)
    assert got["columns"] == COLUMNS and got["settings"]["rounds"] == 2


def test_cells_are_separate_processes_interleaved_and_reversed_each_round(fake_cells, capsys):
    assert speed.main(args(rounds=2)) == 0
    one_round = [("torch", "eager", "ours"), ("tf", "eager", "ours"),
                 ("torch", "compiled", "ours"), ("tf", "compiled", "ours")]
    assert fake_cells == one_round + one_round[::-1]


def test_compile_flag_means_compiled_only(fake_cells, capsys):
    assert speed.main(args(compile=True, rounds=1)) == 0
    assert {mode for _, mode, _ in fake_cells} == {"compiled"}
    header = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("model"))
    assert "torch compiled" in header and "torch eager" not in header


def test_reference_prints_ours_over_reference_per_cell(fake_cells, capsys, tmp_path):
    out_file = tmp_path / "speed.json"
    assert speed.main(args(reference=True, rounds=1, json=str(out_file))) == 0
    assert ("torch", "eager", "reference") in fake_cells
    out = capsys.readouterr().out
    assert "ours / reference" in out
    cells = json.loads(out_file.read_text())["models"]["cnn/xs/mnist1d"]["cells"]
    assert cells["torch eager"]["ours_vs_reference"] == pytest.approx(2.0)
    assert cells["tf XLA"]["ours_vs_reference"] == pytest.approx(0.75)


def test_unknown_mode_fails_in_one_line(capsys):
    assert speed.main(args(modes="eager,turbo")) == 2
    assert "turbo" in capsys.readouterr().err


def test_a_real_run_of_a_tiny_model_and_its_reference(tmp_path, repo_root):
    """The workers end to end: torch eager, ours and the reference, a few steps."""
    pytest.importorskip("torch")
    out_file = tmp_path / "speed.json"
    p = subprocess.run(
        [sys.executable, "-m", "bench", "speed", "--frameworks", "torch", "--modes", "eager",
         "--models", "cnn/xs/mnist1d", "--steps", "3", "--rounds", "1", "--reference",
         "--json", str(out_file)],
        cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    cell = json.loads(out_file.read_text())["models"]["cnn/xs/mnist1d"]["cells"]["torch eager"]
    assert cell["median"] > 0 and cell["reference"]["median"] > 0
    assert cell["first_step_s"][0] > 0 and cell["warmup_s"][0] >= cell["first_step_s"][0]
    assert "torch eager" in p.stdout and "ours / reference" in p.stdout
