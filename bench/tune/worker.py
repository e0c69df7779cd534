"""The study's life on the workers' side: create it once with its tickets, then K workers
pop and run tickets until none is left."""

from __future__ import annotations

import time
from pathlib import Path

from ..registry import SpecError
from .common import import_optuna, log
from .definition import check_definition, read_definition
from .liveness import reap
from .storage import load, make_pruner, make_sampler, open_storage, storage_label
from .tickets import claim, issue_tickets, progress
from .trial import TrialRunner, run_trial


def create(defn: dict, out: str | Path) -> dict:
    """Create the study (once) with its N tickets; write its definition to `out`."""
    from ..study.records import write_json_atomic

    optuna = import_optuna()
    defn = check_definition(defn)
    study_dir = Path(out).parent
    storage = open_storage(defn, study_dir)
    study = optuna.create_study(study_name=defn["name"], storage=storage,
                                directions=defn["directions"], load_if_exists=True)
    if list(study.directions) != [getattr(optuna.study.StudyDirection, d.upper())
                                  for d in defn["directions"]]:
        raise SpecError(f"study {defn['name']} exists with other directions")
    study.set_metric_names(defn["metrics"])
    study.set_user_attr("definition", defn)
    issued = issue_tickets(study, defn["trials"])
    write_json_atomic(out, defn)
    p = progress(study.get_trials(deepcopy=False), defn["trials"])
    log(f"study {defn['name']} ({storage_label(defn, study_dir)}): {issued} ticket(s) issued, "
        f"{p['finished']}/{defn['trials']} trials finished")
    return p


def run_worker(study_dir: str | Path, worker: int, train_fn=None, done: str | None = None) -> dict:
    """Pop and run tickets until none is left; reap lost trials and reissue their tickets.

    `train_fn(spec, on_epoch) -> record` defaults to real training with the study's
    framework (tests pass a fake). Takes a measuring CPU slot for each trial.
    """
    from ..measure.slots import measuring_slots, visible_gpus
    from ..study.records import write_json_atomic

    defn = read_definition(study_dir)
    storage = open_storage(defn, study_dir)
    train_fn = train_fn or TrialRunner(defn)
    n = defn["trials"]
    gpu = defn["base"]["device"] in ("cuda", "auto") and visible_gpus() > 0
    # one sampler per worker for its whole life (a sampler made anew for each trial would
    # restart its random stream), a fresh Study object per trial (no stale trial cache)
    started = sum(t.state.name != "WAITING"
                  for t in load(defn, study_dir, storage).get_trials(deepcopy=False))
    sampler, pruner = make_sampler(defn, worker, started), make_pruner(defn)
    ran: list[dict] = []
    while True:
        with measuring_slots(defn["base"]["threads"], gpu):
            study = load(defn, study_dir, storage, sampler, pruner)
            reap(study, storage, defn)
            issue_tickets(study, n)
            frozen = claim(study, storage, n)
            if frozen is None:
                break
            t0 = time.time()
            ran.append(run_trial(study, storage, frozen, defn, worker, train_fn))
        if time.time() - t0 > 5:
            # let a job waiting for this CPU slot (another worker, a training job) take it
            # before this worker grabs it again: slot waiters poll every 0.5 s
            time.sleep(0.6)
    p = progress(study.get_trials(deepcopy=False), n)
    log(f"worker {worker}: ran {len(ran)} trial(s); study {defn['name']}: {p['finished']}/{n} "
        f"finished, {p['running']} running elsewhere")
    summary = {"study": defn["name"], "worker": worker, "ran": ran, "progress": p}
    if done:
        write_json_atomic(done, summary)
    return summary
