"""The study of ``python -m fmnist sweep``: its storage, sampler and pruner, opened by every worker.

Everything here is Optuna's: the storage (SQLite, PostgreSQL, MySQL through SQLAlchemy), the
heartbeat that notices killed trials and the callback that retries them, the samplers and pruners.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import optuna
from torch.utils.tensorboard import SummaryWriter

from callbacks.hparams import write_session
from fmnist.errors import InputError
from fmnist.sweep.settings import PRUNERS, SAMPLERS, Settings
from fmnist.sweep.space import Param, check_same_space, grid_size

#: Seconds between a running trial's heartbeats, and of silence after which it counts as killed:
#: it is then marked failed and its configuration queued again (at most MAX_RETRY times).
HEARTBEAT, GRACE, MAX_RETRY = 2, 10, 3
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
        """The settings' values, and what the sampler needs of the space."""
        self.settings.check()
        if self.settings.sampler == "grid":
            continuous = [p.key for p in self.params if p.grid() is None]
            if continuous:
                raise InputError(f"sweep: the grid sampler needs a step for the float range of {continuous[0]}")
            size = grid_size(self.params)
            if self.settings.n_trials > size:
                raise InputError(f"sweep: n_trials {self.settings.n_trials} exceeds the grid's {size} combinations")

    def open(self) -> optuna.Study:
        """The study, created on first use; a clear error when its storage cannot be opened."""
        settings = self.settings
        url = settings.storage
        kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
            url = "postgresql+psycopg2://" + url.removeprefix(
                "postgresql://"
            )  # SQLAlchemy >= 2.1 defaults to psycopg 3
        try:
            storage = optuna.storages.RDBStorage(
                url,
                engine_kwargs=kwargs,
                heartbeat_interval=HEARTBEAT,
                grace_period=GRACE,
                heartbeat_stale_trial_callback=RetryKilled(settings.metric, MAX_RETRY),
            )
        except Exception as err:  # SQLAlchemy raises many types for a bad URL, a missing driver or server
            raise InputError(
                f"--storage {settings.storage}: cannot open it ({' '.join(str(err).split())[:300]})"
            ) from err
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" at each start
        study = optuna.create_study(
            storage=storage,
            study_name=settings.study,
            sampler=SAMPLERS[settings.sampler](self.params, settings.sampler_seed),
            pruner=PRUNERS[settings.pruner](settings.prune_after),
            direction=settings.direction,
            load_if_exists=True,
        )
        optuna.logging.set_verbosity(verbosity)
        check_same_space(study, self.params)
        if study.direction.name.lower() != settings.direction:
            raise InputError(
                f"study {settings.study} in {settings.storage} was made to {study.direction.name.lower()}, "
                f"not to {settings.direction}"
            )
        return study


def write_row(run_dir: Path, params: dict, number: int, state: str, metrics: list[str]) -> None:
    """A trial's row in the HParams dashboard: its hyperparameters, trial number and state."""
    with SummaryWriter(str(run_dir)) as writer:
        write_session(writer, {**params, "trial": number, "trial_state": state}, metrics, STATUS[state])


class RetryKilled(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped, plus its HParams row: state failed.

    The row has the sampled values only (the killed process took the rest with it), and is
    written only where the trial's run folder is, i.e. on the machine that ran it.
    """

    def __init__(self, metric: str, max_retry: int) -> None:
        super().__init__(max_retry=max_retry)
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().__call__(study, trial)
        run_dir = Path(trial.user_attrs.get("run_dir", ""))
        if trial.user_attrs.get("run_dir") and run_dir.is_dir():
            write_row(run_dir, dict(trial.params), trial.number, "failed", [self.metric])
