"""bench.spec: RunSpec validation, presets, batch sizes and run ids."""

import json
import re
from dataclasses import fields

import pytest
from spec_cases import LADDER, one_line

import bench.registry
import bench.sizes
import bench.spec
from bench.registry import SpecError
from bench.spec import RunSpec

# ---------------------------------------------------------------------------- create


@pytest.mark.parametrize("name", list(bench.registry.REGULARISERS))
def test_every_regulariser_preset_reaches_the_spec(name):
    home = (("seq2seq", "en_fr_numbers") if name == "label_smoothing" else ("cnn", "digits"))
    spec = RunSpec.create(regulariser=name, family=home[0], framework="torch", dataset=home[1],
                          size="xs")
    assert spec.regulariser == name
    for key, value in bench.registry.REGULARISERS[name].preset.items():
        assert getattr(spec, key) == value, key


def test_create_presets_match_documented_values():
    kw = {"family": "cnn", "framework": "torch", "dataset": "digits", "size": "xs"}
    assert RunSpec.create("dropout", **kw).dropout == 0.2
    assert RunSpec.create("l2", **kw).l2 == 1e-4
    assert RunSpec.create("lr_decay", **kw).lr_schedule == "cosine"
    assert RunSpec.create("lr_step", **kw).lr_schedule == "step"
    assert RunSpec.create("early_stop", **kw).patience == 3
    assert RunSpec.create("batchnorm", **kw).batchnorm is True
    plain = RunSpec.create("none", **kw)
    assert (plain.dropout, plain.l2, plain.lr_schedule, plain.patience, plain.batchnorm) == (
        0.0, 0.0, "none", 0, False)


def test_create_explicit_values_win_over_presets():
    kw = {"family": "cnn", "framework": "torch", "dataset": "digits", "size": "xs"}
    assert RunSpec.create("dropout", dropout=0.5, **kw).dropout == 0.5
    assert RunSpec.create("l2", l2=3e-3, **kw).l2 == 3e-3
    assert RunSpec.create("early_stop", patience=7, **kw).patience == 7
    # None means "not given" (CLI flags left unset), so the preset stays.
    assert RunSpec.create("dropout", dropout=None, **kw).dropout == 0.2


def test_create_adamw_default_weight_decay():
    kw = {"family": "cnn", "framework": "torch", "dataset": "digits", "size": "xs"}
    assert RunSpec.create(optimizer="adamw", **kw).weight_decay == 0.01
    assert RunSpec.create(optimizer="adamw", weight_decay=0.05, **kw).weight_decay == 0.05
    assert RunSpec.create(optimizer="adamw", weight_decay=0.0, **kw).weight_decay == 0.0
    assert RunSpec.create(optimizer="adam", **kw).weight_decay == 0.0


def test_create_normalises_batch_size_and_rejects_unknown_settings():
    kw = {"family": "cnn", "framework": "torch", "dataset": "digits", "size": "xs"}
    assert RunSpec.create(batch_size="32", **kw).batch_size == 32
    assert RunSpec.create(batch_size="Full", **kw).batch_size == "full"
    assert RunSpec.create(batch_size="32", **kw).run_id == RunSpec.create(
        batch_size=32, **kw).run_id
    with pytest.raises(SpecError, match="'learning_rate'"):
        RunSpec.create(learning_rate=0.1, **kw)


# ---------------------------------------------------------------------------- batch size


@pytest.mark.parametrize("value,want", [
    ("full", "full"), ("FULL", "full"), (" full ", "full"), (1, 1), ("1", 1), (64, 64),
    ("128", 128),
])
def test_parse_batch_size_accepts(value, want):
    assert bench.spec.parse_batch_size(value) == want


@pytest.mark.parametrize("value", [0, -1, "0", "abc", "", None, "1.5", "full-batch"])
def test_parse_batch_size_rejects(value):
    with pytest.raises(SpecError) as e:
        bench.spec.parse_batch_size(value)
    assert repr(value) in one_line(e)


@pytest.mark.parametrize("value", [1.5, 2.5])
def test_parse_batch_size_rejects_fractional_numbers(value):
    # A fractional batch size is as wrong as the string "1.5"; silently truncating 1.5 to 1
    # turns a mini-batch run into a stochastic one.
    with pytest.raises(SpecError):
        bench.spec.parse_batch_size(value)
    with pytest.raises(SpecError):
        _base(batch_size=value)


def test_batch_regime():
    assert bench.spec.batch_regime("full") == "full-batch"
    assert bench.spec.batch_regime(1) == "stochastic"
    assert bench.spec.batch_regime(2) == "mini-batch"
    assert bench.spec.batch_regime(bench.spec.parse_batch_size("256")) == "mini-batch"


# ---------------------------------------------------------------------------- RunSpec


def _base(**kw):
    return RunSpec(**{"family": "cnn", "framework": "torch", "dataset": "digits", "size": "xs",
                      **kw})


@pytest.mark.parametrize("field,value", [
    ("family", "resnet"), ("framework", "jax"), ("dataset", "cifar10"), ("size", "huge"),
    ("optimizer", "adagrad"), ("device", "tpu"), ("lr_schedule", "linear"),
    ("batch_size", "many"),
])
def test_runspec_rejects_unknown_choice(field, value):
    with pytest.raises(SpecError) as e:
        _base(**{field: value})
    assert repr(value) in one_line(e)


@pytest.mark.parametrize("field,value", [
    ("lr", 0.0), ("lr", -1e-3), ("lr", float("nan")), ("lr", float("inf")),
    ("dropout", 1.0), ("dropout", -0.1), ("epochs", 0), ("max_steps", -1), ("l2", -1.0),
    ("weight_decay", -0.1), ("patience", -1), ("threads", 0), ("warmup_steps", -1),
    ("block_steps", 0), ("block_seconds", -1.0),
])
def test_runspec_rejects_bad_number(field, value):
    with pytest.raises(SpecError) as e:
        _base(**{field: value})
    msg = one_line(e)
    assert f"{field}=" in msg and repr(value) in msg


def test_runspec_size_must_exist_for_family():
    for fam in bench.registry.FAMILIES:
        for size in bench.sizes.SIZES[fam]:
            _base(family=fam, size=size, dataset="en_fr_numbers" if fam == "seq2seq"
                  else "digits")


_CHOICES = {
    "family": bench.registry.FAMILIES, "framework": bench.registry.FRAMEWORKS,
    "dataset": tuple(bench.registry.DATASETS),
    "size": LADDER, "optimizer": tuple(bench.registry.OPTIMIZERS), "device": bench.registry.DEVICES,
    "lr_schedule": bench.registry.LR_SCHEDULES, "regulariser": tuple(bench.registry.REGULARISERS),
    "precision": bench.registry.PRECISIONS,
}


def _other(name, value):
    if name in _CHOICES:
        return next(c for c in _CHOICES[name] if c != value)
    if name == "batch_size":
        return "full" if value != "full" else 32
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.1 if value < 0.5 else value / 2
    if isinstance(value, str):  # a free-form label
        return value + "x"
    raise AssertionError(f"test does not know how to vary RunSpec.{name}")


def test_run_id_equal_specs_equal_ids():
    a, b = _base(seed=3, lr=0.01), _base(seed=3, lr=0.01)
    assert a == b and a.run_id == b.run_id
    assert RunSpec.from_dict(a.to_dict()).run_id == a.run_id


@pytest.mark.parametrize("name", [f.name for f in fields(RunSpec)])
def test_run_id_changes_with_every_field(name):
    # label smoothing is the translation model's alone
    base = (_base(family="seq2seq", dataset="en_fr_numbers") if name == "label_smoothing"
            else _base())
    changed = base.with_(**{name: _other(name, getattr(base, name))})
    assert changed.run_id != base.run_id


def test_fields_added_later_keep_old_ids_at_their_defaults_and_name_the_precision():
    # the id of a default spec as bench 0.4 computed it, before precision/tf32/conv_autotune
    assert RunSpec.create(family="cnn", framework="torch", dataset="mnist1d",
                          size="xs").run_id == "cnn-torch-mnist1d-xs-adam-none-b64-s0-49ecb89857"
    assert "-s0-bf16-" in _base().with_(precision="bf16").run_id
    assert "fp32" not in _base().run_id
    with pytest.raises(SpecError, match="precision"):
        _base(precision="fp8")


def test_run_id_readable_and_filesystem_safe():
    s = RunSpec.create("dropout+l2", family="gru", framework="tf", dataset="mnist1d", size="m",
                       optimizer="sgd", lr=0.1, batch_size="full", seed=4)
    rid = s.run_id
    assert rid.startswith("gru-tf-mnist1d-m-sgd-l2-dropout-bfull-s4-"), rid
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", rid), rid
    assert re.fullmatch(r"[0-9a-f]{10}", rid.rsplit("-", 1)[1]), rid


def test_from_dict_rejects_unknown_key():
    d = _base().to_dict()
    d["colour"] = "blue"
    with pytest.raises(SpecError, match="'colour'"):
        RunSpec.from_dict(d)


@pytest.mark.parametrize("name,a,b", [
    ("lr", 1, 1.0), ("l2", 0, 0.0), ("block_seconds", 2, 2.0), ("epochs", 10.0, 10),
    ("batchnorm", 1, True), ("compile", 0, False),
])
def test_equal_specs_written_with_other_number_types_share_one_id(name, a, b):
    """A config's `lr: 1` and the CLI's --lr 1 (a float) are one run, found under one id."""
    x, y = _base(**{name: a}), _base(**{name: b})
    assert x == y and x.run_id == y.run_id
    assert type(getattr(x, name)) is type(getattr(y, name))
    assert RunSpec.from_dict(json.loads(json.dumps(x.to_dict()))).run_id == x.run_id


def test_with_validates_and_normalises_like_the_constructor():
    s = _base(family="transformer", dataset="tokens", size="s")
    assert s.with_(batch_size="64").run_id == s.with_(batch_size=64.0).run_id == s.run_id
    assert s.with_(seed=1).run_id != s.run_id and s.with_(seed=1).with_(seed=0) == s
    with pytest.raises(SpecError, match="dropout"):
        s.with_(dropout=1.0)
    with pytest.raises(SpecError, match="cannot read"):
        s.with_(family="seq2seq")
    # what the backends build from: the binary task's one logit, the size's widths
    assert (s.info.n_outputs, s.arch.d_model, s.arch.layers) == (1, 32, 2)
