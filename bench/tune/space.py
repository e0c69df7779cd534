"""The framework-neutral search space: which RunSpec fields a study may tune, how a space is
checked, and how it becomes Optuna distributions and a trial's suggestions."""

from __future__ import annotations

import json
import math

from ..registry import SpecError
from ..spec import RunSpec

DISTRIBUTIONS = ("float", "int", "categorical")
# RunSpec fields a study may tune, and the distribution kinds that make sense for each
TUNABLE: dict[str, tuple[str, ...]] = {
    "lr": ("float",),
    "weight_decay": ("float",),
    "l2": ("float",),
    "dropout": ("float",),
    "optimizer": ("categorical",),
    "lr_schedule": ("categorical",),
    "batchnorm": ("categorical",),
    "batch_size": ("categorical", "int"),
    "patience": ("int", "categorical"),
    "label_smoothing": ("float",),
}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(base: dict, name: str, value, where: str, what: str) -> None:
    """A value of a tuned field must make a valid RunSpec on its own."""
    try:
        RunSpec.create(regulariser=base.get("regulariser", "none"),
                       **{**{k: v for k, v in base.items() if k != "regulariser"}, name: value})
    except SpecError as e:
        raise SpecError(f"{where}: {what} {value!r} is not a valid {name} ({e})") from None
    except TypeError:
        raise SpecError(f"{where}: {what} {value!r} is not a valid {name}") from None


def parse_space(space, base: dict, where: str = "space") -> dict[str, dict]:
    """Validate a framework-neutral search space; returns it normalised.

    The config gives a list of ``{name, type, ...}`` entries (a list, because Snakemake
    merges ``--config tune=...`` overrides into the config key by key: a dict space would
    become the union of both spaces, a list is replaced whole); the normalised form, also
    accepted, is a dict name -> distribution. Each entry names a RunSpec field and its
    distribution: ``float``/``int`` with ``low``, ``high`` and optional ``log`` or
    ``step``; ``categorical`` with ``choices``. Raises SpecError with one line naming the
    parameter and the bad value.
    """
    if isinstance(space, list):
        entries = {}
        for i, d in enumerate(space):
            if not isinstance(d, dict) or "name" not in d:
                raise SpecError(f"{where}[{i}]: needs a name, e.g. {{name: lr, type: float, "
                                "low: .., high: ..}")
            if d["name"] in entries:
                raise SpecError(f"{where}[{i}]: parameter {d['name']!r} is listed twice")
            entries[d["name"]] = {k: v for k, v in d.items() if k != "name"}
        space = entries
    if not isinstance(space, dict) or not space:
        raise SpecError(f"{where}: the search space must name at least one parameter")
    out: dict[str, dict] = {}
    for name, d in space.items():
        at = f"{where}.{name}"
        if name not in TUNABLE:
            raise SpecError(f"{at}: unknown parameter {name!r}; tunable: {', '.join(TUNABLE)}")
        if not isinstance(d, dict) or "type" not in d:
            raise SpecError(f"{at}: needs a distribution, e.g. {{type: float, low: .., high: ..}}")
        kind = d["type"]
        if kind not in DISTRIBUTIONS:
            raise SpecError(f"{at}: unknown distribution {kind!r}; "
                            f"allowed: {', '.join(DISTRIBUTIONS)}")
        if kind not in TUNABLE[name]:
            raise SpecError(f"{at}: distribution {kind!r} does not fit {name}; "
                            f"use {' or '.join(TUNABLE[name])}")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high",
                                                                     "log", "step"}
        extra = sorted(set(d) - allowed)
        if extra:
            article = "an" if kind == "int" else "a"
            raise SpecError(f"{at}: key {extra[0]!r} does not belong to {article} {kind} "
                            "distribution")
        if kind == "categorical":
            choices = d.get("choices")
            if not isinstance(choices, list) or not choices:
                raise SpecError(f"{at}: categorical needs a non-empty list of choices")
            if len({json.dumps(c) for c in choices}) != len(choices):
                raise SpecError(f"{at}: choices repeat a value")
            for c in choices:
                if not isinstance(c, (str, int, float, bool)) or c is None:
                    raise SpecError(f"{at}: choice {c!r} is not a string, number or boolean")
                _check_value(base, name, c, at, "choice")
            out[name] = {"type": kind, "choices": list(choices)}
            continue
        low, high = d.get("low"), d.get("high")
        for key, v in (("low", low), ("high", high)):
            if not _is_number(v) or (kind == "int" and not float(v).is_integer()):
                what = "an integer" if kind == "int" else "a number"
                raise SpecError(f"{at}: {key} must be {what}, got {v!r}")
        if low > high:
            raise SpecError(f"{at}: low {low!r} > high {high!r}")
        log, step = bool(d.get("log", False)), d.get("step")
        if log and low <= 0:
            raise SpecError(f"{at}: a log distribution needs low > 0, got {low!r}")
        if step is not None:
            if log:
                raise SpecError(f"{at}: step and log cannot be combined")
            bad_int = kind == "int" and _is_number(step) and not float(step).is_integer()
            if not _is_number(step) or step <= 0 or bad_int:
                raise SpecError(f"{at}: step must be a positive number, got {step!r}")
        for key, v in (("low", low), ("high", high)):
            _check_value(base, name, int(v) if kind == "int" else float(v), at, key)
        norm = {"type": kind, "low": int(low) if kind == "int" else float(low),
                "high": int(high) if kind == "int" else float(high), "log": log}
        if step is not None:
            norm["step"] = int(step) if kind == "int" else float(step)
        out[name] = norm
    return out


def distributions(space: dict[str, dict]) -> dict:
    """The Optuna distribution of each parameter of a parsed space."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out = {}
    for name, d in space.items():
        if d["type"] == "categorical":
            out[name] = CategoricalDistribution(d["choices"])
        elif d["type"] == "float":
            out[name] = FloatDistribution(d["low"], d["high"], log=d["log"], step=d.get("step"))
        else:
            out[name] = IntDistribution(d["low"], d["high"], log=d["log"], step=d.get("step", 1))
    return out


def suggest(trial, space: dict[str, dict]) -> dict:
    """Ask the trial for every parameter of the space, in a fixed order."""
    params = {}
    for name, d in space.items():
        if d["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, d["choices"])
        elif d["type"] == "float":
            params[name] = trial.suggest_float(name, d["low"], d["high"], log=d["log"],
                                               step=d.get("step"))
        else:
            params[name] = trial.suggest_int(name, d["low"], d["high"], log=d["log"],
                                             step=d.get("step", 1))
    return params
