"""The study of ``python -m fmnist sweep``: its storage, sampler and pruner, opened by every worker.

Everything here is Optuna's: the storage (SQLite, PostgreSQL, MySQL through SQLAlchemy), the
heartbeat that notices killed trials and the callback that retries them, the samplers and pruners.
What fmnist adds is patience: a database that is away for a while (a restart, a failover) is
waited for, and its password is never shown.
"""

import functools
import importlib.util
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
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
#: While the database is away: the longest pause between two tries of a storage call, and the seconds
#: to connect before a try counts as failed (libpq's own default is to wait for ever).
BACKOFF, CONNECT_TIMEOUT = 5, 10
#: Seconds after this process last saw the database fail in which no trial counts as killed: the
#: running trials' heartbeats could not be recorded either, and each needs a beat to catch up.
RECOVERY = BACKOFF + CONNECT_TIMEOUT + HEARTBEAT + GRACE


def shown_url(url: str) -> str:
    """The storage URL as fmnist prints it: its password, if any, as ``***``.

    The URL as written, not as SQLAlchemy parses it: everything up to the last ``@`` goes, so a
    password with an unescaped ``@`` or ``/`` is hidden whole, and so is one in the query string
    (libpq's ``?password=``).

    >>> shown_url("postgresql://fmnist:secret@db-host:5432/fmnist")
    'postgresql://fmnist:***@db-host:5432/fmnist'
    >>> shown_url("postgresql://fmnist:se@c/ret@db-host/fmnist?sslmode=require&password=secret")
    'postgresql://fmnist:***@db-host/fmnist?sslmode=require&password=***'
    >>> shown_url("sqlite:///runs/sweep/study.db")
    'sqlite:///runs/sweep/study.db'
    """
    shown = re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", shown)


def hide_password(text: str, url: str) -> str:
    """``text`` (a driver's error message) with the storage URL's password, if any, as ``***``."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
        secrets = {parsed.password, parsed.query.get("password")}
    except Exception:  # no URL SQLAlchemy can read: then it was never sent, but hide what looks like one
        secrets = set()
    secrets |= set(re.findall(r"://[^:/@]*:(.*)@", url)) | set(re.findall(r"[?&]password=([^&]*)", url))
    for secret in sorted((s for s in secrets if isinstance(s, str) and s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class StorageGone(optuna.exceptions.StorageInternalError):
    """The storage's database stayed away for the whole wait; the study in it is kept.

    An Optuna storage error, not an :class:`InputError`, so that a trial it stops keeps its run
    folder (as a killed trial does); the sweep turns it into its one ``fmnist: error:`` line.
    """

    def __init__(self, url: str, wait: float, reason: str = "") -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"--storage {shown_url(url)}: still unreachable after {wait:g} s{because}; the study is kept in it: "
            "run the same command again to resume"
        )


def is_outage(err: BaseException) -> bool:
    """Whether ``err`` means that the database is away for now (PEP 249's OperationalError).

    A lost connection, a server that refuses, restarts, shuts down or fails over; Optuna raises it
    wrapped in its StorageInternalError, or bare where it calls SQLAlchemy outside its sessions.
    """
    if isinstance(err, StorageGone):
        return False
    if isinstance(err, optuna.exceptions.StorageInternalError):
        err = err.__cause__
    if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def storage_gone(err: BaseException | None) -> StorageGone | None:
    """The :class:`StorageGone` behind ``err``, if any.

    Optuna's ``study.optimize`` does not raise it as it is when the trial's last storage call (its
    state) fails: it then raises an ``UnboundLocalError`` from its own ``finally`` clause.
    """
    while err is not None and not isinstance(err, StorageGone):
        err = err.__cause__ or err.__context__
    return err


class PatientStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage that waits out an outage of its database.

    Each storage call that fails for want of the database (see :func:`is_outage`) is tried again,
    with backoff, until ``wait`` seconds have passed since its first failure; then it raises
    :class:`StorageGone`, and so does every later call at once. A running trial's heartbeat skips
    the beats it cannot record, and no trial counts as killed until the heartbeats of the others
    have had time to catch up (:data:`RECOVERY`).

    Args:
        url: the SQLAlchemy URL, as for :class:`optuna.storages.RDBStorage`.
        wait: seconds to wait for the database, opening the storage included; ``0``: no waiting.
        given: the URL as the user gave it, for messages (its password hidden); default ``url``.
        kwargs: the other arguments of :class:`optuna.storages.RDBStorage`.
    """

    def __init__(self, url: str, wait: float, given: str | None = None, **kwargs: Any) -> None:
        self.given = given or url  # the URL as the user wrote it, for messages
        self.wait, self.last_fault = wait, float("-inf")
        self.gone: str | None = None  # once the wait is over: the database's last words
        self.patiently(optuna.storages.RDBStorage.__init__, url, **kwargs)

    def patiently(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(self, *args, **kwargs)``, tried again while the database is away."""
        first_fault, pause = None, 0.5
        while True:
            if self.gone is not None:
                raise StorageGone(self.given, self.wait, self.gone)
            try:
                return call(self, *args, **kwargs)
            except Exception as err:
                if not is_outage(err) or not self.wait:
                    raise
                self.last_fault = time.monotonic()
                first_fault = self.last_fault if first_fault is None else first_fault
                if self.last_fault - first_fault >= self.wait:
                    self.gone = _reason(err, self.given)
                    raise StorageGone(self.given, self.wait, self.gone) from err
            time.sleep(max(0.0, min(pause * random.uniform(0.5, 1), first_fault + self.wait - time.monotonic())))
            pause = min(2 * pause, BACKOFF)

    def record_heartbeat(self, trial_id: int) -> None:
        """One beat; a beat the database is not there for is skipped (Optuna's thread would end)."""
        try:
            super().record_heartbeat(trial_id)
        except Exception as err:
            if not is_outage(err):
                raise
            self.last_fault = time.monotonic()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # the heartbeat's own hook, which optuna.storages.fail_stale_trials and study.optimize call: its
        # only public knob, grace_period, is fixed; right after an outage every running trial looks stale
        if time.monotonic() - self.last_fault < RECOVERY:
            return []
        return self.patiently(optuna.storages.RDBStorage._get_stale_trial_ids, study_id)


def _patient(name: str) -> Callable[..., Any]:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def patient(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self.patiently(method, *args, **kwargs)

    return patient


#: Every call of Optuna's storage interface, and the RDBStorage methods its cache (the storage a study
#: actually uses, optuna.storages._CachedStorage) calls instead of some of them.
_CALLS = [name for name in vars(optuna.storages.BaseStorage) if not name.startswith("_") and name != "remove_session"]
for _name in [*_CALLS, "_get_trials", "_set_trial_param", "_create_new_trial", "_get_best_trial_id"]:
    setattr(PatientStorage, _name, _patient(_name))


def _reason(err: BaseException, url: str) -> str:
    """The database's own words for ``err``: its first line, without the password."""
    if isinstance(err, optuna.exceptions.StorageInternalError) and err.__cause__ is not None:
        err = err.__cause__
    lines = str(getattr(err, "orig", None) or err).strip().splitlines() or [type(err).__name__]
    return hide_password(lines[0], url)[:200]


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

    def open(self, wait: bool = False) -> optuna.Study:
        """The study, created on first use; a clear error when its storage cannot be opened.

        With ``wait``, a database that is away is waited for (``storage_wait``) before the study
        opens, as it is by every later call (:class:`PatientStorage`); without, only by later calls.
        """
        settings = self.settings
        url, engine_kwargs = _engine(settings.storage)
        patience = 0 if url.startswith("sqlite") else settings.storage_wait  # a file has no server to wait for
        try:
            storage = PatientStorage(
                url,
                patience if wait else 0,
                given=settings.storage,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT,
                grace_period=GRACE,
                heartbeat_stale_trial_callback=RetryKilled(settings.metric, MAX_RETRY),
            )
            storage.wait = patience  # only opening it at first fails at once: a wrong host, port or password
        except StorageGone:  # waited for in vain: the caller ends the sweep with it
            raise
        except Exception as err:  # SQLAlchemy raises many types for a bad URL, a missing driver or server
            reason = hide_password(" ".join(str(err).split()), settings.storage)[:300]
            raise InputError(f"--storage {shown_url(settings.storage)}: cannot open it ({reason})") from err
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
                f"study {settings.study} in {shown_url(settings.storage)} was made to {study.direction.name.lower()}, "
                f"not to {settings.direction}"
            )
        return study


def _engine(url: str) -> tuple[str, dict[str, Any]]:
    """The SQLAlchemy URL and engine options for a storage URL as the user gave it."""
    if url.startswith("sqlite"):
        return url, {"connect_args": {"timeout": 120}}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}  # a connection the server dropped (a restart) is replaced
    if url.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        # SQLAlchemy >= 2.1 reads postgresql:// as psycopg 3 (the postgres extra), as Optuna's own tools do;
        # an older install that has only psycopg2 still works with the same URL
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url, kwargs


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
