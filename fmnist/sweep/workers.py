"""The workers of ``python -m fmnist sweep``, and how the sweep outlives a lost database, a killed worker and a stop.

A :class:`Worker` starts trials until the study has n_trials finished ones; each trial names the
worker that runs it (the user attribute ``worker``: host and process id). Whoever outlives a
worker fails the trials it held and queues them again, as Optuna's heartbeat check does for a
trial whose process died (:func:`~fmnist.sweep.study.fail_and_retry`): the sweep at once, Optuna's
heartbeat (any later worker) after ``GRACE`` seconds when nothing is left of the sweep.

:func:`supervise` runs one worker in this process, or ``--workers`` processes
(:class:`~fmnist.sweep.processes.Processes`), each reporting how it ended through a pipe:

- lost the database (:class:`DatabaseLost`): the sweep waits for it (``storage_wait``), fails the
  trial and starts the worker again;
- killed (``kill -9``, the kernel's OOM killer): its trials failed and queued again, the worker
  started again (at most :data:`~fmnist.sweep.processes.RESTARTS` times);
- an error: its line, printed once by the sweep (a full disk fails every worker the same way).

A stop (Ctrl-C, SIGTERM, ``timeout``) ends the workers (SIGTERM), and the trials they held are
failed and queued again at once; a worker whose sweep is gone (``kill -9``) notices it by its
parent's sentinel and stops the same way: nothing is left running.
"""

import contextlib
import functools
import gc
import time
from collections.abc import Callable

import optuna

from callbacks import TrainingDivergedError
from fmnist.diskfull import database_full
from fmnist.sweep import report
from fmnist.sweep.board import StudyRun
from fmnist.sweep.processes import Processes
from fmnist.sweep.storage import StorageGone, SweepStorage, outage, reconnect
from fmnist.sweep.study import Orphans, Sweep, fail_and_retry, worker_id
from fmnist.sweep.trial import STARTED, Surplus, run_trial

#: Seconds the database must serve the sweep after an outage before a loss counts as a new outage;
#: until then ``storage_wait`` bounds the outage whole, so a database that answers the sweep but fails
#: every worker started again (a full disk on its server) ends the sweep too.
SETTLE = 60


class DatabaseLost(Exception):
    """A worker lost the database in trial ``trial`` (``None``: between trials), which the sweep fails and retries."""

    def __init__(self, trial: int | None) -> None:
        super().__init__(f"the database went away during trial {trial}")
        self.trial = trial


class Worker:
    """One worker: start trials until the study has n_trials finished ones (or time is up). ``trial``: the one it runs."""

    def __init__(self, config: Sweep, number: int = 1) -> None:
        self.config, self.number, self.trial = config, number, None

    def run(self) -> None:
        """Raises :class:`DatabaseLost` when the database went away (never for SQLite, whose errors are raised)."""
        config = self.config
        try:
            storage, study = config.connect()
            study_run = StudyRun(config.root, config.settings.metrics)
            # what lives as long as the worker (its modules, study, shared data) is set aside, so that the collection
            # after each trial (gc_after_trial) walks only what trials made, not the whole heap (docs/results.md)
            gc.collect()
            gc.freeze()
            try:
                self._trials(study, storage, study_run)
            finally:
                gc.unfreeze()
                study_run.close()
        except DatabaseLost:
            raise
        except Exception as err:
            if config.waits and outage(err) is not None:
                raise DatabaseLost(self.trial) from err
            full = database_full(err, config.settings.storage)  # SQLite names no file; this names the database
            if full is None:
                raise
            raise full from err

    def abandon(self) -> None:
        """Fail the trial this worker runs and queue it again (a stop); the heartbeat does it if the database is away."""
        if self.trial is None:
            return
        with contextlib.suppress(Exception):  # away: Optuna's heartbeat check fails it later, as for a killed worker
            storage, study = self.config.connect()
            fail_and_retry(study, storage, self.trial, told=True)
            storage.engine.dispose()

    def _trials(self, study: optuna.Study, storage: SweepStorage, study_run: StudyRun) -> None:
        config = self.config
        n_trials, orphans = config.settings.n_trials, Orphans()
        deadline = time.monotonic() + config.settings.timeout if config.settings.timeout else None
        while True:
            optuna.storages.fail_stale_trials(study)  # trials of killed processes: failed, queued again
            orphans.fail(study, storage)
            trials = study.get_trials(deepcopy=False, states=STARTED)
            if sum(t.state.is_finished() for t in trials) >= n_trials:
                return
            if len(trials) >= n_trials:
                if deadline is not None and time.monotonic() >= deadline:
                    return
                time.sleep(1)  # the last trials run elsewhere; wait in case one of them dies
                continue
            study.optimize(
                functools.partial(self._objective, storage=storage),
                n_trials=1,
                catch=(TrainingDivergedError, Surplus),
                # a finished trial's trainer, model and callbacks refer to each other (Lightning's trainer and its
                # connectors, loops and module do); Python collects such cycles when enough objects were made,
                # not bytes, so without this each trial's memory (its network, optimizer, pictures) piled up
                gc_after_trial=True,
                callbacks=[
                    lambda study, trial: report.trial_line(trial, config, self.number),
                    study_run.trial_finished,
                ],
            )
            self.trial = None
            if deadline is not None and time.monotonic() >= deadline:
                return  # checked after a trial, so that every start of a timed sweep makes progress

    def _objective(self, trial: optuna.Trial, storage: SweepStorage) -> float | tuple[float, ...]:
        """:func:`~fmnist.sweep.trial.run_trial`, ended by :class:`DatabaseLost` when its result may not be told."""
        self.trial = trial.number
        waits = self.config.waits
        storage.listen()
        try:
            trial.set_user_attr("worker", worker_id())
            result = run_trial(trial, self.config)
        except Exception as err:
            if waits and (outage(err) is not None or storage.silenced()):
                raise DatabaseLost(trial.number) from err
            raise
        if waits and storage.silenced():
            raise DatabaseLost(trial.number)  # another worker may have failed it and queued it again meanwhile
        return result


def supervise(config: Sweep, target: Callable[..., None]) -> list[int]:
    """Runs the sweep's workers to their end: one here, or ``--workers`` processes running
    ``target(config, threads, number, report)`` (``report``: the pipe a worker says how it ended on).

    Returns the processes' exit statuses (none for one worker). Whatever ends it early (a stop, the
    database gone for good) ends the workers first and fails the trials they held.

    Raises:
        StorageGone: the database stayed away longer than ``storage_wait``.
    """
    if config.settings.workers == 1:
        return _supervise_here(config, Recovery(config))
    return Processes(config, target, Recovery(config).recover).run()


def _supervise_here(config: Sweep, recovery: "Recovery") -> list[int]:
    worker = Worker(config)
    try:
        while True:
            started = time.monotonic()
            try:
                worker.run()
                return []
            except DatabaseLost as lost:
                recovery.recover(started, [lost.trial])
                worker.trial = None
    except (KeyboardInterrupt, SystemExit):  # a stop (Lightning ends a trainer Ctrl-C stopped with SystemExit)
        worker.abandon()
        raise


class Recovery:
    """The sweep's side of an outage: it waits for the database and fails the trial a lost worker held.

    An outage begins when a worker loses the database and ends once the database has served the
    sweep for :data:`SETTLE` seconds; ``storage_wait`` bounds it whole.
    """

    def __init__(self, config: Sweep) -> None:
        self.config, self.since, self.recovered = config, 0.0, float("-inf")

    def recover(self, started: float, trials: list[int | None]) -> None:
        """After a worker started at ``started`` (``time.monotonic()``) lost the database, holding ``trials``."""
        settings = self.config.settings
        if time.monotonic() - self.recovered > SETTLE:
            self.since = time.monotonic()
        reconnect(functools.partial(self._fail, trials), settings.storage, self.config.waits, self.since)
        if started > self.since and time.monotonic() - self.since >= self.config.waits:
            raise StorageGone(settings.storage, self.config.waits)  # it answers, but the workers started again lose it
        self.recovered = time.monotonic()

    def _fail(self, trials: list[int | None]) -> None:
        storage, study = self.config.connect()
        try:
            for number in trials:
                if number is not None:
                    fail_and_retry(study, storage, number, told=True)
        finally:
            storage.engine.dispose()  # an engine per outage: its connections closed
