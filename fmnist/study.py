"""The study of ``python -m fmnist sweep``: its storage, sampler and pruner, opened by every worker.

Everything here is Optuna's: the storage (SQLite, PostgreSQL, MySQL through SQLAlchemy), the
heartbeat that notices killed trials and the callback that retries them, the samplers and pruners.
"""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import optuna

from fmnist.errors import InputError
from fmnist.space import Param, check_same_space, grid_size
from fmnist.trial import RetryKilled

#: Seconds between a running trial's heartbeats, and of silence after which it counts as killed:
#: it is then marked failed and its configuration queued again (at most MAX_RETRY times).
HEARTBEAT, GRACE, MAX_RETRY = 2, 10, 3
#: Each pruner, given ``prune_after``: the complete trials the median rule waits for. 2, not
#: Optuna's 5: trials that can never be pruned are the cost of a short search on a CPU (on the
#: 12-trial benchmark grid, 3 instead of 2 adds a hopeless trial run to the end: wall 0.62 -> 0.56
#: of no pruning, replayed from the same trials), and the median of 2 already tells a hopeless start.
PRUNERS = {
    "median": lambda after: optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=0),
    "hyperband": lambda after: optuna.pruners.HyperbandPruner(min_resource=1),
    "none": lambda after: optuna.pruners.NopPruner(),
}
#: Each sampler, given the searched parameters (the grid sampler needs their values).
SAMPLERS = {
    "tpe": lambda params: optuna.samplers.TPESampler(),
    "random": lambda params: optuna.samplers.RandomSampler(),
    "grid": lambda params: optuna.samplers.GridSampler({p.key: p.grid() for p in params}),
}


@dataclass
class Sweep:
    """Everything a worker process needs: plain values, so that it pickles for ``spawn``."""

    params: list[Param]
    fit_options: list[str]
    root: Path  # runs/<study>
    study: str
    storage: str
    metric: str
    direction: str
    n_trials: int
    workers: int
    pruner: str
    prune_after: int
    sampler: str
    timeout: float | None

    def open(self) -> optuna.Study:
        kwargs = {"connect_args": {"timeout": 120}} if self.storage.startswith("sqlite") else {"pool_pre_ping": True}
        retry = RetryKilled(self.metric, MAX_RETRY)
        url = self.storage
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
                heartbeat_stale_trial_callback=retry,
            )
        except Exception as err:  # SQLAlchemy raises many types for a bad URL, a missing driver or server
            raise InputError(f"--storage {self.storage}: cannot open it ({' '.join(str(err).split())[:300]})") from err
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" at each start
        study = optuna.create_study(
            storage=storage,
            study_name=self.study,
            sampler=SAMPLERS[self.sampler](self.params),
            pruner=PRUNERS[self.pruner](self.prune_after),
            direction=self.direction,
            load_if_exists=True,
        )
        optuna.logging.set_verbosity(verbosity)
        check_same_space(study, self.params)
        if study.direction.name.lower() != self.direction:
            raise InputError(
                f"study {self.study} in {self.storage} was made to {study.direction.name.lower()}, "
                f"not to {self.direction}"
            )
        return study

    def check(self) -> None:
        """The settings' values, however they were given (flags or the space file)."""
        for name in ("n_trials", "workers", "prune_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"sweep: {name} must be a positive integer, got {value!r}")
        choices = {"pruner": PRUNERS, "sampler": SAMPLERS, "direction": ("maximize", "minimize")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InputError(f"sweep: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise InputError(f"sweep: timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.sampler == "grid":
            continuous = [p.key for p in self.params if p.grid() is None]
            if continuous:
                raise InputError(f"sweep: the grid sampler needs a step for the float range of {continuous[0]}")
            size = grid_size(self.params)
            if self.n_trials > size:
                raise InputError(f"sweep: n_trials {self.n_trials} exceeds the grid's {size} combinations")
