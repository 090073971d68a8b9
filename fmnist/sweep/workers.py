"""The workers of ``python -m fmnist sweep``, and what the sweep does when one loses the database.

A worker starts trials until the study has n_trials finished ones (:func:`work`). A worker that
loses the database (a restart, a failover) ends (:class:`DatabaseLost`; a worker process with exit
status :data:`LOST`) and leaves its trial running. The sweep then waits for the database, up to
``storage_wait`` seconds, fails that trial through Optuna's storage interface and queues it again,
as Optuna does for a trial whose process was killed, and starts the worker again (:func:`supervise`).
"""

import functools
import gc
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import time
from collections.abc import Callable
from typing import Any

import optuna

from callbacks import TrainingDivergedError
from fmnist.diskfull import database_full
from fmnist.sweep import report
from fmnist.sweep.board import StudyRun
from fmnist.sweep.storage import StorageGone, SweepStorage, outage, reconnect
from fmnist.sweep.study import Orphans, Sweep, fail_killed
from fmnist.sweep.trial import STARTED, Surplus, run_trial

#: Exit status of a worker process that lost the database.
LOST = 3
#: Seconds the database must serve the sweep after an outage before a loss counts as a new outage;
#: until then ``storage_wait`` bounds the outage whole, so a database that answers the sweep but fails
#: every worker started again (a full disk on its server) ends the sweep too.
SETTLE = 60


class DatabaseLost(BaseException):
    """A worker lost the database; the trial it held is left running, for the sweep to fail and retry.

    A ``BaseException``, as ``KeyboardInterrupt`` is, so that Optuna's ``study.optimize`` records
    nothing for the trial: it would mark it failed, without a retry, in a database that may be
    away, or that may already have failed it and queued it again.
    """


def work(config: Sweep, held: Any, worker: int = 1) -> None:
    """One worker: start trials until the study has n_trials finished ones (or time is up).

    ``held.value`` is the number of the trial this worker runs, ``-1`` between trials.

    Raises:
        DatabaseLost: the database went away (never for SQLite, whose errors are raised as they are).
    """
    timeout = config.settings.timeout
    deadline = time.monotonic() + timeout if timeout else None
    try:
        storage, study = config.connect()
        study_run = StudyRun(config.root, config.settings.metrics)
        # what lives as long as the worker (its modules, study, shared data) is set aside, so that the collection
        # after each trial (gc_after_trial) walks only what trials made, not the whole heap (docs/results.md)
        gc.collect()
        gc.freeze()
        try:
            _work(study, storage, config, worker, study_run, held, deadline)
        finally:
            gc.unfreeze()
            study_run.close()
    except Exception as err:
        if config.waits and outage(err) is not None:
            raise DatabaseLost from err
        full = database_full(err, config.settings.storage)  # SQLite names no file; this names the database
        if full is None:
            raise
        raise full from err


def _work(
    study: optuna.Study,
    storage: SweepStorage,
    config: Sweep,
    worker: int,
    study_run: StudyRun,
    held: Any,
    deadline: float | None,
) -> None:
    n_trials, orphans = config.settings.n_trials, Orphans()
    while True:
        optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed, queued again
        orphans.fail(study, storage)
        trials = study.get_trials(deepcopy=False, states=STARTED)
        finished = sum(t.state.is_finished() for t in trials)
        if finished >= n_trials:
            return
        if len(trials) >= n_trials:
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(1)  # the last trials run elsewhere; wait in case one of them dies
            continue
        study.optimize(
            functools.partial(_objective, config=config, storage=storage, held=held),
            n_trials=1,
            catch=(TrainingDivergedError, Surplus),
            # a finished trial's trainer, model and callbacks refer to each other (Lightning's trainer and its
            # connectors, loops and module do); Python collects such cycles when enough objects were made,
            # not bytes, so without this each trial's memory (its network, optimizer, pictures) piled up
            gc_after_trial=True,
            callbacks=[lambda study, trial: report.trial_line(trial, config, worker), study_run.trial_finished],
        )
        held.value = -1
        if deadline is not None and time.monotonic() >= deadline:
            return  # checked after a trial, so that every start of a timed sweep makes progress


def _objective(trial: optuna.Trial, config: Sweep, storage: SweepStorage, held: Any) -> float | tuple[float, ...]:
    """:func:`~fmnist.sweep.trial.run_trial`, ended by :class:`DatabaseLost` when its result may not be told."""
    held.value = trial.number
    storage.listen()
    try:
        result = run_trial(trial, config)
    except Exception as err:
        if config.waits and (outage(err) is not None or storage.silenced()):
            raise DatabaseLost from err
        raise
    if config.waits and storage.silenced():
        raise DatabaseLost  # another worker may have failed it and queued it again meanwhile
    return result


def supervise(config: Sweep, target: Callable[..., None]) -> list[int]:
    """Runs the sweep's workers to their end, each started again after it lost the database.

    One worker runs in this process; more run as processes, ``target(config, threads, number, held, told)``,
    where ``told`` is a flag the workers share: set by the first that prints an error line, so that
    the others, failing the same way (a full disk), end with their status and print nothing.
    Returns the processes' exit statuses (none for one worker).

    Raises:
        StorageGone: the database stayed away longer than ``storage_wait``; the workers are stopped.
    """
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no copied torch threads or locks
    if config.settings.workers == 1:
        _supervise_here(config, Recovery(config), context.RawValue("i", -1))
        return []
    return _supervise_processes(config, target, Recovery(config), context)


def _supervise_here(config: Sweep, recovery: "Recovery", held: Any) -> None:
    while True:
        started = time.monotonic()
        try:
            return work(config, held)
        except DatabaseLost:
            recovery.recover(started, held.value)
            held.value = -1


def _supervise_processes(
    config: Sweep, target: Callable[..., None], recovery: "Recovery", context: multiprocessing.context.SpawnContext
) -> list[int]:
    threads = max(1, _cores() // config.settings.workers)
    helds = {number: context.RawValue("i", -1) for number in range(1, config.settings.workers + 1)}
    told = context.Value("b", False)
    running: dict[int, tuple[multiprocessing.process.BaseProcess, float]] = {}  # number: process, its start
    codes = []
    try:
        while helds:  # the workers that have not ended for good
            for number in [n for n in helds if n not in running]:
                helds[number].value = -1
                process = context.Process(target=target, args=(config, threads, number, helds[number], told))
                process.start()
                running[number] = process, time.monotonic()
            multiprocessing.connection.wait([process.sentinel for process, _ in running.values()])
            for number, (process, started) in list(running.items()):
                if process.exitcode is None:
                    continue
                del running[number]
                if process.exitcode == LOST:
                    recovery.recover(started, helds[number].value)
                else:
                    codes.append(process.exitcode)
                    del helds[number]
    except StorageGone:
        for process, _ in running.values():  # the database is gone: as if their machine were lost
            process.kill()
            process.join()
        raise
    return codes


class Recovery:
    """The sweep's side of an outage: it waits for the database and fails the trial a lost worker held.

    An outage begins when a worker loses the database and ends once the database has served the
    sweep for :data:`SETTLE` seconds; ``storage_wait`` bounds it whole.
    """

    def __init__(self, config: Sweep) -> None:
        self.config, self.since, self.recovered = config, 0.0, float("-inf")

    def recover(self, started: float, held: int) -> None:
        """After a worker started at ``started`` (``time.monotonic()``) lost the database, holding trial ``held``."""
        settings = self.config.settings
        if time.monotonic() - self.recovered > SETTLE:
            self.since = time.monotonic()
        reconnect(functools.partial(self._fail, held), settings.storage, self.config.waits, self.since)
        if started > self.since and time.monotonic() - self.since >= self.config.waits:
            raise StorageGone(settings.storage, self.config.waits)  # it answers, but the workers started again lose it
        self.recovered = time.monotonic()

    def _fail(self, held: int) -> None:
        storage, study = self.config.connect()
        try:
            if held >= 0:
                fail_killed(study, storage, held)
        finally:
            storage.engine.dispose()  # an engine per outage: its connections closed


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
