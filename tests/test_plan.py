"""bench.study.plan: the shipped study configs expand into the runs and jobs the workflow runs."""

import copy
import itertools
import math
from collections import Counter

import pytest
import yaml

import bench.registry
import bench.sizes
from bench.config import ConfigError, check_config
from bench.registry import SpecError
from bench.spec import RunSpec
from bench.study.plan import (
    grid_drop,
    jobs,
    lr_grid_runs,
    make_jobs,
    plan,
    sizes_of,
    unit_of,
)


@pytest.fixture(scope="module")
def load(repo_root):
    schema = repo_root / "workflow" / "schemas" / "config.schema.yaml"

    def _load(name, edit=None):
        raw = yaml.safe_load((repo_root / "config" / name).read_text())
        if edit:
            edit(raw)
        return check_config(raw, schema)

    return _load


def _canon(reg):
    return bench.registry.parse_regulariser(reg)[0]


def expected_count(config):
    st = config["study"]
    seeds = len(st["seeds"])
    opts = st["optimizers"]
    sweep = st.get("sweep_families") or st["families"]
    total = 0
    for f in st["families"]:
        per_family = len(st["frameworks"]) * sum(bench.registry.reads(f, d) for d in st["datasets"])
        regs = {_canon(r) for r in st["regularisers"] if bench.registry.regulariser_applies(f, r)}
        sizes = sizes_of(st, f)
        if st["design"] == "grid":
            total += per_family * len(sizes) * len(opts) * len(regs) * seeds
            continue
        c = st["centre"]
        n = len(sizes) * seeds
        if f in sweep:
            overlap = (c["size"] in sizes and c["optimizer"] in opts
                       and _canon(c["regulariser"]) in regs)
            n += len(opts) * len(regs) * seeds - overlap * seeds
        total += per_family * n
    for cell in st.get("cells") or []:
        total += len(st["frameworks"]) * len(cell["sizes"]) * seeds
    return total


@pytest.fixture(scope="module")
def shipped(load):
    return {name: load(name) for name in ("smoke.yaml", "config.yaml")}


@pytest.mark.parametrize("name", ["smoke.yaml", "config.yaml"])
def test_centre_plan_count_and_uniqueness(shipped, name):
    config = shipped[name]
    specs = plan(config)
    assert len(specs) == expected_count(config)
    ids = [s.run_id for s in specs]
    assert len(set(ids)) == len(ids)
    for s in specs:
        assert RunSpec.from_dict(s.to_dict()) == s  # re-validates every field


def test_smoke_count_by_hand(shipped):
    # 2 classifiers x 2 frameworks x 1 dataset x (2 sizes x 2 seeds + 2 opt x 2 reg x 2 seeds
    # - 2), plus seq2seq (no sweep) on its own dataset: 2 frameworks x 2 sizes x 2 seeds
    assert len(plan(shipped["smoke.yaml"])) == 40 + 8
    # lr grid: 2 classifiers x units (xs adam, s adam, xs sgd) x 2 multipliers + seq2seq 2 x 2
    assert len(lr_grid_runs(shipped["smoke.yaml"], plan(shipped["smoke.yaml"]))) == 12 + 4


@pytest.mark.parametrize("name", ["smoke.yaml", "config.yaml"])
def test_centre_plan_contents(shipped, name):
    config = shipped[name]
    st, c = config["study"], config["study"]["centre"]
    specs = plan(config)
    cells = {(s.family, s.framework, s.dataset, s.size, s.optimizer, s.regulariser, s.seed)
             for s in specs}
    pairs = [(f, d) for f in st["families"] for d in st["datasets"] if bench.registry.reads(f, d)]
    assert {(s.family, s.dataset) for s in specs} == set(pairs)
    for (f, d), fw, seed in itertools.product(pairs, st["frameworks"], st["seeds"]):
        seed += st["frameworks"].index(fw) * st["framework_seed_stride"]
        for size in sizes_of(st, f):
            assert (f, fw, d, size, c["optimizer"], _canon(c["regulariser"]), seed) in cells
        if f not in (st.get("sweep_families") or st["families"]):
            continue
        for opt, reg in itertools.product(st["optimizers"], st["regularisers"]):
            assert (f, fw, d, c["size"], opt, _canon(reg), seed) in cells


def test_plan_carries_config_settings(shipped):
    config = shipped["smoke.yaml"]
    st = config["study"]
    for s in plan(config):
        assert s.lr == st["optimizers"][s.optimizer]["lr"]
        assert s.epochs == st["epochs"] and s.max_steps == st["max_steps"]
        assert s.patience == st["patience"] and s.min_epochs == st["min_epochs"]
        own = st["family_settings"].get(s.family, {})
        assert s.batch_size == own.get("batch_size", st["batch_size"])
        assert s.threads == config["threads"] and s.device == config["device"]
        assert s.warmup_steps == config["measure"]["warmup_steps"]
        assert s.block_steps == config["measure"]["block_steps"]
        assert s.block_seconds == config["measure"]["block_seconds"]
        assert s.dropout == (0.2 if s.regulariser == "dropout" else 0.0)


def test_precision_and_gpu_math_settings_reach_every_spec(load, shipped):
    assert {(s.precision, s.tf32, s.conv_autotune) for s in plan(shipped["smoke.yaml"])} == {
        ("fp32", False, True)}

    def edit(raw):
        raw.update(precision="bf16", tf32=True, conv_autotune=False)

    specs = plan(load("smoke.yaml", edit))
    assert {(s.precision, s.tf32, s.conv_autotune) for s in specs} == {("bf16", True, False)}
    assert all("-bf16-" in s.run_id for s in specs)
    with pytest.raises(ConfigError, match="precision"):
        load("smoke.yaml", lambda raw: raw.update(precision="fp8"))


def test_optimizer_overrides_reach_specs(load):
    def edit(raw):
        raw["study"]["optimizers"]["adamw"] = {"lr": 0.002, "batch_size": "full"}
        raw["study"]["optimizers"]["sgd"] = {"lr": 0.1, "weight_decay": 0.001}

    specs = plan(load("smoke.yaml", edit))
    adamw = [s for s in specs if s.optimizer == "adamw"]
    assert adamw and all(s.batch_size == "full" and s.weight_decay == 0.01 for s in adamw)
    assert all(s.weight_decay == 0.001 for s in specs if s.optimizer == "sgd")


def test_plan_is_stable(shipped):
    config = shipped["config.yaml"]
    assert [s.run_id for s in plan(config)] == [s.run_id for s in plan(copy.deepcopy(config))]


def test_grid_count_is_product(load):
    def edit(raw):
        raw["study"]["design"] = "grid"
        raw["study"]["families"] = ["cnn", "gru"]
        raw["study"]["datasets"] = ["mnist1d"]
        raw["study"]["regularisers"] = ["none", "dropout+l2", "l2+dropout", "batchnorm"]

    config = load("smoke.yaml", edit)
    st = config["study"]
    specs = plan(config)
    # the two spellings of dropout+l2 are one regulariser
    want = math.prod(len(st[k]) for k in ("families", "frameworks", "datasets", "sizes",
                                          "optimizers", "seeds")) * 3
    assert len(specs) == want == expected_count(config)
    assert len({s.run_id for s in specs}) == len(specs)


def test_a_grid_gives_each_family_its_own_data_and_regularisers(load):
    def edit(raw):
        raw["study"]["design"] = "grid"
        raw["study"]["regularisers"] = ["none", "batchnorm", "label_smoothing"]

    config = load("smoke.yaml", edit)
    specs = plan(config)
    assert len(specs) == expected_count(config)
    seq = [s for s in specs if s.family == "seq2seq"]
    assert {s.dataset for s in seq} == {"en_fr_numbers"}
    assert {s.regulariser for s in seq} == {"none", "label_smoothing"}
    assert {s.regulariser for s in specs if s.family == "cnn"} == {"none", "batchnorm"}
    assert {s.dataset for s in specs if s.family == "cnn"} == {"mnist1d"}


def test_a_family_without_a_dataset_it_reads_is_one_clear_error(load):
    def edit(raw):
        raw["study"]["datasets"] = ["mnist1d"]

    with pytest.raises(SpecError, match="'seq2seq' reads none of study.datasets"):
        plan(load("smoke.yaml", edit))


def test_cells_add_runs_at_every_framework_and_seed_and_lr_scale_scales_rates(load):
    def edit(raw):
        raw["study"]["cells"] = [{"family": "lstm", "dataset": "tokens", "sizes": ["article"]}]
        raw["study"]["family_settings"]["seq2seq"]["lr_scale"] = 0.5

    config = load("smoke.yaml", edit)
    specs = plan(config)
    assert len(specs) == expected_count(config)
    extra = [s for s in specs if s.family == "lstm"]
    assert {(s.framework, s.seed) for s in extra} == {("torch", 0), ("torch", 1),
                                                      ("tf", 1000), ("tf", 1001)}
    assert {(s.dataset, s.size, s.optimizer, s.regulariser) for s in extra} == {
        ("tokens", "article", "adam", "none")}
    base = config["study"]["optimizers"]["adam"]["lr"]
    assert {s.lr for s in specs if s.family == "seq2seq"} == {base * 0.5}
    grid = lr_grid_runs(config, specs)
    assert {s.lr for s in grid if s.family == "seq2seq"} == {
        base * 0.5 * m for m in config["study"]["lr_grid"]}
    assert any(s.family == "lstm" for s in grid)  # cells choose their rate like the rest


def test_full_grid_count(load, tmp_path):
    # every family, size, optimizer, regulariser and dataset of the GPU grid; one framework
    # and one seed keep the expansion quick (they multiply the count, tested above)
    def edit(raw):
        raw["study"]["frameworks"] = raw["study"]["frameworks"][:1]
        raw["study"]["seeds"] = raw["study"]["seeds"][:1]
        raw["data_dir"] = str(tmp_path)

    with pytest.raises(ConfigError, match="bench fetch mnist"):
        load("full.yaml", edit)  # the article's own data: fetched first
    for name in ("mnist.npz", "imdb.npz"):
        (tmp_path / name).write_bytes(b"")
    config = load("full.yaml", edit)
    specs = plan(config)
    assert len(specs) == expected_count(config)
    assert len({s.run_id for s in specs}) == len(specs)
    articles = {(s.family, s.dataset, s.size) for s in specs if s.size == "article"}
    assert {("cnn", "mnist", "article"), ("lstm", "imdb", "article")} <= articles
    assert ("seq2seq", "en_fr_numbers", "article") in articles


def test_centre_optimizer_must_be_in_sweep(load):
    def edit(raw):
        raw["study"]["centre"]["optimizer"] = "rmsprop"

    with pytest.raises(SpecError, match="rmsprop"):
        plan(load("smoke.yaml", edit))


@pytest.mark.parametrize("runs_per_job", [1, 3, 8, 12, 1000])
def test_make_jobs(shipped, runs_per_job):
    specs = plan(shipped["config.yaml"])
    jobs = make_jobs(specs, runs_per_job)
    seen = Counter(s.run_id for b in jobs for s in b.specs)
    assert seen == Counter(s.run_id for s in specs)  # every run exactly once
    names = [b.name for b in jobs]
    assert len(set(names)) == len(names)
    for b in jobs:
        assert 1 <= len(b.specs) <= runs_per_job
        assert {s.framework for s in b.specs} == {b.framework}
        assert len({(s.family, s.dataset) for s in b.specs}) == 1
    again = make_jobs(plan(shipped["config.yaml"]), runs_per_job)
    assert [(b.name, [s.run_id for s in b.specs]) for b in again] == [
        (b.name, [s.run_id for s in b.specs]) for b in jobs]


def test_make_jobs_uses_few_jobs(shipped):
    # chunking fills jobs: no more jobs per group than ceil(group size / runs_per_job)
    specs = plan(shipped["config.yaml"])
    groups = Counter((s.framework, s.family, s.dataset) for s in specs)
    rpj = 12
    assert len(make_jobs(specs, rpj)) == sum(-(-n // rpj) for n in groups.values())


def test_default_study_covers_the_questions(shipped):
    st = shipped["config.yaml"]["study"]
    assert set(st["families"]) == set(bench.registry.FAMILIES)
    assert set(st["frameworks"]) == set(bench.registry.FRAMEWORKS)
    specs = plan(shipped["config.yaml"])
    assert {s.family for s in specs} == set(bench.registry.FAMILIES)
    assert {s.framework for s in specs} == set(bench.registry.FRAMEWORKS)
    for f in bench.registry.CLASSIFIERS:  # at least 3 sizes spanning 1.5 orders of magnitude
        counts = [bench.sizes.param_count(f, z, "mnist1d") for z in sizes_of(st, f)]
        assert len(counts) >= 3 and max(counts) / min(counts) >= 10**1.5, (f, counts)
    # the translation model at 3 sizes spanning 1.4 orders, both frameworks
    counts = [bench.sizes.param_count("seq2seq", z, "en_fr_numbers")
              for z in sizes_of(st, "seq2seq")]
    assert len(counts) >= 3 and max(counts) / min(counts) >= 10**1.4, counts
    # at least 3 independent seeds per point: the frameworks' seeds are disjoint
    seeds = {(s.family, s.size, s.optimizer, s.regulariser, s.seed) for s in specs}
    per_point = Counter(k[:4] for k in seeds)
    assert min(per_point.values()) >= 3
    assert st["patience"] > 0 and st["epochs"] > st["min_epochs"]  # budgets by convergence


def test_grid_drop_takes_one_rung_or_a_list_in_epoch_order(shipped):
    config = copy.deepcopy(shipped["config.yaml"])
    st = config["study"]
    st["lr_grid_drop"] = {"epoch": 20, "margin": 0.03}
    assert grid_drop(config) == ((20, 0.03),)
    st["lr_grid_drop"] = [{"epoch": 20, "margin": 0.03}, {"epoch": 10, "margin": 0.05}]
    assert grid_drop(config) == ((10, 0.05), (20, 0.03))
    st["lr_race_epochs"] = 5  # a race's runs are too short to be judged
    assert grid_drop(config) is None
    del st["lr_grid_drop"], st["lr_race_epochs"]
    assert grid_drop(config) is None


def test_lr_grid_one_seed_one_framework_every_unit(shipped):
    config = shipped["config.yaml"]
    st = config["study"]
    specs = plan(config)
    grid = lr_grid_runs(config, specs)
    assert {s.framework for s in grid} == {st["frameworks"][0]}
    assert {s.seed for s in grid} == {st["seeds"][0]}
    assert {s.regulariser for s in grid} == {"none"}
    by_unit = Counter(unit_of(s) for s in grid)
    assert set(by_unit) == {unit_of(s) for s in specs}
    assert set(by_unit.values()) == {len(st["lr_grid"])}
    for s in grid:
        scale = st["family_settings"].get(s.family, {}).get("lr_scale", 1)
        base = st["optimizers"][s.optimizer]["lr"] * scale
        assert any(s.lr == pytest.approx(base * m) for m in st["lr_grid"])
    # the grid run at the base rate is one of the study's own runs: reused, not repeated
    assert len({g.run_id for g in grid} & {s.run_id for s in specs}) == len(by_unit)
    grid_jobs, study_jobs = jobs(config)
    assert all(b.name.startswith("lr-") and not b.choose_lr for b in grid_jobs)
    assert all(b.choose_lr for b in study_jobs)
    # the centre rate of each unit runs first in its job, then the others, which a grid
    # job stops once they fall behind an earlier rate (lr_grid_drop); study jobs never do
    drop = tuple(sorted((r["epoch"], r["margin"]) for r in st["lr_grid_drop"]))
    assert len(drop) == 2 and drop[0][0] < drop[1][0]
    assert all(b.drop == drop for b in grid_jobs) and all(b.drop is None for b in study_jobs)
    for b in grid_jobs:
        first = {}
        for s in b.specs:
            first.setdefault(unit_of(s), s)
        for unit, s in first.items():
            scale = st["family_settings"].get(unit[0], {}).get("lr_scale", 1)
            assert s.lr == pytest.approx(st["optimizers"][unit[3]]["lr"] * scale), unit


def test_no_lr_grid_no_choice(load):
    def edit(raw):
        raw["study"]["lr_grid"] = [1]

    config = load("smoke.yaml", edit)
    grid_jobs, study_jobs = jobs(config)
    assert grid_jobs == [] and not any(b.choose_lr for b in study_jobs)


def test_family_settings_and_sizes_reach_their_family_only(load):
    def edit(raw):
        raw["study"]["family_settings"] = {"gru": {"lr_warmup": 50, "patience": 2}}
        raw["study"]["family_sizes"] = {"cnn": ["xs"]}

    specs = plan(load("smoke.yaml", edit))
    assert all(s.lr_warmup == 50 and s.patience == 2 for s in specs if s.family == "gru")
    assert all(s.lr_warmup == 0 for s in specs if s.family == "cnn")
    assert {s.size for s in specs if s.family == "cnn"} == {"xs"}
