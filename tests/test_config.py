"""bench.config: study configs are checked, with one-line messages, before any job starts."""

import copy

import pytest
import yaml

from bench.config import ConfigError, check_config
from bench.registry import SpecError

SHIPPED = ["config.yaml", "smoke.yaml", "full.yaml"]


@pytest.fixture(scope="module")
def schema(repo_root):
    return repo_root / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture(scope="module")
def smoke(repo_root):
    return yaml.safe_load((repo_root / "config" / "smoke.yaml").read_text())


def _error(config, schema) -> str:
    with pytest.raises(ConfigError) as e:
        check_config(config, schema)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith("config key "), msg
    return msg


def _edit(base, path, value):
    cfg = copy.deepcopy(base)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_validate(repo_root, schema, name, tmp_path):
    raw = yaml.safe_load((repo_root / "config" / name).read_text())
    raw["data_dir"] = str(tmp_path)  # full.yaml's article datasets: present, as once fetched
    for f in ("mnist.npz", "imdb.npz"):
        (tmp_path / f).write_bytes(b"")
    cfg = check_config(raw, schema)
    assert cfg["study"]["families"]


def test_config_error_is_spec_error():
    assert issubclass(ConfigError, SpecError)


def test_defaults_filled(schema, smoke):
    minimal = {"study": copy.deepcopy(smoke["study"])}
    minimal["study"].pop("max_steps")
    before = copy.deepcopy(minimal)
    cfg = check_config(minimal, schema)
    assert minimal == before  # the caller's dict is not modified
    assert cfg["threads"] == 1
    assert cfg["device"] == "cpu"
    assert cfg["compile"] is False
    assert cfg["runs_per_job"] == 12
    assert cfg["data_dir"] == "data"
    assert cfg["allow_pickle"] is False
    assert cfg["study"]["max_steps"] == 0
    assert cfg["measure"] == {"warmup_steps": 10, "block_steps": 50, "block_seconds": 2.0}
    assert cfg["resources"]["mem_mb"] == 4000


def test_partial_section_gets_remaining_defaults(schema, smoke):
    cfg = check_config(_edit(smoke, ["measure"], {"warmup_steps": 3}), schema)
    assert cfg["measure"] == {"warmup_steps": 3, "block_steps": 50, "block_seconds": 2.0}


def test_given_values_win_over_defaults(schema, smoke):
    cfg = check_config(_edit(smoke, ["threads"], 2), schema)
    assert cfg["threads"] == 2
    assert cfg["measure"]["block_steps"] == smoke["measure"]["block_steps"]


@pytest.mark.parametrize("path,value,needles", [
    # misspelled keys
    (["thread"], 2, ["'thread'"]),
    (["study", "famlies"], ["cnn"], ["study", "'famlies'"]),
    (["measure", "block_step"], 5, ["measure", "'block_step'"]),
    # wrong types
    (["threads"], "two", ["threads", "'two'"]),
    (["study", "epochs"], "ten", ["study.epochs", "'ten'"]),
    (["study", "seeds"], 0, ["study.seeds"]),
    (["allow_pickle"], "yes", ["allow_pickle"]),
    (["study", "batch_size"], "big", ["study.batch_size", "'big'"]),
    (["study", "batch_size"], 0, ["study.batch_size"]),
    (["study", "epochs"], 0, ["study.epochs"]),
    # unknown names
    (["study", "families"], ["cnn", "resnet"], ["study.families[1]", "'resnet'"]),
    (["study", "frameworks"], ["jax"], ["study.frameworks[0]", "'jax'"]),
    (["study", "datasets"], ["cifar10"], ["study.datasets[0]", "'cifar10'"]),
    (["study", "sizes"], ["xs", "huge"], ["study.sizes[1]", "'huge'"]),
    (["study", "optimizers"], {"adma": {"lr": 0.1}}, ["study.optimizers", "'adma'"]),
    (["study", "centre", "size"], "huge", ["study.centre.size", "'huge'"]),
    (["study", "optimizers", "adam", "lr"], -1, ["study.optimizers.adam.lr"]),
    (["study", "design"], "random", ["study.design", "'random'"]),
    (["device"], "tpu", ["device", "'tpu'"]),
    (["study", "lr_grid_drop"], [{"epoch": 10, "margin": 5}], ["study.lr_grid_drop"]),
    (["study", "lr_grid_drop"], {"epoch": 10}, ["study.lr_grid_drop"]),
    # empty grids
    (["study", "sizes"], [], ["study.sizes", "empty"]),
    (["study", "families"], [], ["study.families", "empty"]),
    (["study", "seeds"], [], ["study.seeds", "empty"]),
    (["study", "optimizers"], {}, ["study.optimizers", "empty"]),
    # missing required keys
    (["study", "centre"], _DELETE, ["centre"]),
    (["study", "epochs"], _DELETE, ["epochs"]),
    # values that would reach a shell command
    (["study", "regularisers"], ["none; rm -rf ~"], ["study.regularisers[0]", "rm -rf"]),
    (["study", "regularisers"], ["dropout+$(id)"], ["study.regularisers[0]"]),
    (["study", "regularisers"], ["dropout+foo"], ["study.regularisers[0]", "'dropout+foo'"]),
    (["data_dir"], "data; rm -rf ~", ["data_dir"]),
    (["data_dir"], "my data", ["data_dir"]),
])
def test_bad_config_names_key(schema, smoke, path, value, needles):
    msg = _error(_edit(smoke, path, value), schema)
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_missing_study_is_reported(schema):
    assert "study" in _error({"threads": 1}, schema)


def test_mnist_without_file_names_path(schema, smoke, tmp_path):
    cfg = _edit(smoke, ["study", "datasets"], ["mnist1d", "mnist"])
    cfg["data_dir"] = str(tmp_path)
    msg = _error(cfg, schema)
    assert str(tmp_path / "mnist.npz") in msg
    (tmp_path / "mnist.npz").write_bytes(b"present")
    assert check_config(cfg, schema)["study"]["datasets"] == ["mnist1d", "mnist"]


def test_imdb_needs_allow_pickle(schema, smoke, tmp_path):
    (tmp_path / "imdb.npz").write_bytes(b"present")
    cfg = _edit(smoke, ["study", "datasets"], ["imdb"])
    cfg["data_dir"] = str(tmp_path)
    msg = _error(cfg, schema)
    assert "allow_pickle" in msg
    cfg["allow_pickle"] = True
    assert check_config(cfg, schema)["allow_pickle"] is True


def test_schema_enums_match_registries(schema):
    import bench.registry
    import bench.sizes

    defs = yaml.safe_load(schema.read_text())["$defs"]
    assert defs["family"]["enum"] == list(bench.registry.FAMILIES)
    assert defs["framework"]["enum"] == list(bench.registry.FRAMEWORKS)
    assert defs["dataset"]["enum"] == list(bench.registry.DATASETS)
    assert set(defs["size"]["enum"]) == set(bench.sizes.SIZE_NAMES)
    assert defs["optimizer"]["enum"] == list(bench.registry.OPTIMIZERS)
    assert set(yaml.safe_load(schema.read_text())["properties"]["device"]["enum"]) == set(
        bench.registry.DEVICES)


def test_every_regulariser_name_passes_the_schema(schema, smoke):
    import bench.registry

    names = list(bench.registry.REGULARISERS)
    combo = "+".join(n for n in names if n not in ("none", "lr_step"))
    cfg = _edit(smoke, ["study", "regularisers"], names + [combo])
    assert check_config(cfg, schema)["study"]["regularisers"][-1] == combo


@pytest.mark.parametrize("label", ["none+dropout", "lr_decay+lr_step"])
def test_impossible_regulariser_rejected_before_jobs(schema, smoke, label):
    # The schema's pattern admits these; check_config or plan (both run when the workflow
    # is parsed) must still reject them with one line naming the value.
    from bench.study.plan import plan

    cfg = _edit(smoke, ["study", "regularisers"], ["none", label])
    with pytest.raises(SpecError) as e:
        plan(check_config(cfg, schema))
    assert label in str(e.value) and "\n" not in str(e.value)


def test_more_type_errors(schema, smoke):
    assert "threads" in _error(_edit(smoke, ["threads"], True), schema)
    assert "study.seeds" in _error(_edit(smoke, ["study", "seeds"], [0, 0]), schema)
    assert "study.epochs" in _error(_edit(smoke, ["study", "epochs"], 2.5), schema)
