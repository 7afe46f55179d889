"""One worker of a sweep: ask the study for a trial, run it, tell the outcome, until the study has its trials.

Any number of workers, in one process or on many machines, run this loop against one storage; Optuna hands each
ask a distinct trial, so no trial runs twice. The loop keeps the count exact and survives deaths:

- **Exactly ``n_trials`` end** (completed, pruned, or crashed on their own). A trial asked when enough are
  already ended or running elsewhere is never run: it is told failed with ``outcome=surplus``.
- **A worker that died mid-trial** (``kill -9``, a lost node) leaves its trial RUNNING. Any worker fails it as
  ``interrupted`` and re-asks its parameters (enqueued, so the next ask runs them) as soon as it knows the trial
  is dead: its process is gone from this host, or its heartbeat is older than ``grace_s`` (another host).
- **A crashed trial** (an exception in the run) is told failed with its error and the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visiontrain.sweeps import trial_context
from visiontrain.sweeps.space import SearchSpace, as_overrides

if TYPE_CHECKING:
    import optuna

log = logging.getLogger("visiontrain")

# user attrs of a trial (the report reads them)
WORKER, HOST, PID, HEARTBEAT, OUTCOME, ERROR, RETRY_OF, OVERRIDES, RUN_DIR = (
    "worker", "host", "pid", "heartbeat", "outcome", "error", "retry_of", "overrides", "run_dir")
NOT_COUNTED = ("interrupted", "surplus")  # failed trials that do not count towards n_trials


@dataclass(frozen=True)
class Worker:
    """Who runs trials: a label for the report, and the host and pid that tell whether it is still alive."""

    label: str
    host: str
    pid: int

    @classmethod
    def here(cls, label: str | None = None) -> Worker:
        host, pid = socket.gethostname(), os.getpid()
        return cls(label=label or f"{host}:{pid}", host=host, pid=pid)


@dataclass(frozen=True)
class TrialOutcome:
    """How a run ended: ``completed`` with its value, ``pruned`` (value: its last report), or ``crashed``."""

    kind: str
    value: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Tally:
    ended: int      # completed, pruned, crashed
    running: int
    waiting: int    # enqueued (re-asked) and not yet taken


def tally(study: optuna.Study) -> Tally:
    from optuna.trial import TrialState

    ended = running = waiting = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING:
            running += 1
        elif trial.state == TrialState.WAITING:
            waiting += 1
        elif trial.state.is_finished() and trial.user_attrs.get(OUTCOME) not in NOT_COUNTED:
            ended += 1
    return Tally(ended, running, waiting)


def fail_dead_trials(study: optuna.Study, grace_s: float, mine: set[int] = frozenset()) -> list[int]:
    """Fail every RUNNING trial whose worker is gone, and re-ask its parameters; returns their numbers.

    Gone: its pid is not alive on this host, or (any host) its last heartbeat is older than ``grace_s``.
    """
    from optuna.trial import TrialState

    here, now, failed = socket.gethostname(), time.time(), []
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get(RETRY_OF) for t in trials}
    for trial in trials:
        if trial.state != TrialState.RUNNING or trial.number in mine:
            continue
        attrs = trial.user_attrs
        beat = attrs.get(HEARTBEAT) or (trial.datetime_start.timestamp() if trial.datetime_start else now)
        local_and_dead = attrs.get(HOST) == here and attrs.get(PID) is not None and not _alive(int(attrs[PID]))
        if not (local_and_dead or now - float(beat) > grace_s):
            continue
        why = "its worker process is gone" if local_and_dead else f"no heartbeat for {now - float(beat):.0f} s"
        set_attr(study, trial._trial_id, OUTCOME, "interrupted")
        set_attr(study, trial._trial_id, ERROR, f"interrupted: {why}; its parameters are re-asked")
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number}, skip_if_exists=False)
        log.warning("sweep: trial %d (worker %s) was interrupted (%s): marked failed, its parameters re-asked",
                    trial.number, attrs.get(WORKER, "?"), why)
        failed.append(trial.number)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextmanager
def heartbeat(study: optuna.Study, trial: optuna.Trial, every_s: float) -> Iterator[None]:
    """A thread that stamps the trial's ``heartbeat`` attr every ``every_s`` seconds while it runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            try:
                set_attr(study, trial._trial_id, HEARTBEAT, time.time())
            except Exception as error:  # noqa: BLE001 - a storage hiccup must not kill the trial
                log.debug("sweep: heartbeat of trial %d failed: %s", trial.number, error)

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_worker(study: optuna.Study, space: SearchSpace, run_trial: Callable[[optuna.Trial, list[str]], TrialOutcome],
               *, n_trials: int, worker: Worker, deadline: float | None = None, heartbeat_s: float = 30.0,
               grace_s: float = 120.0) -> int:
    """Ask, run and tell until ``n_trials`` have ended in the study (or the ``deadline``, a UNIX time, passed).
    ``run_trial(trial, overrides)`` runs one trial (overrides: the sampled values). Returns the trials this
    worker ran."""
    from optuna.trial import TrialState

    ran = 0
    while True:
        fail_dead_trials(study, grace_s)
        if deadline is not None and time.time() >= deadline:
            log.info("sweep: the time budget is spent; worker %s stops after %d trials", worker.label, ran)
            break
        counts = tally(study)
        if counts.waiting == 0 and counts.ended + counts.running >= n_trials:
            break
        trial = study.ask()
        _stamp(study, trial, worker)
        if _surplus(study, trial, n_trials):
            set_attr(study, trial._trial_id, OUTCOME, "surplus")
            study.tell(trial, state=TrialState.FAIL)
            continue
        values = space.sample(trial)
        overrides = as_overrides(values)
        set_attr(study, trial._trial_id, OVERRIDES, overrides)
        log.info("sweep: trial %d on %s: %s", trial.number, worker.label, " ".join(overrides))
        try:
            with heartbeat(study, trial, heartbeat_s), trial_context.running(trial):
                outcome = run_trial(trial, overrides)
        except BaseException as error:  # Ctrl-C, SIGTERM, a bug in the launcher: the trial is re-asked
            _interrupt(study, trial, f"{type(error).__name__} in worker {worker.label}")
            raise
        _tell(study, trial, outcome)
        ran += 1
    return ran


def _stamp(study: optuna.Study, trial: optuna.Trial, worker: Worker) -> None:
    for key, value in ((WORKER, worker.label), (HOST, worker.host), (PID, worker.pid), (HEARTBEAT, time.time())):
        set_attr(study, trial._trial_id, key, value)


def _surplus(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Whether ``trial`` would be one too many: more than ``n_trials`` counted trials (ended or running)
    numbered up to it. Decided by trial number, so two workers asking at once agree on who steps back."""
    from optuna.trial import TrialState

    counted = [t.number for t in study.get_trials(deepcopy=False)
               if (t.state == TrialState.RUNNING or t.state.is_finished())
               and t.user_attrs.get(OUTCOME) not in NOT_COUNTED and t.number <= trial.number]
    return len(counted) > n_trials


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    from optuna.trial import TrialState

    set_attr(study, trial._trial_id, OUTCOME, outcome.kind)
    if outcome.kind == "completed":
        study.tell(trial, outcome.value)
    elif outcome.kind == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
    else:
        set_attr(study, trial._trial_id, ERROR, outcome.error[:2000])
        study.tell(trial, state=TrialState.FAIL)
    shown = f"{outcome.value:.4f}" if outcome.value is not None else outcome.error.splitlines()[0][:200] \
        if outcome.error else ""
    log.info("sweep: trial %d %s %s", trial.number, outcome.kind, shown)


def _interrupt(study: optuna.Study, trial: optuna.Trial, why: str) -> None:
    from optuna.trial import TrialState

    try:
        set_attr(study, trial._trial_id, OUTCOME, "interrupted")
        set_attr(study, trial._trial_id, ERROR, f"interrupted: {why}; its parameters are re-asked")
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number}, skip_if_exists=False)
    except Exception as error:  # noqa: BLE001 - the storage may be what failed; resume repairs it later
        log.warning("sweep: could not mark trial %d interrupted: %s", trial.number, error)


def set_attr(study: optuna.Study, trial_id: int, key: str, value: Any) -> None:
    """A user attr of any trial of ``study``, this process's or another's (Optuna's public ``Trial`` object
    exists only for the trial one process asked, so this goes through the study's storage)."""
    study._storage.set_trial_user_attr(trial_id, key, value)
