"""Trial tickets: exactly N trials per study, however many workers.

``tune-create`` puts N *tickets* into the study: WAITING trials tagged ``bench:ticket`` =
0..N-1. A worker only ever runs a trial it popped from a ticket (WAITING -> RUNNING is an
atomic compare-and-set in both the journal and the RDB storage, so two workers racing for
the N-th trial cannot both get it) and never creates a trial of its own; when no ticket is
left it exits. The budget is therefore N by construction, not by a count a second worker
might read a moment too early.

A lost trial (see `liveness`) has its ticket reissued with the same parameters
(``retry_of``). Two workers may reissue the same ticket at the same moment; the journal
orders trials, and the first live trial of a ticket wins: a later duplicate is voided
(FAIL, ``bench:void = duplicate``) by whoever pops it, before it trains. Void trials stay in
the trials table (column ``void``) but never count towards the N.
"""

from __future__ import annotations

from .common import log
from .storage import trial_id

# system attributes kept on trials
TICKET, VOID, RETRY_OF = "bench:ticket", "bench:void", "bench:retry_of"


def state_name(t):
    return t.state.name


def is_void(t) -> bool:
    """Lost or duplicate bookkeeping trials: FAIL with a `bench:void` mark."""
    return t.state.name == "FAIL" and bool(t.system_attrs.get(VOID))


def holders(trials, n: int) -> dict[int, object]:
    """Ticket -> the trial that holds it: its first (lowest-numbered) trial that is not void.

    The journal totally orders trials, so every worker agrees on the holder.
    """
    out: dict[int, object] = {}
    for t in sorted(trials, key=lambda t: t.number):
        k = t.system_attrs.get(TICKET)
        if k is None or k >= n or k in out or is_void(t):
            continue
        out[k] = t
    return out


def progress(trials, n: int) -> dict:
    """Counts the workflow and the tests check: finished budget trials out of n."""
    held = holders(trials, n)
    finished = [t for t in held.values() if t.state.is_finished()]
    by_state: dict[str, int] = {}
    for t in finished:
        by_state[state_name(t)] = by_state.get(state_name(t), 0) + 1
    return {
        "trials": n,
        "finished": len(finished),
        "running": sum(state_name(t) == "RUNNING" for t in held.values()),
        "waiting": sum(state_name(t) == "WAITING" for t in held.values()),
        "void": sum(is_void(t) for t in trials),
        "states": by_state,
    }


def issue_tickets(study, n: int) -> int:
    """Make sure each ticket 0..n-1 has a holder; returns how many tickets were (re)issued.

    A ticket whose trials are all void (its trial was lost) is reissued with the lost
    trial's parameters. Two processes doing this at once may both reissue a ticket; the
    later copy is voided when popped (see `claim`).
    """
    from optuna.trial import TrialState, create_trial

    trials = study.get_trials(deepcopy=False)
    held = holders(trials, n)
    issued = 0
    for k in range(n):
        if k in held:
            continue
        lost = [t for t in trials if t.system_attrs.get(TICKET) == k and is_void(t)]
        system: dict = {"fixed_params": {}, TICKET: k}
        user: dict = {}
        if lost:
            last = max(lost, key=lambda t: t.number)
            system["fixed_params"] = dict(last.params)
            system[RETRY_OF] = last.number
            user["retry_of"] = last.number
        study.add_trial(create_trial(state=TrialState.WAITING, system_attrs=system,
                                     user_attrs=user))
        issued += 1
    return issued


def claim(study, storage, n: int):
    """Pop a ticket: atomically turn one WAITING trial into RUNNING for this process.

    Returns the FrozenTrial, or None when no ticket is left. A popped trial that is not
    its ticket's holder (a duplicate reissue) is voided and the next one is tried.
    `storage` is the one `study` was loaded from (the compare-and-set is the storage's).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    for t in sorted(waiting, key=lambda t: t.number):
        k = t.system_attrs.get(TICKET)
        if k is None or k >= n:
            continue
        tid = trial_id(storage, study, t.number)
        try:
            if not storage.set_trial_state_values(tid, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        holder = holders(study.get_trials(deepcopy=False), n).get(k)
        if holder is not None and holder.number != t.number:
            storage.set_trial_system_attr(tid, VOID, "duplicate")
            storage.set_trial_state_values(tid, state=TrialState.FAIL)
            log(f"trial {t.number}: duplicate of ticket {k} (held by trial {holder.number}); "
                "voided")
            continue
        return t
    return None
