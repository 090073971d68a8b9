"""``python -m fmnist sweep``: search fit options with Optuna, on one machine or many.

The search engine, its storage (SQLite, PostgreSQL, MySQL), the pruners, the heartbeat that
notices killed trials and the callback that retries them are Optuna's; this module reads the
flags, checks the space against the fit parser before any trial runs, starts the workers and
prints the result. The settings are declared in :mod:`~fmnist.sweep.settings`, the study opened
in :mod:`~fmnist.sweep.study`; a trial is an ordinary fit (:mod:`~fmnist.sweep.trial`).
"""

import argparse
import gc
import multiprocessing
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from callbacks import TrainingDivergedError
from fmnist.diskfull import disk_full_message, threads_quiet_when_disk_full
from fmnist.errors import InputError
from fmnist.quiet import quiet_lightning, quiet_sweep_trials
from fmnist.sweep import report
from fmnist.sweep.board import StudyRun
from fmnist.sweep.settings import DEFAULT_TRIALS, Settings, add_flags
from fmnist.sweep.space import check_against_fit, grid_size, load
from fmnist.sweep.storage import StorageGone, storage_gone
from fmnist.sweep.study import Sweep
from fmnist.sweep.trial import STARTED, Surplus, run_trial

HELP = """Search fit options with Optuna: each trial is an ordinary `fit` run in runs/<study>/trial_<n>/.

All other options are fit options (--config, --model.*, --data.*, --trainer.*; see
`python -m fmnist fit --help`); they apply to every trial. The space file (configs/sweep.yaml)
names the searched fit options, may fix fit options for every trial (fit:) and may set any flag
below by its name; the command line overrides it.
Running the same command again continues the study until n_trials trials have finished."""


#: Exit status of a worker process whose storage stayed away longer than storage_wait.
GONE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one fmnist: error line, like every other mistake
        raise InputError(f"sweep: {message} (see python -m fmnist sweep --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fmnist sweep", description=HELP, allow_abbrev=False)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--space", type=Path, required=True, help="YAML file: metric, direction, space of fit options, settings"
    )
    add_flags(parser)
    return parser


def sweep(args: list[str]) -> None:
    """``python -m fmnist sweep ...``: check everything, run the trials, print the result."""
    _quiet()
    flags, fit_options = _parser().parse_known_args(args)
    file_settings, params = load(flags.space)
    fit_options = [*file_settings.pop("fit"), *fit_options]  # the space file's fit: section, then the command's
    given = {k: v for k, v in vars(flags).items() if v is not None and k != "space"}
    settings = Settings(**{**file_settings, **given})
    if len(settings.metrics) > 1 and settings.pruner != "none":
        if "pruner" in file_settings or "pruner" in given:
            raise InputError(
                f"sweep: pruner {settings.pruner} cannot judge a trial by {len(settings.metrics)} metrics (Optuna's"
                " pruners follow one); a multi-objective study runs with pruner: none"
            )
        settings.pruner = "none"  # the documented default with several metrics
    save_dir = check_against_fit(fit_options, params)
    settings.study = str(settings.study or flags.space.stem)
    root = Path(save_dir) / settings.study
    settings.storage = settings.storage or f"sqlite:///{root / 'study.db'}"
    if settings.n_trials is None:  # a grid is searched once through; other samplers try DEFAULT_TRIALS values
        grid = settings.sampler == "grid" and grid_size(params)
        settings.n_trials = grid or DEFAULT_TRIALS
    config = Sweep(settings, params, fit_options, root)
    config.check()
    _quiet_trials(settings.verbose)
    created = next((path for path in [*reversed(root.parents), root] if not path.exists()), None)
    root.mkdir(parents=True, exist_ok=True)
    try:
        config.open()
    except InputError:
        if created is not None:  # no half-made study folder for a storage that could not be opened
            shutil.rmtree(created, ignore_errors=True)
        raise
    processes = []
    try:
        if settings.workers == 1:
            work(config)
        else:
            threads = max(1, _cores() // settings.workers)
            context = multiprocessing.get_context("spawn")  # fresh interpreters: no copied torch threads or locks
            processes = [
                context.Process(target=_worker, args=(config, threads, number))
                for number in range(1, settings.workers + 1)
            ]
            for process in processes:
                process.start()
            for process in processes:
                process.join()
        if GONE in [process.exitcode for process in processes]:
            raise StorageGone(settings.storage, settings.storage_wait)
        study = config.open(wait=True)
        report.summary(study, config)
        finished = len(study.get_trials(deepcopy=False, states=STARTED[1:]))
    except StorageGone as err:  # one line for the sweep and all its workers, no traceback
        raise InputError(str(err)) from None
    codes = [process.exitcode for process in processes]
    if 2 in codes:
        raise SystemExit(2)  # the worker printed its fmnist: error line
    if any(codes) and finished < settings.n_trials:
        raise InputError(
            f"sweep: a worker ended with exit status {[c for c in codes if c][0]}; run the command again to go on"
        )


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry
    # a trial's fit gets its arguments from the sweep, not from the sweep's own command line
    warnings.filterwarnings("ignore", r".*LightningCLI's args parameter is intended.*")


def _quiet_trials(verbose: bool) -> None:
    if not verbose:  # a line per finished trial instead (report.trial_line)
        quiet_sweep_trials()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is a line of its own too
        warnings.showwarning = _once(warnings.showwarning)


def _once(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that shows each message once: every trial would repeat its warnings."""
    shown: set[tuple[str, type]] = set()

    def show_once(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if (str(message), category) not in shown:
            shown.add((str(message), category))
            show(message, category, *args, **kwargs)

    return show_once


def work(config: Sweep, worker: int = 1) -> None:
    """One worker: start trials until the study has n_trials finished ones (or time is up).

    Its storage waits out an outage of the database (:class:`~fmnist.sweep.study.PatientStorage`);
    one that lasts longer than ``storage_wait`` ends it with :class:`~fmnist.sweep.study.StorageGone`.
    """
    study = config.open(wait=True)
    timeout, n_trials = config.settings.timeout, config.settings.n_trials
    deadline = time.monotonic() + timeout if timeout else None
    study_run = StudyRun(config.root, config.settings.metrics)
    # what lives as long as the worker (its modules, study, shared data) is set aside, so that the collection
    # after each trial (gc_after_trial) walks only what trials made: a full one takes 0.2 s here
    gc.collect()
    gc.freeze()
    try:
        _work(study, config, worker, study_run, n_trials, deadline)
    finally:
        gc.unfreeze()
        study_run.close()


def _work(
    study: optuna.Study, config: Sweep, worker: int, study_run: StudyRun, n_trials: int, deadline: float | None
) -> None:
    while True:
        optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed, queued again
        trials = study.get_trials(deepcopy=False, states=STARTED)
        finished = sum(t.state.is_finished() for t in trials)
        if finished >= n_trials:
            return
        if len(trials) >= n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(1)  # the last trials run elsewhere; wait in case one of them dies
            continue
        try:
            study.optimize(
                lambda trial: run_trial(trial, config),
                n_trials=1,
                catch=(TrainingDivergedError, Surplus),
                # a finished trial's trainer, model and callbacks refer to each other (Lightning's trainer and its
                # connectors, loops and module do); Python collects such cycles when enough objects were made,
                # not bytes, so without this each trial's memory (its network, optimizer, pictures) piled up
                gc_after_trial=True,
                callbacks=[lambda study, trial: report.trial_line(trial, config, worker), study_run.trial_finished],
            )
        except Exception as err:
            gone = storage_gone(err)  # the trial stays running in the storage: found stale and retried on resume
            if gone is None:
                raise
            raise gone from None
        if deadline is not None and time.monotonic() >= deadline:
            return  # checked after a trial, so that every start of a timed sweep makes progress


def _worker(config: Sweep, threads: int, number: int) -> None:
    """A ``--workers`` process: its share of the cores, and errors printed like ``main`` prints them."""
    torch.set_num_threads(threads)
    quiet_lightning()
    _quiet()
    _quiet_trials(config.settings.verbose)
    try:
        with threads_quiet_when_disk_full():
            work(config, number)
    except InputError as err:
        print(f"fmnist: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except StorageGone:
        raise SystemExit(GONE) from None  # sweep() prints one line for all the workers
    except Exception as err:  # a full disk: the line main prints (and a checkpoint it cut short deleted)
        message = disk_full_message(err, "sweep")
        if message is None or os.environ.get("FMNIST_DEBUG"):
            raise
        print(f"fmnist: error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
