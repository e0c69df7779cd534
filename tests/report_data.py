"""Synthetic run records and tuning studies for the report tests, and the helpers that
render them.

`smoke_records` fabricates the run records of a small study with the engine's record layout
(the real spec and parameter counts, invented measurements with known trends): two families,
both frameworks on disjoint seeds (PyTorch 0-2, TensorFlow 1000-1002), three sizes whose
learning rate is chosen on a validation grid (at seed 0 in PyTorch), and an optimizer x
regulariser sweep at size xs. `write_summary` aggregates them exactly as the workflow does,
so the tests read the same table format as the report rule. `seq2seq_records` does the same
for the translation model.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench import report
from bench.report import tables
from bench.sizes import param_count
from bench.spec import RunSpec
from bench.study import aggregate

FAMILIES = ("cnn", "gru")


SEEDS = {"torch": (0, 1, 2), "tf": (1000, 1001, 1002)}


SIZES = ("xs", "s", "m")


SWEEP_SIZE = "xs"


OPTIMIZERS = {"adam": 0.003, "sgd": 0.1}  # configured rates; adam's is chosen per size


LR_GRID = (0.001, 0.003, 0.01, 0.03)


BEST_LR = {"xs": 0.01, "s": 0.003, "m": 0.003}  # where the synthetic adam accuracy peaks


EPOCHS = 8


STEPS_PER_EPOCH, BATCH = 56, 64


def spec(family: str, framework: str, size: str, optimizer: str = "adam",
         regulariser: str = "none", seed: int = 0, lr: float | None = None) -> RunSpec:
    return RunSpec.create(family=family, framework=framework, dataset="mnist1d", size=size,
                          optimizer=optimizer, regulariser=regulariser, seed=seed,
                          lr=OPTIMIZERS[optimizer] if lr is None else lr, epochs=EPOCHS,
                          batch_size=BATCH)


def true_acc(s: RunSpec, params: int) -> float:
    """Synthetic final accuracy: grows with size, adam +0.02, adam peaks at BEST_LR."""
    acc = 1 - 3.0 * params ** -0.3 + (0.02 if s.optimizer == "adam" else 0.0)
    if s.optimizer == "adam":
        acc -= 0.08 * math.log10(s.lr / BEST_LR[s.size]) ** 2
    return acc


def make_record(s: RunSpec, status: str = "ok", seed_noise: float = 0.01, lr_role: str = "",
                grid_size: int = 0) -> dict:
    """A run record with the train loop's fields and invented, size-driven measurements.

    Validation accuracy rises as 1 - exp(-rate x epoch), faster at a higher learning rate;
    sizes xs and s stop at a plateau after 6 epochs, m runs to its cap of 8 still improving.
    """
    rng = np.random.default_rng([s.seed, len(s.run_id), s.epochs, int(s.lr * 1e6)])
    params = param_count(s.family, s.size, s.dataset, s.batchnorm)
    acc = float(np.clip(true_acc(s, params) + rng.normal(0, seed_noise), 0.05, 0.99))
    speed = 2e6 * params ** -0.5 * (1.5 if s.framework == "tf" else 1.0)
    rate = 0.6 * (s.lr / OPTIMIZERS[s.optimizer]) ** 0.5
    epochs = s.epochs if s.size == "m" else min(6, s.epochs)
    fps = 30 * params
    curve, t = [], 1.0
    for e in range(1, epochs + 1):
        t += 0.5 + params / 2e5
        curve.append({"epoch": e, "step": e * STEPS_PER_EPOCH,
                      "samples": e * STEPS_PER_EPOCH * BATCH, "train_loss": 2.0 / e,
                      "val_loss": 2.1 / e, "val_acc": acc * (1 - math.exp(-rate * e)),
                      "elapsed_s": t})
    rec = {"run_id": s.run_id, **s.to_dict(), "bench_version": "0.1.0",
           "hostname": "testhost", "cpu_model": "Test CPU", "cpu_count": 2,
           "load_avg_1m_start": 0.5, "python_version": "3.11.2", "platform": "Linux-test",
           "device": "cpu", "device_name": "Test CPU",
           "framework_version": "2.13.0" if s.framework == "torch" else "2.20.0",
           "n_train": 3600, "n_val": 400, "n_test": 1000, "n_classes": 10,
           "batch_size_effective": BATCH, "batch_regime": "mini-batch",
           "steps_per_epoch": STEPS_PER_EPOCH, "flops_per_sample": 10 * params,
           "train_flops_per_sample": fps,
           "model_mem_est_mb": 2e-5 * params, "lr_role": lr_role, "lr_grid_size": grid_size,
           "rss_start_mb": (350.0 if s.framework == "torch" else 600.0) + rng.normal(0, 5),
           "status": status, "message": "", "wall_s": t + 0.5}
    if status == "ok":
        best = max(p["val_acc"] for p in curve)
        rec.update(params=params, epochs_run=epochs, steps_run=STEPS_PER_EPOCH * epochs,
                   best_val_acc=best, best_epoch=epochs, converged=epochs < s.epochs,
                   stop_reason="plateau" if epochs < s.epochs else "cap",
                   flops_spent=fps * curve[-1]["samples"],
                   train_acc=acc + 0.02, val_acc=best, test_acc=acc,
                   train_loss=0.5, val_loss=0.6, test_loss=0.6,
                   train_samples_per_s=speed * (1 + rng.normal(0, 0.02)),
                   infer_samples_per_s=3 * speed, block_step_ms_median=1.0, block_step_ms_max=2.0,
                   peak_rss_mb=300 + params / 1e3 * (1.2 if s.framework == "tf" else 1.0),
                   model_mem_mb=3e-5 * params ** 0.95 * (1.2 if s.framework == "tf" else 1.0)
                   * (1 + rng.normal(0, 0.02)),
                   peak_device_mem_mb=None, curve=curve)
    else:
        rec.update(params=params, message=f"{status}: synthetic failure", curve=curve[:1],
                   flops_spent=fps * curve[0]["samples"])
    return rec


def _chosen(grid: list[dict]) -> float:
    """The grid's winner as the engine picks it: best validation accuracy, failures last,
    ties to the smaller rate."""
    def score(r):
        ok = r["status"] == "ok"
        return (r["best_val_acc"] if ok else -math.inf, -r["lr"])
    return max(grid, key=score)["lr"]


def smoke_records(statuses: dict | None = None) -> list[dict]:
    """The synthetic study's runs, every one ok unless `statuses` maps (family, size) ->
    status (applied to every run of that family and size, the grid's too)."""
    statuses = statuses or {}
    out: dict[str, dict] = {}

    def add(s: RunSpec, role: str = "", k: int = 0) -> None:
        out.setdefault(s.run_id, make_record(s, statuses.get((s.family, s.size), "ok"),
                                             lr_role=role, grid_size=k))

    for fam in FAMILIES:
        chosen = {}
        for size in SIZES:  # the learning-rate grid: adam + none, seed 0, PyTorch
            grid = [make_record(spec(fam, "torch", size, lr=lr),
                                statuses.get((fam, size), "ok")) for lr in LR_GRID]
            chosen[size] = _chosen(grid)
            for lr in LR_GRID:
                if lr != chosen[size]:
                    add(spec(fam, "torch", size, lr=lr), "grid", len(LR_GRID))
        for fw, seeds in SEEDS.items():
            for size in SIZES:
                for seed in seeds:
                    add(spec(fam, fw, size, seed=seed, lr=chosen[size]), "chosen",
                        len(LR_GRID))
            for opt in OPTIMIZERS:
                for reg in ("none", "dropout"):
                    for seed in seeds:
                        if opt == "adam":  # adam's rate at xs was chosen; sgd's configured
                            add(spec(fam, fw, SWEEP_SIZE, opt, reg, seed, chosen[SWEEP_SIZE]),
                                "chosen", len(LR_GRID))
                        else:
                            add(spec(fam, fw, SWEEP_SIZE, opt, reg, seed))
    return list(out.values())


def write_summary(records: list[dict], path: Path) -> Path:
    rows = [aggregate.flatten(r) for r in records]
    aggregate.write_table(rows, path.with_suffix(".csv"), path)
    return path


def frame(records: list[dict], tmp_path: Path, name: str = "s.parquet") -> pd.DataFrame:
    """The normalised summary table of `records`, through parquet as the report reads it."""
    return tables.load_summary(write_summary(records, tmp_path / name))


CNN_XS = {"family": "cnn", "framework": "torch", "dataset": "mnist1d", "size": "xs"}


def write_tuning_study(tune_dir: Path, name: str = "cnn_adam", multi: bool = True,
                       cell: dict | None = CNN_XS) -> Path:
    """A study folder with pruned, failed and void trials.

    multi=True: the layout `bench.tune` exports (values_<metric> columns, durations in
    seconds, epochs trained, a `void` column, best.json naming metrics and directions);
    multi=False: Optuna's own `trials_dataframe()` layout (`value`, timedelta durations).
    """
    rng = np.random.default_rng(0)
    rows = []
    for n in range(16):
        lr = float(10 ** rng.uniform(-4, -1))
        drop = float(rng.uniform(0, 0.5))
        acc = 0.9 - 0.1 * abs(np.log10(lr) + 2.5) - 0.05 * drop + rng.normal(0, 0.005)
        speed = 5000.0 - 4000 * drop + rng.normal(0, 100)
        state = "PRUNED" if n % 4 == 3 else ("FAIL" if n == 5 else "COMPLETE")
        ok = state == "COMPLETE"
        row = {"number": n, "state": state, "params_lr": lr, "params_dropout": drop,
               "params_optimizer": ["adam", "sgd"][n % 2]}
        if multi:
            row.update(values_val_acc=acc if ok else np.nan,
                       values_train_samples_per_s=speed if ok else np.nan,
                       duration=3.0 if state == "PRUNED" else 10.0 + n,
                       user_attrs_epochs_trained=1 if state == "PRUNED" else 4,
                       void="")
        else:
            row.update(value=acc if ok else np.nan,
                       duration=pd.Timedelta(seconds=3.0 if state == "PRUNED" else 10.0 + n))
        rows.append(row)
    if multi:  # a lost trial the tuning stage reissued: bookkeeping, never shown
        rows.append({"number": 16, "state": "FAIL", "void": "lost", "duration": 1.0})
    d = tune_dir / name
    d.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(d / "trials.csv", index=False)
    if multi:
        best = {"metrics": ["val_acc", "train_samples_per_s"], "cell": cell,
                "directions": ["maximize", "maximize"], "base": {"epochs": 4},
                "best_params": {"lr": 0.003, "dropout": 0.1, "optimizer": "adam"},
                "best_values": {"val_acc": 0.86, "train_samples_per_s": 4100.0}}
    else:
        best = {"direction": "maximize",
                "params": {"lr": 0.003, "dropout": 0.1, "optimizer": "adam"}}
    (d / "best.json").write_text(json.dumps(best))
    return d


def build(tmp_path: Path, records: list[dict], tune: bool = False) -> Path:
    summary = write_summary(records, tmp_path / "results" / "summary.parquet")
    tune_dir = tmp_path / "results" / "tune"
    if tune:
        write_tuning_study(tune_dir)
        write_tuning_study(tune_dir, "gru_single", multi=False)
    out = tmp_path / "reports"
    report.build_report(summary, out, tune_dir if tune else None)
    return out


def pages_text(out: Path) -> dict[str, str]:
    return {f: (out / f).read_text() for f in report.PAGE_FILES}


def visible_text(page: str) -> str:
    """The page's text outside <script> and tags, entities decoded."""
    page = re.sub(r"<script>.*?</script>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def tuned_records(recs: list[dict]) -> list[dict]:
    """Final runs of study cnn_adam: cnn xs adam+none again, with a distinctive accuracy."""
    return [dict(r, tuned="cnn_adam", run_id=r["run_id"] + "-tuned", lr=0.0123, test_acc=0.99,
                 lr_role="", lr_grid_size=0)
            for r in recs if r["family"] == "cnn" and r["size"] == "xs"
            and r["optimizer"] == "adam" and r["regulariser"] == "none"
            and r["lr_role"] == "chosen"]


def _finals(recs: list[dict], study: str, size: str, delta: float) -> list[dict]:
    """Final runs of `study` at `size`: the scale recipe's runs there (same seeds, both
    frameworks) again, test accuracy + `delta`."""
    return [dict(r, tuned=study, run_id=f"{r['run_id']}-{study}", test_acc=r["test_acc"] + delta,
                 lr_role="", lr_grid_size=0)
            for r in recs if r["family"] == "cnn" and r["size"] == size
            and r["optimizer"] == "adam" and r["regulariser"] == "none"
            and r["lr_role"] == "chosen"]


def _study(recs: list[dict], **match) -> list[dict]:
    """The study runs (no grid run) of `recs` matching every key=value."""
    return [r for r in recs if r["lr_role"] != "grid"
            and all(r.get(k) == v for k, v in match.items())]


def _flat(recs: list[dict]) -> list[dict]:
    """Every study run's test accuracy 0.80 +- 0.02 by seed, the same at every size and
    cell, and throughput the same in both frameworks: nothing differs."""
    out = []
    for r in recs:
        r = dict(r)
        if r["status"] == "ok" and r["lr_role"] != "grid":
            k = int(r["seed"]) % 1000
            r["test_acc"] = 0.80 + 0.02 * (k - 1)
            r["train_samples_per_s"] = 1000.0 * (1 + 0.05 * (k - 1))
        out.append(r)
    return out


SEQ_DATASET = "en_fr_numbers"


SEQ_EM = {"xs": 0.2, "s": 0.5, "m": 0.8}  # greedy exact match on test, mean over seeds


SEQ_EXAMPLES = [("twenty-one", "vingt et un"), ("eighty-one", "quatre-vingt-un"),
                ("seventy", "soixante-dix")]


SEQ_LONG = [("one hundred thousand", "cent mille"),
            ("two hundred thousand and one", "deux cent mille un"),
            ("nine hundred thousand", "neuf cent mille")]


SEQ_BEAM_EM, SEQ_BEAM_BLEU = 0.005, 0.5  # beam minus greedy on test (+0.5 points of EM)
SEQ_DECODE_RATIO, SEQ_LATENCY_RATIO = 2.0, 1.5  # PyTorch 2x the tokens/s, TF 1.5x the ms


def seq2seq_record(framework: str, size: str, seed: int, status: str = "ok",
                   em: dict | None = None) -> dict:
    """A seq2seq run record: the classifier record's common fields, then translation
    quality with known trends (exact match `em[size]` +- 0.01 by seed, the same offsets in
    both frameworks, so per-framework and pooled means are exactly `em[size]`), beam search
    +0.005 exact match and +0.5 BLEU on test (nothing on test_long, where exact match is 0),
    PyTorch decoding twice TensorFlow's tokens/s and TensorFlow's latency 1.5x PyTorch's."""
    em = em or SEQ_EM
    s = RunSpec.create(family="seq2seq", framework=framework, dataset=SEQ_DATASET, size=size,
                       optimizer="adam", regulariser="none", seed=seed, lr=0.003,
                       epochs=EPOCHS, batch_size=32)
    rec = make_record(s, status)
    rec.update(n_classes=62)  # the vocabulary: chance of an exact match is still 0
    if status != "ok":
        return rec
    k = seed % 1000 - 1  # -1, 0, +1
    params = rec["params"]
    e = em[size] + 0.01 * k
    bleu, chrf = 20 + 60 * e, 40 + 50 * e
    bleu_long = 5 + 10 * SIZES.index(size) + k
    tok = 5e6 * params ** -0.5 * (1 + 0.02 * k) / (1 if framework == "torch" else
                                                   SEQ_DECODE_RATIO)
    lat = (5 + params / 1e4) * (1 + 0.02 * k) * (1 if framework == "torch" else
                                                 SEQ_LATENCY_RATIO)
    mark = f"[{framework} {seed}]"
    rec.update(
        test_acc=e, val_acc=e + 0.01 * k + (0.002 if framework == "torch" else 0.0),
        exact_match=e, bleu=bleu, chrf=chrf,
        exact_match_long=0.0, bleu_long=bleu_long, chrf_long=30.0 + k,
        beam_exact_match=e + SEQ_BEAM_EM + 0.001 * k, beam_bleu=bleu + SEQ_BEAM_BLEU + 0.1 * k,
        beam_chrf=chrf + 0.3, beam_exact_match_long=0.0, beam_bleu_long=bleu_long + 0.2 * k,
        beam_chrf_long=30.0 + k, beam_width=4, length_penalty=1.0,
        decode_tokens_per_s=tok, decode_tokens_per_s_min=0.95 * tok,
        decode_tokens_per_s_max=1.05 * tok, decode_batch=64, decode_latency_ms=lat,
        decode_latency_ms_p90=1.2 * lat, train_tokens_per_s=18 * rec["train_samples_per_s"],
        examples=[{"test": "test", "source": src, "reference": ref, "greedy": ref,
                   "beam": ref} for src, ref in SEQ_EXAMPLES]
        + [{"test": "test_long", "source": src, "reference": ref, "greedy": f"{ref} {mark}",
            "beam": f"{ref} mille"} for src, ref in SEQ_LONG])
    return rec


def seq2seq_records(failed: tuple | None = ("torch", "m", 1), em: dict | None = None) -> list:
    """Both frameworks on disjoint seeds at sizes xs, s, m; `failed` = (framework, size,
    seed) of one diverged run (None: every run ok)."""
    out = []
    for fw, seeds in SEEDS.items():
        for size in SIZES:
            for seed in seeds:
                bad = failed is not None and (fw, size, seed) == failed
                out.append(seq2seq_record(fw, size, seed, "diverged" if bad else "ok", em))
    return out


def _gen_panel(page, name: str):
    return next(p for p in page.panels if p.key.startswith(f"generation-{name}-"))


def figures(page) -> list:
    return [p for p in page.panels if p.fig is not None]


def assert_same(csv: list, plotted: list, what: str) -> None:
    assert len(csv) == len(plotted), what
    if all(v is None or isinstance(v, (int, float, np.number)) for v in plotted):
        # None: a point plotly skips (Optuna's colour-bar carrier); NaN in the table
        plotted = [math.nan if v is None else v for v in plotted]
        np.testing.assert_allclose(np.asarray(csv, float), np.asarray(plotted, float),
                                   rtol=1e-12, err_msg=what)
    else:
        assert [str(v) for v in csv] == [html.unescape(str(v)) for v in plotted], what
