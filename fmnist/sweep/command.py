"""``python -m fmnist sweep``: search fit options with Optuna, on one machine or many.

The search engine, its storage (SQLite, PostgreSQL, MySQL), the pruners, the heartbeat that
notices killed trials and the callback that retries them are Optuna's; this module reads the
flags, checks the space against the fit parser before any trial runs, starts the workers
(:mod:`~fmnist.sweep.workers`) and prints the result. The settings are declared in
:mod:`~fmnist.sweep.settings`, the study opened in :mod:`~fmnist.sweep.study`; a trial is an
ordinary fit (:mod:`~fmnist.sweep.trial`).
"""

import argparse
import contextlib
import shutil
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

import optuna
import torch

from fmnist.diskfull import threads_quiet_when_disk_full
from fmnist.errors import InputError, debugging
from fmnist.exits import ERROR_LINE, explain
from fmnist.quiet import quiet_lightning, quiet_sweep_trials
from fmnist.stops import NAMES, STATUS, CommandStopped, StopSignals
from fmnist.sweep import report
from fmnist.sweep.processes import watch_parent
from fmnist.sweep.settings import DEFAULT_TRIALS, Settings, add_flags, default_storage
from fmnist.sweep.space import check_against_fit, grid_size, load
from fmnist.sweep.storage import StorageGone, reconnect
from fmnist.sweep.study import Sweep
from fmnist.sweep.trial import STARTED
from fmnist.sweep.workers import DatabaseLost, Worker, supervise

HELP = """Search fit options with Optuna: each trial is an ordinary `fit` run in runs/<study>/trial_<n>/.

All other options are fit options (--config, --model.*, --data.*, --trainer.*; see
`python -m fmnist fit --help`); they apply to every trial. The space file (configs/sweep.yaml)
names the searched fit options, may fix fit options for every trial (fit:) and may set any flag
below by its name; the command line overrides it.
Running the same command again continues the study until n_trials trials have finished."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one error line (fmnist.exits), like every other mistake
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
    settings.storage = settings.storage or default_storage(root)
    if settings.n_trials is None:  # a grid is searched once through; other samplers try DEFAULT_TRIALS values
        grid = settings.sampler == "grid" and grid_size(params)
        settings.n_trials = grid or DEFAULT_TRIALS
    config = Sweep(settings, params, fit_options, root)
    config.check()
    created = next((path for path in [*reversed(root.parents), root] if not path.exists()), None)
    root.mkdir(parents=True, exist_ok=True)
    try:
        config.open()
    except InputError:
        if created is not None:  # no half-made study folder for a storage that could not be opened
            shutil.rmtree(created, ignore_errors=True)
        raise
    try:
        with _quiet_trials(settings.verbose), StopSignals() as signals:
            try:
                codes = supervise(config, _worker)
            except BaseException:  # the workers are ended and their trials failed; a stop is a line of its own
                if signals.received is None:
                    raise
                raise CommandStopped(_stopped_line(config, signals.received), signals.received) from None
        study = reconnect(config.open, settings.storage, config.waits, time.monotonic())
        report.summary(study, config)
        finished = len(study.get_trials(deepcopy=False, states=STARTED[1:]))
    except StorageGone as err:  # one line for the sweep and all its workers, no traceback
        raise InputError(str(err)) from None
    if ERROR_LINE in codes:
        raise SystemExit(ERROR_LINE)  # the worker printed its error line
    if any(codes) and finished < settings.n_trials:
        raise InputError(
            f"sweep: a worker ended with exit status {[c for c in codes if c][0]}; run the command again to go on"
        )


def _quiet() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, retry
    # a trial's fit gets its arguments from the sweep, not from the sweep's own command line
    warnings.filterwarnings("ignore", r".*LightningCLI's args parameter is intended.*")


@contextmanager
def _quiet_trials(verbose: bool) -> Iterator[None]:
    """While the trials run, a line per finished trial (report.trial_line) instead of their own output;
    Lightning's and Optuna's logging and the warnings hook as they were afterwards."""
    if verbose:
        yield
        return
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is a line of its own too
    try:
        with quiet_sweep_trials():
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _stopped_line(config: Sweep, signum: signal.Signals) -> str:
    """What a stopped sweep leaves: its trials in flight failed and queued again, to run first next time."""
    finished = ""
    with contextlib.suppress(Exception):  # the database may be away: the line goes without the count
        study = config.open()
        done = len(study.get_trials(deepcopy=False, states=STARTED[1:]))
        finished = f" ({done} of {config.settings.n_trials} trials finished)"
    return (
        f"fmnist: sweep stopped by {NAMES[signum]}{finished}; the trials in flight are failed and run first when"
        " the same command runs again"
    )


def _worker(config: Sweep, threads: int, number: int, report: Connection) -> None:
    """A ``--workers`` process: its share of the cores; how it ended goes to the sweep on ``report``
    (:class:`~fmnist.sweep.processes.Processes`), which prints one error line for all its workers."""
    torch.set_num_threads(threads)
    quiet_lightning()
    _quiet()
    worker = Worker(config, number)
    with StopSignals() as signals:
        watch_parent()
        try:
            with _quiet_trials(config.settings.verbose), threads_quiet_when_disk_full():
                worker.run()
        except DatabaseLost as lost:
            report.send(("lost", lost.trial))  # the sweep waits for the database and starts this worker again
        except BaseException as err:
            if signals.received is not None:  # stopped, or its sweep is gone: its trial failed and queued again
                worker.abandon()
                raise SystemExit(STATUS[signals.received]) from None
            explained = explain(err, "sweep") if isinstance(err, Exception) and not debugging() else None
            if explained is None:
                raise  # a bug's traceback
            report.send(("error", *explained))
            raise SystemExit(explained[1]) from None
