"""The sweep's storage: Optuna's RDBStorage that waits out an outage, and URLs shown without passwords.

SQLite by default, PostgreSQL or MySQL for many machines, through SQLAlchemy and Optuna. What
fmnist adds is patience: a database that is away for a while (a restart, a failover) is waited
for, up to ``storage_wait`` seconds, and its password is never shown.
"""

import functools
import importlib.util
import random
import re
import time
from collections.abc import Callable
from typing import Any

import optuna
import sqlalchemy
import sqlalchemy.exc

#: Seconds between a running trial's heartbeats, and of silence after which it counts as killed:
#: it is then marked failed and its configuration queued again (:class:`~fmnist.sweep.study.RetryKilled`).
HEARTBEAT, GRACE = 2, 10
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
        self.unbeaten: dict[int, float] = {}  # running trials without a heartbeat: when this process first saw them
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
        stale = self.patiently(optuna.storages.RDBStorage._get_stale_trial_ids, study_id)
        return stale + self.patiently(PatientStorage._never_beaten, study_id)

    def _never_beaten(self, study_id: int) -> list[int]:
        """Running trials that this process has seen without a single heartbeat for longer than GRACE.

        A trial beats within milliseconds of its start; one that never did lost its process in between
        (the database went away, or a retried call had already created it). Optuna's own check skips
        such trials, so they would count as running for ever and a resumed sweep would wait on them.
        Timed on this process's clock, as the database's clock times the heartbeats: no clock skew.
        """
        query = sqlalchemy.text(  # Optuna's schema (trials, trial_heartbeats), which its migrations keep
            "SELECT t.trial_id FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id"
            " WHERE t.study_id = :study AND t.state = 'RUNNING' AND h.trial_id IS NULL"
        )
        with self.engine.connect() as connection:
            ids = connection.execute(query, {"study": study_id}).scalars().all()
        now = time.monotonic()
        self.unbeaten = {trial: self.unbeaten.get(trial, now) for trial in ids}
        return [trial for trial, seen in self.unbeaten.items() if now - seen > GRACE]


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


def engine(url: str) -> tuple[str, dict[str, Any]]:
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
