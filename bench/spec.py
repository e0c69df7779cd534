"""RunSpec, the one object that fully describes a run.

A RunSpec is validated against the registries (bench.registry) and the size ladders
(bench.sizes); its run id hashes every field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace

from .registry import (
    DATASETS,
    DEVICES,
    FAMILIES,
    FRAMEWORKS,
    LR_SCHEDULES,
    OPTIMIZERS,
    PRECISIONS,
    DatasetInfo,
    SpecError,
    check_choice,
    check_family_reads,
    parse_regulariser,
)
from .sizes import size_of

# ---------------------------------------------------------------------------- run spec


def parse_batch_size(value) -> int | str:
    """'full' (full-batch gradient descent), 1 (stochastic) or N (mini-batch)."""
    if isinstance(value, str) and value.strip().lower() == "full":
        return "full"
    bad = SpecError(f"bad batch size {value!r}; use 'full', 1 or a positive integer")
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise bad
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise bad from None
    if n < 1:
        raise SpecError(f"bad batch size {value!r}; use 'full', 1 or a positive integer")
    return n


COMPILE_MODES = (False, True, "best")


def parse_compile(value) -> bool | str:
    """False, True or "best" (also from the strings "false", "true", "best", 0 and 1)."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("false", "true", "best"):
            return {"false": False, "true": True}.get(v, v)
    elif value in (0, 1):
        return bool(value)
    raise SpecError(f"bad compile {value!r}; use false, true or best")


def batch_regime(batch_size: int | str) -> str:
    if batch_size == "full":
        return "full-batch"
    return "stochastic" if batch_size == 1 else "mini-batch"


# Fields that do not change what is computed, only how it is measured or where it runs,
# still belong to the id: a run on 1 thread and one on 2 are different measurements.
@dataclass(frozen=True)
class RunSpec:
    family: str
    framework: str
    dataset: str
    size: str
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int | str = 64
    epochs: int = 10
    max_steps: int = 0  # 0: no cap; otherwise stop after this many optimizer steps
    seed: int = 0
    regulariser: str = "none"
    l2: float = 0.0
    weight_decay: float = 0.0
    dropout: float = 0.0
    batchnorm: bool = False
    label_smoothing: float = 0.0  # seq2seq: the share of each target's mass spread evenly
    lr_schedule: str = "none"
    # Budget by convergence: train until the smoothed validation accuracy has not improved
    # for `patience` epochs (0: never stop early), but at least `min_epochs` and at most
    # `epochs`; test metrics come from the weights of the best validation epoch.
    patience: int = 0
    min_epochs: int = 1
    lr_warmup: int = 0  # optimizer steps of linear learning-rate warm-up from 0
    device: str = "cpu"
    threads: int = 1
    # False: eager torch / TF graph mode; True: torch.compile / XLA jit_compile; "best":
    # whichever of the two trains this model faster in a short probe (bench.compile_choice;
    # the record's `compile_used` says which ran).
    compile: bool | str = False
    precision: str = "fp32"
    # GPU math settings, set the same way in both frameworks (no effect on a CPU). TF32
    # off: TensorFlow turns it on by default on Ampere and later, torch does not for
    # matmuls, so "fp32" would mean less precise math in one framework than the other.
    # Convolution autotuning on: TensorFlow's default, and torch's cudnn.benchmark then
    # picks its fastest algorithm per shape as well (a run's batches share one shape).
    tf32: bool = False
    conv_autotune: bool = True
    warmup_steps: int = 10
    block_steps: int = 50  # a timed block holds at least this many steps ...
    block_seconds: float = 2.0  # ... and lasts at least this long
    tuned: str = ""  # name of the Optuna study whose best parameters this run uses

    def __post_init__(self):
        check_choice("family", self.family, FAMILIES)
        check_choice("framework", self.framework, FRAMEWORKS)
        check_choice("dataset", self.dataset, tuple(DATASETS))
        size_of(self.family, self.size)
        check_family_reads(self.family, self.dataset)
        check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        check_choice("device", self.device, DEVICES)
        check_choice("lr schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        object.__setattr__(self, "compile", parse_compile(self.compile))
        # Normalise so that 64, 64.0 and "64" give one spec and one run id.
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size))
        # Equal specs must give one id: the id hashes the JSON, where 1 and 1.0 differ, and
        # a config's `lr: 1` or `l2: 0` arrives as an int.
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if f.type == "float":
                object.__setattr__(self, f.name, float(v))
            elif f.type == "int" and isinstance(v, float) and v.is_integer():
                object.__setattr__(self, f.name, int(v))
            elif f.type == "bool" and v in (0, 1):
                object.__setattr__(self, f.name, bool(v))
        checks = [
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("epochs", self.epochs >= 1),
            ("max_steps", self.max_steps >= 0),
            ("l2", self.l2 >= 0),
            ("weight_decay", self.weight_decay >= 0),
            ("dropout", 0 <= self.dropout < 1),
            ("label_smoothing", 0 <= self.label_smoothing < 1),
            ("patience", self.patience >= 0),
            ("min_epochs", 1 <= self.min_epochs <= self.epochs),
            ("lr_warmup", self.lr_warmup >= 0),
            ("threads", self.threads >= 1),
            ("warmup_steps", self.warmup_steps >= 0),
            ("block_steps", self.block_steps >= 1),
            ("block_seconds", self.block_seconds >= 0),
        ]
        for name, ok in checks:
            if not ok:
                raise SpecError(f"bad value {name}={getattr(self, name)!r}")
        if self.family == "seq2seq" and self.batchnorm:
            raise SpecError("seq2seq takes no batch norm (its blocks use LayerNorm)")
        if self.family != "seq2seq" and self.label_smoothing:
            raise SpecError(f"label smoothing is for seq2seq; {self.family} uses none")

    @classmethod
    def create(cls, regulariser: str = "none", **kw) -> RunSpec:
        """Build a spec from a regulariser label plus explicit overrides.

        Explicit keyword values win over the label's presets; adamw brings its default
        decoupled weight decay unless one is given.
        """
        label, settings = parse_regulariser(regulariser)
        opt = OPTIMIZERS.get(kw.get("optimizer", "adam"))
        if opt and opt.default_weight_decay:
            settings.setdefault("weight_decay", opt.default_weight_decay)
        for k, v in kw.items():
            if v is not None:
                settings[k] = v
        if "batch_size" in settings:
            settings["batch_size"] = parse_batch_size(settings["batch_size"])
        if isinstance(settings.get("compile"), dict):  # per framework, as config.yaml allows
            settings["compile"] = settings["compile"].get(settings.get("framework"), False)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise SpecError(f"unknown run setting {unknown[0]!r}")
        return cls(regulariser=label, **settings)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown run setting {unknown[0]!r}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def run_id(self) -> str:
        """Readable prefix plus a hash of every field: equal specs, equal ids.

        Fields added since 0.4 enter the hash only away from their defaults, so the runs
        of earlier studies keep their ids."""
        d = self.to_dict()
        for k, v in MATH_DEFAULTS.items():
            if d[k] == v:
                del d[k]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        reg = self.regulariser.replace("+", "-")
        prec = "" if self.precision == "fp32" else f"-{self.precision}"
        return (
            f"{self.family}-{self.framework}-{self.dataset}-{self.size}-{self.optimizer}-"
            f"{reg}-b{self.batch_size}-s{self.seed}{prec}-{digest}"
        )

    @property
    def info(self) -> DatasetInfo:
        return DATASETS[self.dataset]

    @property
    def arch(self):
        return size_of(self.family, self.size)

    def with_(self, **kw) -> RunSpec:
        return replace(self, **kw)


# RunSpec's precision and GPU math settings at their defaults; added in 0.5, so they enter
# the run id's hash only away from these.
MATH_DEFAULTS = {"precision": "fp32", "tf32": False, "conv_autotune": True}
