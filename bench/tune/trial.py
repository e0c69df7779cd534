"""One trial: train the popped ticket's parameters and tell Optuna how it ended.

Outcomes. A finished run gives COMPLETE with the validation accuracy (and throughput and
memory in multi-objective mode); a pruned run, or one that diverged (NaN loss) or ran out of
memory, gives PRUNED (the sampler then ranks it below the completed trials, so TPE learns
to avoid a learning rate that diverges); an unexpected exception gives FAIL. All three count
towards N and the study goes on.

``TrialRunner`` loads the study's backend and dataset once per worker process, on its first
trial.
"""

from __future__ import annotations

import math
import time

from ..registry import SpecError
from ..spec import RunSpec
from .common import import_optuna, log
from .definition import spec_for
from .liveness import HEARTBEAT, OWNER, Heartbeat, owner_info
from .pareto import pareto_rung_prune
from .space import suggest
from .storage import trial_id
from .tickets import TICKET


def _rate(point: dict, batch: int) -> float:
    """Samples per second so far in a run (training plus evaluation): same rule for all."""
    return point["step"] * batch / max(point["elapsed_s"], 1e-9)


class TrialRunner:
    """Trains a trial's spec with this worker's backend and dataset (loaded once)."""

    def __init__(self, defn: dict):
        self.defn = defn
        self.backend = None
        self.data = None

    def __call__(self, spec: RunSpec, on_epoch) -> dict:
        from .. import train
        from ..backend_api import load_backend
        from ..data import load as load_data

        if self.backend is None:
            self.backend = load_backend(spec.framework)
            self.data = load_data(spec.dataset, self.defn["data_dir"], self.defn["allow_pickle"])
        return train.run(spec, self.data, self.backend, on_epoch=on_epoch,
                         mem_limit_mb=self.defn.get("mem_limit_mb", 0))


def _memory(record: dict) -> float | None:
    dev = record.get("peak_device_mem_mb")
    return dev if dev is not None else record.get("peak_rss_mb")


def run_trial(study, storage, frozen, defn: dict, worker: int, train_fn) -> dict:
    """Train one popped trial and tell Optuna its outcome; returns a short summary.

    `storage` is the one `study` was loaded from: the owner and heartbeats go there.
    """
    import traceback

    optuna = import_optuna()
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from ..measure import peak_rss_mb

    tid = trial_id(storage, study, frozen.number)
    storage.set_trial_system_attr(tid, OWNER, owner_info(worker))
    storage.set_trial_system_attr(tid, HEARTBEAT, time.time())
    trial = optuna.Trial(study, tid)
    multi = len(defn["directions"]) > 1
    t0 = time.time()
    curve: list[list[float]] = []
    params: dict = {}
    try:
        params = suggest(trial, defn["space"])
        spec = spec_for(defn, params)
        batch = spec.batch_size
        completed = (study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if multi else [])

        def on_epoch(epoch: int, point: dict) -> bool:
            data = getattr(train_fn, "data", None)
            n_train = len(data.y_train) if data is not None else 0
            b = batch if isinstance(batch, int) else n_train
            rate = _rate(point, min(b, n_train) if n_train else b)
            curve.append([epoch, point["val_acc"], rate])
            if epoch >= spec.epochs or (spec.max_steps and point["step"] >= spec.max_steps):
                if not multi:
                    trial.report(point["val_acc"], epoch)
                return False  # the run is through: stopping it now would save nothing
            if not multi:
                trial.report(point["val_acc"], epoch)
                return trial.should_prune()
            mem_now = peak_rss_mb() if spec.device == "cpu" else None
            by = pareto_rung_prune(point, rate, mem_now, completed, defn)
            if by is not None:
                trial.set_user_attr("pruned_by", by)
                return True
            return False

        with Heartbeat(storage, tid, defn["heartbeat_s"]):
            record = train_fn(spec, on_epoch)
    except SpecError as e:
        record = {"status": "error", "message": str(e)}
    except Exception as e:  # noqa: BLE001 - one failed trial must not stop the study
        traceback.print_exc()
        record = {"status": "error",
                  "message": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    status = record.get("status", "error")
    attrs = {
        "status": status,
        "message": (record.get("message") or "")[:300],
        "epochs_trained": record.get("epochs_run", len(record.get("curve") or curve)),
        "steps": record.get("steps_run"),
        "duration_s": round(time.time() - t0, 3),
        "train_samples_per_s": record.get("train_samples_per_s"),
        "peak_mem_mb": _memory(record),
        "n_params": record.get("params"),
        "flops_spent": record.get("flops_spent"),  # a study's cost against the lr grid's
        "val_acc": record.get("val_acc"),
        "best_val_acc": record.get("best_val_acc"),
        "worker": worker,
        "curve": curve,
    }
    values = None
    state = TrialState.FAIL
    if status == "ok":
        got = [record.get(m) if m != "peak_mem_mb" else _memory(record) for m in defn["metrics"]]
        if all(v is not None and math.isfinite(v) for v in got):
            values, state = got, TrialState.COMPLETE
        else:
            attrs["message"] = f"missing objective values {got}"
    elif status in ("pruned", "diverged", "oom"):
        state = TrialState.PRUNED
    try:
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, values, state=state)
    except UpdateFinishedTrialError:
        log(f"trial {frozen.number}: was declared lost while it ran (heartbeat older than "
            f"grace_s); its result is discarded and the retry counts instead")
        return {"number": frozen.number, "state": "LOST", "params": params}
    shown = f"{values}" if values else status
    log(f"trial {frozen.number} (ticket {frozen.system_attrs.get(TICKET)}): {state.name} "
        f"{shown} after {attrs['epochs_trained']} epoch(s), {params}")
    return {"number": frozen.number, "state": state.name, "params": params,
            "epochs": attrs["epochs_trained"]}
