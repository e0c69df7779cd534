"""Study config validation: JSON schema (draft 2020-12) plus the checks a schema cannot make.

Every problem is reported as one line naming the key and the bad value, before any job
starts and before anything is written under results/.
"""

from __future__ import annotations

import copy
from pathlib import Path

from .registry import DATASETS, SpecError

# The workflow's schema: the one place the config's keys, checks and defaults are written.
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(SpecError):
    pass


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _message(err) -> str:
    where = _path(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"config key {where}: unknown key {extra[0]!r}{hint}"
    if v == "enum":
        return (f"config key {where}: {err.instance!r} is not one of "
                f"{', '.join(map(str, err.validator_value))}")
    if v == "propertyNames":
        return f"config key {where}: unknown name {err.instance!r}"
    if v == "oneOf" and "description" in err.schema:
        return f"config key {where}: {err.instance!r} is not allowed ({err.schema['description']})"
    if v == "required":
        return f"config key {where}: {err.message}"
    if v in ("minItems", "minProperties"):
        return f"config key {where}: must not be empty (the study would have no runs)"
    if v == "pattern":
        return (f"config key {where}: {err.instance!r} is not allowed "
                f"(must match {err.validator_value})")
    return f"config key {where}: {err.message}"


def _fill_defaults(schema: dict, instance: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if isinstance(instance.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, instance[key])


def load_schema(schema_path: str | Path = SCHEMA_PATH) -> dict:
    import yaml

    return yaml.safe_load(Path(schema_path).read_text())


def schema_defaults(schema: dict) -> dict:
    """The `default:` of every property of an object schema, nested objects filled in turn
    (what validation fills into a config that leaves them out); needs no jsonschema."""
    out: dict = {}
    _fill_defaults(schema, out)
    return out


def check_config(config: dict, schema_path: str | Path) -> dict:
    """Validate `config`, fill schema defaults, check data files; returns the filled config."""
    import jsonschema

    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), e.path))
    if errors:
        # oneOf reports the branch failures; the deepest concrete error names the value best
        err = errors[0]
        if err.context and "description" not in err.schema:
            err = max(err.context, key=lambda e: len(e.absolute_path))
        raise ConfigError(_message(err))
    config = copy.deepcopy(dict(config))
    _fill_defaults(schema, config)
    data_dir = Path(config["data_dir"])
    cells = [c["dataset"] for c in config["study"].get("cells") or []]
    for name in dict.fromkeys(config["study"]["datasets"] + cells):
        f = DATASETS[name].file
        if f and not (data_dir / f).is_file():
            raise ConfigError(
                f"config key study.datasets: {name!r} needs {data_dir / f}, which does not "
                f"exist (python -m bench fetch {name} --data-dir {data_dir})"
            )
        if name == "imdb" and not config["allow_pickle"]:
            raise ConfigError(
                "config key allow_pickle: dataset 'imdb' needs allow_pickle: true "
                "(imdb.npz holds pickled arrays; loading them runs code from the file)"
            )
    return config
