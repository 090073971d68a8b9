"""``python -m fmnist sweep``: search fit options with Optuna, on one machine or many.

The search engine, its storage (SQLite, PostgreSQL, MySQL), the pruners, the heartbeat that
notices killed trials and the callback that retries them are Optuna's; this module reads the
flags, checks the space against the fit parser before any trial runs, starts the workers and
prints the result. The study (storage, sampler, pruner) is fmnist/study.py; a trial is an ordinary
fit (fmnist/trial.py).
"""

import argparse
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch

from callbacks import TrainingDivergedError
from fmnist import report
from fmnist.cli import _quiet_lightning
from fmnist.errors import InputError
from fmnist.space import SETTINGS, check_against_fit, grid_size, load
from fmnist.study import PRUNERS, SAMPLERS, Sweep
from fmnist.trial import STARTED, Surplus, run_trial

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
        choices=sorted(SAMPLERS),
        help="how values are chosen (default tpe); grid tries each combination of categorical/int/stepped values once",
    )
    add("--timeout", type=float, help="seconds after which no new trial starts (default: none)")
    add("--metric", help="logged scalar to optimize (default Accuracy/val_best)")
    add("--direction", choices=("maximize", "minimize"), help="(default maximize)")
    return parser


def sweep(args: list[str]) -> None:
    """``python -m fmnist sweep ...``: check everything, run the trials, print the result."""
    _quiet()
    flags, fit_options = _parser().parse_known_args(args)
    settings, params = load(flags.space)
    fit_options = [*settings.pop("fit"), *fit_options]  # the space file's fit: section, then the command's
    settings = {**SETTINGS, **settings, **{k: v for k, v in vars(flags).items() if v is not None and k != "space"}}
    save_dir = check_against_fit(fit_options, params)
    study = str(settings["study"] or flags.space.stem)
    root = Path(save_dir) / study
    config = Sweep(
        params,
        fit_options,
        root,
        study,
        settings["storage"] or f"sqlite:///{root / 'study.db'}",
        **{k: v for k, v in settings.items() if k not in ("storage", "study")},
    )
    if config.n_trials is None:  # a grid is searched once through; other samplers try 20 values
        config.n_trials = grid_size(params) if config.sampler == "grid" and grid_size(params) else 20
    config.check()
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
