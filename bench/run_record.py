"""What a run record holds: one typed part per phase of a run, one line per field.

bench.train builds a record from these parts, one per phase (prepare, fit, test, finish);
bench.study.runner writes the `error` record of a run that raised. The README's field table
(`python -m bench record-fields`) and a JSON Schema for records
(`python -m bench record-fields --schema`) are generated from here, and tests check the
README, the schema and real records of both frameworks against each other. A field added to
a record without a line here fails those tests.

Each part says when it is present: `always` (every record, `error` included), `run` (every
record but `error`), `ok` (status ok), `ok-translation` / `ok-classifier` (status ok, of a
seq2seq run / of any other family). Within a part, a `NotRequired` field is present only in
the case its line names.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated as A
from typing import (
    Any,
    Literal,
    NotRequired,
    TypedDict,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

Status = Literal["ok", "diverged", "oom", "pruned", "error"]

# --------------------------------------------------------------------------- the spec part

# The spec part is RunSpec's fields as they are (bench.spec); their meaning, one line each.
SPEC_FIELDS: dict[str, str] = {
    "family": "model family: cnn, lstm, gru, transformer or seq2seq",
    "framework": "torch or tf",
    "dataset": "dataset name (`bench list`)",
    "size": "named size on the family's ladder (`bench list`)",
    "optimizer": "optimizer name (bench.registry.OPTIMIZERS)",
    "lr": "peak learning rate",
    "batch_size": "mini-batch size; 1 is stochastic, 'full' full-batch gradient descent",
    "epochs": "the cap on epochs (a run may stop earlier on its plateau)",
    "max_steps": "cap on optimizer steps; 0 for none",
    "seed": "random seed (weights, batch order, dropout)",
    "regulariser": "regulariser label, e.g. none, l2, dropout, batchnorm, wd, l2+dropout",
    "l2": "L2 penalty coefficient added to the loss",
    "weight_decay": "decoupled weight decay",
    "dropout": "dropout rate",
    "batchnorm": "whether the model has batch normalisation",
    "label_smoothing": "seq2seq: share of each target's probability spread evenly",
    "lr_schedule": "learning-rate schedule after warm-up: none, step, cosine, ...",
    "patience": "epochs without validation gain before the plateau stop; 0 never stops early",
    "min_epochs": "epochs trained before the plateau stop may act",
    "lr_warmup": "optimizer steps of linear learning-rate warm-up from 0",
    # The one spec field a record holds changed: `device_requested` keeps the spec's.
    "device": "device the run used, cpu or cuda (what the spec's cpu, cuda or auto became)",
    "threads": "intra-op threads",
    "compile": "false (eager / TF graph), true (torch.compile / XLA) or best (probe decides)",
    "precision": "fp32, or a mixed precision such as bf16",
    "tf32": "GPU: TF32 matmuls allowed",
    "conv_autotune": "GPU: convolution algorithm autotuning",
    "warmup_steps": "first optimizer steps left out of the throughput",
    "block_steps": "a timed block holds at least this many steps ...",
    "block_seconds": "... and lasts at least this many seconds",
    "tuned": "name of the Optuna study whose best parameters the run uses; '' for none",
}


class Identity(TypedDict):
    run_id: A[str, "family-framework-dataset-size-optimizer-regulariser-batch-seed, then a "
                   "hash of every spec field"]
    bench_version: A[str, "version of bench that wrote the record (a record of another is "
                          "redone)"]
    status: A[Status, "ok, diverged, oom, pruned (stopped by a pruner or a learning-rate "
                      "grid), or error (raised; the record holds the spec and the message)"]
    message: A[str, "why the run ended as it did; '' for an ok run that reached its cap"]


class Host(TypedDict):
    hostname: A[str, "machine name"]
    cpu_model: A[str, "CPU model name"]
    cpu_count: A[int, "logical CPUs of the machine"]
    load_avg_1m_start: A[float | None, "1-minute load average when the run started"]
    python_version: A[str, "Python version"]
    platform: A[str, "operating system and C library"]
    started_at: A[str, "local start time, ISO 8601 with offset"]
    device_requested: A[str, "device the spec asked for: cpu, cuda or auto"]
    device_name: A[str, "GPU name, or the CPU model"]
    framework_version: A[str, "torch or TensorFlow version"]
    framework_tuning: NotRequired[A[str, "torch: speed settings in force (thread waits, "
                                         "allocator, layout)"]]


class Plan(TypedDict):
    compile_used: A[bool, "whether the model trained compiled (torch.compile / XLA)"]
    compile_probe: NotRequired[A[dict, "compile: best only: both modes' probe rates, the "
                                       "expected run length and the choice"]]
    compile_probe_s: NotRequired[A[float, "compile: best only: seconds the probe took"]]
    steps_per_call: A[int, "training steps per call into the framework: TensorFlow loops "
                           "over up to 32 inside its graph (Keras's steps_per_execution), "
                           "torch and full-batch runs take 1"]
    n_train: A[int, "training samples"]
    n_val: A[int, "validation samples"]
    n_test: A[int, "test samples"]
    n_test_long: NotRequired[A[int, "seq2seq: test_long samples (longer numbers than any "
                                    "seen in training)"]]
    n_classes: A[int, "classes; for seq2seq the target vocabulary"]
    batch_size_effective: A[int, "samples per optimizer step (the whole split for 'full')"]
    batch_regime: A[str, "full-batch, stochastic or mini-batch"]
    steps_per_epoch: A[int, "optimizer steps per epoch"]
    flops_per_sample: A[int, "forward FLOPs per sample (multiply-add counted as 2)"]
    train_flops_per_sample: A[int, "3x the forward FLOPs: forward and backward"]
    model_mem_est_mb: A[float, "estimated training memory: weights, gradients, optimizer "
                               "state, activations of one batch"]


class Fit(TypedDict):
    params: NotRequired[A[int, "trainable parameters (absent when building ran out of "
                               "memory)"]]
    build_s: NotRequired[A[float, "seconds to build the model and its trainer (as params)"]]
    curve: A[list[CurvePoint], "one point per epoch trained"]
    epochs_run: NotRequired[A[int, "epochs trained; absent when the run diverged or ran "
                                   "out of memory"]]
    steps_run: NotRequired[A[int, "optimizer steps taken (absent as epochs_run)"]]
    best_val_acc: NotRequired[A[float, "best smoothed validation accuracy (the plateau "
                                       "rule's)"]]
    best_epoch: NotRequired[A[int, "epoch of best_val_acc, whose weights are tested"]]
    converged: NotRequired[A[bool, "stopped on its plateau, not at its cap"]]
    stop_reason: NotRequired[A[Literal["plateau", "cap", "pruned"], "why training stopped"]]
    samples_seen: NotRequired[A[int, "training samples processed"]]
    flops_spent: NotRequired[A[int, "training FLOPs spent: train_flops_per_sample x "
                                    "samples_seen"]]


class CurvePoint(TypedDict):
    epoch: A[int, "epoch, from 1"]
    step: A[int, "optimizer steps so far"]
    samples: A[int, "training samples seen so far"]
    train_loss: A[float, "mean training loss of the epoch"]
    val_loss: A[float | None, "validation loss"]
    val_acc: A[float, "validation accuracy (seq2seq: share of sentences whose every token "
                      "is the argmax after the true prefix, i.e. greedy exact match)"]
    elapsed_s: A[float, "seconds since the run started"]


class Test(TypedDict):
    eval_weights: A[str, "which weights were tested: the best validation epoch's"]
    val_loss: A[float, "validation loss at the tested weights"]
    val_acc: A[float, "validation accuracy at the tested weights"]
    test_loss: A[float, "test loss"]
    test_acc: A[float, "test accuracy (seq2seq: greedy exact match, as val_acc)"]
    train_loss: A[float, "loss on train_eval_samples evenly spaced training samples"]
    train_acc: A[float, "accuracy on the same samples"]
    train_eval_samples: A[int, "training samples scored (the test set's size)"]
    weights_file: NotRequired[A[str, "with --save-model: the tested weights' file beside "
                                     "the record"]]


class Inference(TypedDict):
    infer_samples_per_s: A[float | None, "inference samples/s, median over timed blocks"]
    infer_samples_per_s_min: A[float | None, "slowest block"]
    infer_samples_per_s_max: A[float | None, "fastest block"]
    infer_batch: A[int, "inference batch size"]


class Example(TypedDict):
    test: A[str, "test or test_long"]
    source: A[str, "English source"]
    reference: A[str, "French reference"]
    greedy: A[str, "greedy output"]
    beam: A[str, "beam-search output"]


def _quality(prefix: str, search: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for suffix, what in (("", "test set"), ("_long", "test_long")):
        out[f"{prefix}bleu{suffix}"] = A[float, f"BLEU of {search} on the {what} (sacrebleu)"]
        out[f"{prefix}chrf{suffix}"] = A[float, f"chrF of {search} on the {what}"]
        out[f"{prefix}exact_match{suffix}"] = A[float, f"share of {search} outputs equal to "
                                                       f"the reference, {what}"]
    return out


Translation = TypedDict("Translation", {
    "beam_width": A[int, "beams of the beam search"],
    "length_penalty": A[float, "beam search's length penalty (Hugging Face's meaning)"],
    "decode_max_len": A[int, "most tokens generated per sentence"],
    "decoding": A[str, "how generate() decoded: with the key/value cache"],
    "examples": A[list[Example], "three decoded sentences from each test set"],
    **_quality("", "greedy decoding"),
    **_quality("beam_", "beam search"),
    "decode_tokens_per_s": A[float | None, "greedy decode tokens/s at decode_batch, median "
                                           "over timed blocks"],
    "decode_tokens_per_s_min": A[float | None, "slowest block"],
    "decode_tokens_per_s_max": A[float | None, "fastest block"],
    "decode_batch": A[int, "decoding batch size"],
    "decode_tokens_per_s_b1": A[float, "tokens/s decoding single sentences one by one"],
    "decode_latency_ms": A[float, "median milliseconds per single sentence"],
    "decode_latency_ms_p90": A[float, "90th percentile of the same"],
})


class Speed(TypedDict):
    train_samples_per_s: A[float | None, "training samples/s, median over timed blocks"]
    train_samples_per_s_min: A[float | None, "slowest block"]
    train_samples_per_s_max: A[float | None, "fastest block"]
    throughput_blocks: A[int, "timed blocks"]
    throughput_partial: A[bool, "the run was too short for one full block: the partial one "
                                "was used"]
    timed_steps: A[int, "optimizer steps inside timed blocks"]
    timed_seconds: A[float, "seconds inside timed blocks"]
    first_step_s: A[float | None, "seconds of the first optimizer step (tracing, compiling)"]
    warmup_s: A[float | None, "seconds of the untimed first steps"]
    block_step_ms_median: A[float | None, "a block's mean step time, median over blocks"]
    block_step_ms_max: A[float | None, "the slowest block's mean step time"]
    train_flops_per_s: NotRequired[A[float, "train_flops_per_sample x train_samples_per_s "
                                            "(when any step was timed)"]]
    train_tokens_per_s: NotRequired[A[float, "seq2seq: target tokens/s in training (when "
                                             "any step was timed)"]]


class Memory(TypedDict):
    rss_start_mb: A[float, "resident memory before the model was built (runtime and data)"]
    peak_rss_mb: A[float, "peak resident memory of the process during the run"]
    peak_device_mem_mb: A[float | None, "GPU: allocator peak of training; None on a CPU"]
    first_epoch_peak_device_mem_mb: NotRequired[
        A[float, "GPU: allocator peak of epoch 1 (one-off workspaces), apart"]]
    model_mem_mb: NotRequired[A[float, "training memory above rss_start_mb (a GPU: above "
                                       "the data); absent when the run diverged or ran out "
                                       "of memory"]]
    wall_s: A[float, "seconds the whole run took, testing included"]


@dataclass(frozen=True)
class Part:
    name: str
    fields: type | None  # None: the spec part, read from RunSpec
    when: Literal["always", "run", "ok", "ok-translation", "ok-classifier"]
    what: str


PARTS = (
    Part("identity", Identity, "always", "which run, and how it ended"),
    Part("spec", None, "always", "the run's spec (bench.spec.RunSpec), field for field"),
    Part("host", Host, "run", "where it ran"),
    Part("plan", Plan, "run", "what the run was set to do"),
    Part("fit", Fit, "run", "training, epoch by epoch"),
    Part("speed", Speed, "run", "training throughput"),
    Part("memory", Memory, "run", "memory"),
    Part("test", Test, "ok", "evaluation at the best validation epoch's weights"),
    Part("inference", Inference, "ok-classifier", "inference throughput"),
    Part("translation", Translation, "ok-translation", "translation quality and decoding"),
)


class RunRecord(Identity, Host, Plan, Fit, Speed, Memory, Test, Inference, Translation,
                total=False):
    """A whole record, for type checkers; the parts above say which fields a status has."""


@dataclass(frozen=True)
class Field:
    name: str
    part: str
    type: Any
    required: bool  # within its part
    doc: str


def _unwrap(hint) -> tuple[Any, bool, str]:
    required = True
    if get_origin(hint) is NotRequired:
        hint, required = get_args(hint)[0], False
    args = get_args(hint)
    return args[0], required, args[1]


def _spec_fields() -> list[Field]:
    from .spec import RunSpec

    types = {"str": str, "int": int, "float": float, "bool": bool, "int | str": int | str,
             "bool | str": bool | str}
    return [Field(f.name, "spec", types[f.type], True, SPEC_FIELDS[f.name])
            for f in dataclasses.fields(RunSpec)]


def fields_of(cls: type, part: str = "") -> list[Field]:
    hints = get_type_hints(cls, include_extras=True)
    return [Field(n, part, *_unwrap(h)) for n, h in hints.items()]


def all_fields() -> list[Field]:
    """Every field of every part, in the parts' order."""
    out: list[Field] = []
    for p in PARTS:
        out += _spec_fields() if p.name == "spec" else fields_of(p.fields, p.name)
    return out


# ------------------------------------------------------------------ schema and README table

def _schema_of(tp) -> dict:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if args and origin is not list:  # a union
        return {"anyOf": [_schema_of(a) for a in args]}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0])}
    if tp is type(None):
        return {"type": "null"}
    if is_typeddict(tp):
        return _object(fields_of(tp))
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean",
                     dict: "object"}[tp]}


def _object(fields: list[Field], required: list[str] | None = None) -> dict:
    props = {}
    for f in fields:
        props[f.name] = {**_schema_of(f.type), "description": f.doc}
    return {"type": "object", "additionalProperties": False, "properties": props,
            "required": [f.name for f in fields if f.required] if required is None
            else required}


def json_schema() -> dict:
    """A JSON Schema (draft 2020-12) every record on disk satisfies."""
    fields = all_fields()
    by_part = {p.name: [f.name for f in fields if f.part == p.name and f.required]
               for p in PARTS}
    when = {p.name: p.when for p in PARTS}

    def needs(*levels: str) -> list[str]:
        return [n for part, names in by_part.items() if when[part] in levels for n in names]

    ran = {"properties": {"status": {"not": {"const": "error"}}}}
    ok = {"properties": {"status": {"const": "ok"}}}
    s2s = {"properties": {"status": {"const": "ok"}, "family": {"const": "seq2seq"}}}
    cls = {"properties": {"status": {"const": "ok"},
                          "family": {"not": {"const": "seq2seq"}}}}
    schema = _object(fields, needs("always"))
    schema["allOf"] = [{"if": ran, "then": {"required": needs("run")}},
                       {"if": ok, "then": {"required": needs("ok")}},
                       {"if": s2s, "then": {"required": needs("ok-translation")}},
                       {"if": cls, "then": {"required": needs("ok-classifier")}}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "bench run record", **schema}


def _type_name(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if args:
        return " \\| ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    return {str: "str", int: "int", float: "float", bool: "bool", dict: "object"}.get(
        tp, "object")


def markdown() -> str:
    """The README's field table: part (and when present), field, type, meaning."""
    lines = ["| part (present) | field | type | meaning |", "| --- | --- | --- | --- |"]
    when = {p.name: p.when for p in PARTS}
    nested = [("fit", "curve[]", CurvePoint), ("translation", "examples[]", Example)]
    for f in all_fields():
        mark = "" if f.required else " (optional)"
        lines.append(f"| {f.part} ({when[f.part]}) | `{f.name}`{mark} | {_type_name(f.type)} "
                     f"| {f.doc} |")
    for part, prefix, cls in nested:
        for f in fields_of(cls):
            lines.append(f"| {part} ({when[part]}) | `{prefix}.{f.name}` | {_type_name(f.type)} "
                         f"| {f.doc} |")
    return "\n".join(lines) + "\n"


def add_parsers(sub) -> None:
    p = sub.add_parser("record-fields", help="what a run record holds: the README's field "
                                             "table, or a JSON Schema with --schema")
    p.add_argument("--schema", action="store_true",
                   help="print a JSON Schema (draft 2020-12) that every record satisfies")
    p.set_defaults(func=_print_fields)


def _print_fields(a) -> int:
    import json

    print(json.dumps(json_schema(), indent=1) if a.schema else markdown(), end="")
    return 0
