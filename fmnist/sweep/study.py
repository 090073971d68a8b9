"""The study of ``python -m fmnist sweep``: its storage, sampler and pruner, opened by every worker.

Everything here is Optuna's: the storage (:mod:`~fmnist.sweep.storage`), the heartbeat that
notices killed trials and the callback that retries them, the samplers and pruners.
"""

import copy
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from torch.utils.tensorboard import SummaryWriter

from callbacks.hparams import write_session
from fmnist.diskfull import database_full
from fmnist.errors import InputError
from fmnist.sweep.settings import PRUNERS, SAMPLERS, Settings
from fmnist.sweep.space import Param, check_same_space, grid_size
from fmnist.sweep.storage import GRACE, HEARTBEAT, SweepStorage, engine, hide_password, shown_url
from fmnist.sweep.trust import SEED_OPTION

#: A killed trial's configuration is queued again at most this many times.
MAX_RETRY = 3
#: Seconds a running trial may go without naming its run folder before it counts as orphaned: far
#: more than a trial needs to begin (its repeats' seeds included) on a busy machine.
ORPHANED = 30
#: The trial state shown in HParams -> TensorBoard's session status.
STATUS = {"complete": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS", "failed": "STATUS_FAILURE"}


@dataclass
class Sweep:
    """Everything a worker process needs: plain values, so that it pickles for ``spawn``.

    ``settings.study`` and ``settings.storage`` are resolved (never ``None``).
    """

    settings: Settings
    params: list[Param]
    fit_options: list[str]
    root: Path  # runs/<study>

    def check(self) -> None:
        """The settings' values, what the sampler needs of the space, and a seed the repeats leave free."""
        self.settings.check()
        if self.settings.sampler == "grid":
            continuous = [p.key for p in self.params if p.grid() is None]
            if continuous:
                raise InputError(f"sweep: the grid sampler needs a step for the float range of {continuous[0]}")
            size = grid_size(self.params)
            if self.settings.n_trials > size:
                raise InputError(f"sweep: n_trials {self.settings.n_trials} exceeds the grid's {size} combinations")
        if self.settings.repeats > 1 and any(param.key == SEED_OPTION for param in self.params):
            raise InputError(
                f"sweep: repeats {self.settings.repeats} trains each configuration with seed_everything, +1, ...;"
                " a space that searches seed_everything runs with repeats: 1"
            )

    @property
    def waits(self) -> float:
        """Seconds to wait for a database that went away: ``storage_wait``, none for a file (SQLite)."""
        return 0 if self.settings.storage.startswith("sqlite") else self.settings.storage_wait

    def open(self) -> optuna.Study:
        """The study, created on first use; a clear error when its storage cannot be opened."""
        return self.connect()[1]

    def connect(self) -> tuple[SweepStorage, optuna.Study]:
        """The storage and the study in it (see :meth:`open`)."""
        settings = self.settings
        url, engine_kwargs = engine(settings.storage)
        try:
            storage = SweepStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT,
                grace_period=GRACE,
                heartbeat_stale_trial_callback=RetryKilled(settings.metrics, MAX_RETRY),
            )
        except Exception as err:  # SQLAlchemy raises many types for a bad URL, a missing driver or server
            full = database_full(err, settings.storage)
            if full is not None:  # a disk full, not a storage that cannot be opened
                raise full from err
            reason = hide_password(" ".join(str(err).split()), settings.storage)[:300]
            raise InputError(f"--storage {shown_url(settings.storage)}: cannot open it ({reason})") from err
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" at each start
        study = optuna.create_study(
            storage=storage,
            study_name=settings.study,
            sampler=SAMPLERS[settings.sampler](self.params, settings.sampler_seed),
            pruner=PRUNERS[settings.pruner](settings.prune_after),
            directions=settings.directions,
            load_if_exists=True,
        )
        optuna.logging.set_verbosity(verbosity)
        check_same_space(study, self.params)
        if study.metric_names != settings.metrics:  # Optuna Dashboard, its CLI and plots name the objectives
            study.set_metric_names(settings.metrics)
        made = [direction.name.lower() for direction in study.directions]
        if made != settings.directions:
            raise InputError(
                f"study {settings.study} in {shown_url(settings.storage)} was made to {', '.join(made)}, "
                f"not to {', '.join(settings.directions)}"
            )
        return storage, study


def write_row(run_dir: Path, params: dict, number: int, state: str, metrics: list[str]) -> None:
    """A trial's row in the HParams dashboard: its hyperparameters, trial number and state."""
    with SummaryWriter(str(run_dir)) as writer:
        write_session(writer, {**params, "trial": number, "trial_state": state}, metrics, STATUS[state])


class RetryKilled(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped, plus its HParams row: state failed.

    The row has the sampled values only (the killed process took the rest with it), and is
    written only where the trial's run folder is, i.e. on the machine that ran it. The retry
    does not inherit the run folder: it names its own when it begins (see :class:`Orphans`).
    """

    def __init__(self, metrics: list[str], max_retry: int) -> None:
        super().__init__(max_retry=max_retry)
        self.metrics = metrics

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        retry = copy.deepcopy(trial)
        retry.user_attrs = {key: value for key, value in trial.user_attrs.items() if key != "run_dir"}
        super().__call__(study, retry)
        run_dir = Path(trial.user_attrs.get("run_dir", ""))
        if trial.user_attrs.get("run_dir") and run_dir.is_dir():
            write_row(run_dir, dict(trial.params), trial.number, "failed", self.metrics)


def fail_and_retry(study: optuna.Study, storage: optuna.storages.BaseStorage, number: int, told: bool = False) -> None:
    """Fails trial ``number``, whose process is gone or stopped, and queues it again: as Optuna's heartbeat check does.

    Exactly once: the state changes in one transaction, and a trial that has ended (or that another
    process has just failed) is left as it is. ``told``: the trial's own worker may have told Optuna
    that it failed (it stopped, it lost the database); then it is queued again unless it was already.
    """
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    try:
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        trial = storage.get_trial(trial_id)
        history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history
        retried = any(number in history(other) for other in study.get_trials(deepcopy=False))
        if not told or trial.state != optuna.trial.TrialState.FAIL or retried:
            return
    retry = storage.get_heartbeat_stale_trial_callback()
    if retry is not None:
        retry(study, storage.get_trial(trial_id))


def worker_id(pid: int | None = None) -> str:
    """What a trial's ``worker`` attribute holds: the host and the process (this one by default)."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def fail_held(study: optuna.Study, storage: optuna.storages.BaseStorage, worker: str) -> None:
    """Fails the running trials of ``worker`` (their ``worker`` attribute), and queues them again."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == worker:
            fail_and_retry(study, storage, trial.number)


class Orphans:
    """Running trials that never began: their process died inside ``study.ask`` (the database went away then).

    Optuna's heartbeat check skips a trial that never beat, so such a trial would count as running for
    ever. A trial begins by naming its run folder (``run_dir``, a second or so after it is asked for);
    one that this process has seen running without it for longer than :data:`ORPHANED` is failed and
    queued again. Timed on this process's clock: no clock skew between machines.
    """

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}  # trial number: when this process first saw it without a run folder

    def fail(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        now = time.monotonic()
        self.seen = {t.number: self.seen.get(t.number, now) for t in running if "run_dir" not in t.user_attrs}
        for number, since in self.seen.items():
            if now - since > ORPHANED:
                fail_and_retry(study, storage, number)
