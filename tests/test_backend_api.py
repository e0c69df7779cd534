"""bench.backend_api: both backends fulfil the contract, member for member; a module that
does not is told what it lacks. Each backend is checked in its own process (one framework
per process)."""

import json
import subprocess
import sys
import types

import pytest

from bench.backend_api import MODULES, conformance

CHECK = ("import json; from bench.backend_api import conformance, load_backend; "
         "print(json.dumps(conformance(load_backend({fw!r}))))")


@pytest.mark.parametrize("framework", sorted(MODULES))
def test_each_backend_fulfils_the_contract(framework):
    p = subprocess.run([sys.executable, "-c", CHECK.format(fw=framework)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []


def test_a_missing_member_or_a_renamed_parameter_is_named():
    import bench.torch_backend as good  # noqa: F401 - the reference for a complete module

    fake = types.ModuleType("fake_backend")
    for name in dir(good):
        if not name.startswith("__"):
            setattr(fake, name, getattr(good, name))
    assert conformance(fake) == []
    del fake.sum_scalars
    fake.take = lambda tensor, rows: tensor
    problems = conformance(fake)
    assert "fake_backend.sum_scalars is missing" in problems
    assert any(p.startswith("fake_backend.take('tensor', 'rows')") for p in problems)

    class Trainer(good.Trainer):
        def step(self, xb, yb):  # the learning rate forgotten
            pass

    fake.Trainer = Trainer
    assert any(p.startswith("Trainer.step('xb', 'yb')") for p in conformance(fake))
