"""``python -m fmnist sweep``: search fit options with Optuna, on one machine or many.

The search engine, its storage (SQLite, PostgreSQL, MySQL), the pruners, the heartbeat that
notices killed trials and the callback that retries them are Optuna's; this module reads the
flags, checks the space against the fit parser before any trial runs, starts the workers and
prints the result. A trial is an ordinary fit (fmnist/trial.py).
"""

import argparse
import importlib.util
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch

from callbacks import TrainingDivergedError
from fmnist import report
from fmnist.cli import _quiet_lightning
from fmnist.errors import InputError
from fmnist.space import Param, check_against_fit, check_same_space, grid_size, load
from fmnist.trial import STARTED, RetryKilled, Surplus, run_trial

#: Seconds between a running trial's heartbeats, and of silence after which it counts as killed:
#: it is then marked failed and its configuration queued again (at most MAX_RETRY times).
HEARTBEAT, GRACE, MAX_RETRY = 2, 10, 3
DEFAULTS = {"metric": "Accuracy/val_best", "direction": "maximize", "n_trials": None, "workers": 1}
DEFAULTS.update(pruner="median", prune_after=2, sampler="tpe", timeout=None, study=None, storage=None)
#: Each pruner, given ``prune_after``: the complete trials the median rule waits for. 2, not
#: Optuna's 5: trials that can never be pruned are the cost of a short search on a CPU (on the
#: 12-trial benchmark grid, 3 instead of 2 adds a hopeless trial run to the end: wall 0.62 -> 0.56
#: of no pruning, replayed from the same trials), and the median of 2 already tells a hopeless start.
PRUNERS = {
    "median": lambda after: optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=0),
    "hyperband": lambda after: optuna.pruners.HyperbandPruner(min_resource=1),
    "none": lambda after: optuna.pruners.NopPruner(),
}
HELP = """Search fit options with Optuna: each trial is an ordinary `fit` run in runs/<study>/trial_<n>/.

All other options are fit options (--config, --model.*, --data.*, --trainer.*; see
`python -m fmnist fit --help`); they apply to every trial. The space file (configs/sweep.yaml)
names the searched fit options, may fix fit options for every trial (fit:) and may set any flag
below by its name; the command line overrides it.
Running the same command again continues the study until n_trials trials have finished."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one fmnist: error line, like every other mistake
        raise InputError(f"sweep: {message} (see python -m fmnist sweep --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fmnist sweep", description=HELP, allow_abbrev=False)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--space", type=Path, required=True, help="YAML file: metric, direction, space of fit options, settings")
    add("--n_trials", type=int, help="finished trials (complete + pruned) the study ends with (default 20)")
    add("--workers", type=int, help="trials run at once on this machine, as processes sharing the cores (default 1)")
    add(
        "--storage",
        help="Optuna storage URL (default: sqlite:///<save_dir>/<study>/study.db); postgresql://... "
        "or mysql://... to share one study between machines",
    )
    add("--study", help="study name and folder under the logger's save_dir (default: the space file's name)")
    add("--pruner", choices=sorted(PRUNERS), help="stop hopeless trials after a validation epoch (default median)")
    add("--prune_after", type=int, help="complete trials before the median pruner stops any (default 2)")
    add(
        "--sampler",
        choices=("tpe", "random", "grid"),
        help="how values are chosen (default tpe); grid tries each combination of categorical/int/stepped values once",
    )
    add("--timeout", type=float, help="seconds after which no new trial starts (default: none)")
    add("--metric", help="logged scalar to optimize (default Accuracy/val_best)")
    add("--direction", choices=("maximize", "minimize"), help="(default maximize)")
    return parser


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
        grid = {p.key: p.grid() for p in self.params}
        samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
        sampler = optuna.samplers.GridSampler(grid) if self.sampler == "grid" else samplers[self.sampler]()
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "Using an existing study" at each start
        study = optuna.create_study(
            storage=storage,
            study_name=self.study,
            sampler=sampler,
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


def sweep(args: list[str]) -> None:
    """``python -m fmnist sweep ...``: check everything, run the trials, print the result."""
    _quiet()
    flags, fit_options = _parser().parse_known_args(args)
    settings, params = load(flags.space)
    fit_options = [*settings.pop("fit"), *fit_options]  # the space file's fit: section, then the command's
    settings = {**DEFAULTS, **settings, **{k: v for k, v in vars(flags).items() if v is not None and k != "space"}}
    save_dir = check_against_fit(fit_options, params)
    study = str(settings["study"] or flags.space.stem)
    root = Path(save_dir) / study
    config = Sweep(
        params,
        fit_options,
        root,
        study,
        settings["storage"] or f"sqlite:///{root / 'study.db'}",
        **{
            k: settings[k]
            for k in ("metric", "direction", "n_trials", "workers", "pruner", "prune_after", "sampler", "timeout")
        },
    )
    if config.n_trials is None:  # a grid is searched once through; other samplers try 20 values
        config.n_trials = grid_size(params) if config.sampler == "grid" and grid_size(params) else 20
    _check_settings(config)
    created = next((path for path in [*reversed(root.parents), root] if not path.exists()), None)
    root.mkdir(parents=True, exist_ok=True)
    try:
        config.open()
    except InputError:
        if created is not None:  # no half-made study folder for a storage that could not be opened
            shutil.rmtree(created, ignore_errors=True)
        raise
    if config.workers == 1:
        work(config)
    else:
        threads = max(1, _cores() // config.workers)
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no copied torch threads or locks
        processes = [context.Process(target=_worker, args=(config, threads)) for _ in range(config.workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    study = config.open()
    report.summary(study, config)
    codes = [process.exitcode for process in processes] if config.workers > 1 else []
    if 2 in codes:
        raise SystemExit(2)  # the worker printed its fmnist: error line
    finished = len(study.get_trials(deepcopy=False, states=STARTED[1:]))
    if any(codes) and finished < config.n_trials:
        raise InputError(
            f"sweep: a worker ended with exit status {[c for c in codes if c][0]}; run the command again to go on"
        )


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry
    # a trial's fit gets its arguments from the sweep, not from the sweep's own command line
    warnings.filterwarnings("ignore", r".*LightningCLI's args parameter is intended.*")


def work(config: Sweep) -> None:
    """One worker: start trials until the study has n_trials finished ones (or time is up)."""
    study = config.open()
    deadline = time.monotonic() + config.timeout if config.timeout else None
    while True:
        optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed, queued again
        trials = study.get_trials(deepcopy=False, states=STARTED)
        finished = sum(t.state.is_finished() for t in trials)
        if finished >= config.n_trials:
            return
        if len(trials) >= config.n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(1)  # the last trials run elsewhere; wait in case one of them dies
            continue
        study.optimize(
            lambda trial: run_trial(
                trial, config.params, config.fit_options, config.metric, config.root, config.n_trials
            ),
            n_trials=1,
            catch=(TrainingDivergedError, Surplus),
        )
        if deadline is not None and time.monotonic() >= deadline:
            return  # checked after a trial, so that every start of a timed sweep makes progress


def _worker(config: Sweep, threads: int) -> None:
    """A ``--workers`` process: its share of the cores, and errors printed like ``main`` prints them."""
    torch.set_num_threads(threads)
    _quiet_lightning()
    _quiet()
    try:
        work(config)
    except InputError as err:
        print(f"fmnist: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_settings(config: Sweep) -> None:
    for name in ("n_trials", "workers", "prune_after"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InputError(f"sweep: {name} must be a positive integer, got {value!r}")
    choices = {"pruner": PRUNERS, "sampler": ("tpe", "random", "grid"), "direction": ("maximize", "minimize")}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise InputError(f"sweep: {name} must be one of {', '.join(allowed)}, got {getattr(config, name)!r}")
    if config.timeout is not None and (not isinstance(config.timeout, (int, float)) or config.timeout <= 0):
        raise InputError(f"sweep: timeout must be a positive number of seconds, got {config.timeout!r}")
    if config.sampler == "grid":
        continuous = [p.key for p in config.params if p.grid() is None]
        if continuous:
            raise InputError(f"sweep: the grid sampler needs a step for the float range of {continuous[0]}")
        size = grid_size(config.params)
        if config.n_trials > size:
            raise InputError(f"sweep: n_trials {config.n_trials} exceeds the grid's {size} combinations")
