"""The sweep's storage: Optuna's RDBStorage, what an outage of its database looks like, and URLs shown without passwords.

SQLite by default, PostgreSQL or MySQL for many machines, through SQLAlchemy and Optuna. A
database that is away for a while (a restart, a failover) ends the workers that needed it; the
sweep waits for it (:func:`reconnect`, up to ``storage_wait`` seconds) and starts them again
(:mod:`~fmnist.sweep.workers`). Its password is never shown.
"""

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
#: While the database is away: the longest pause between two tries to reach it, and the seconds to
#: connect before a try counts as failed (libpq's own default is to wait for ever).
BACKOFF, CONNECT_TIMEOUT = 5, 10


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


class StorageGone(Exception):
    """The storage's database stayed away for the whole wait; the study is kept in it."""

    def __init__(self, url: str, wait: float, reason: str = "") -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"--storage {shown_url(url)}: still unreachable after {wait:g} s{because}; the study is kept in it: "
            "run the same command again to resume"
        )


def is_outage(err: BaseException) -> bool:
    """Whether ``err`` means that the database is away for now (PEP 249's OperationalError).

    A lost connection, a server that refuses, restarts, shuts down or fails over.
    """
    if isinstance(err, sqlalchemy.exc.DBAPIError) and err.connection_invalidated:
        return True
    return isinstance(err, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))


def outage(err: BaseException | None) -> BaseException | None:
    """The database's error behind ``err``, if an outage is behind it, else ``None``.

    Optuna wraps it in its StorageInternalError, and ``study.optimize`` may raise another error from
    its own clean-up (its last storage call failed too), with the outage as its context.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if is_outage(err):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class SweepStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose heartbeat outlives an outage of its database, and times its silence.

    Optuna's heartbeat thread ends at the first beat that fails (with a traceback); here such a beat
    is skipped, and the longest silence of the running trial's heartbeat is timed on this process's
    clock. A trial silent for longer than :meth:`silenced` allows may have been failed (and queued
    again) by another process meanwhile: the worker then abandons it instead of reporting it.

    Args:
        url: the SQLAlchemy URL, as for :class:`optuna.storages.RDBStorage`.
        kwargs: the other arguments of :class:`optuna.storages.RDBStorage`.
    """

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.listen()

    def record_heartbeat(self, trial_id: int) -> None:
        """One beat; one that the database is not there for is skipped, so that the beating goes on."""
        try:
            super().record_heartbeat(trial_id)
        except Exception as err:
            if outage(err) is None:
                raise
            return
        now = time.monotonic()
        self.silence, self.last_beat = max(self.silence, now - self.last_beat), now

    def listen(self) -> None:
        """Times the heartbeat of the trial that this process starts now."""
        self.last_beat, self.silence = time.monotonic(), 0.0

    def silenced(self) -> bool:
        """Whether the trial's heartbeat has been silent long enough for another process to fail it.

        Another process fails a trial whose last recorded beat is older than GRACE on the database's
        clock; a beat takes time to be recorded, hence the margin of one interval.
        """
        return max(self.silence, time.monotonic() - self.last_beat) > GRACE - HEARTBEAT


def reconnect(connect: Callable[[], Any], url: str, wait: float, since: float) -> Any:
    """``connect()``, tried again with backoff while the database is away, until ``since + wait``.

    Raises:
        StorageGone: the database was still away at ``since + wait`` (``since``: ``time.monotonic()``).
    """
    pause = 0.5
    while True:
        try:
            return connect()
        except Exception as err:
            cause = outage(err)
            if cause is None:
                raise
            if time.monotonic() - since >= wait:
                raise StorageGone(url, wait, _reason(cause, url)) from None
        time.sleep(max(0.0, min(pause * random.uniform(0.5, 1), since + wait - time.monotonic())))
        pause = min(2 * pause, BACKOFF)


def _reason(err: BaseException, url: str) -> str:
    """The database's own words for ``err``: its first line, without the password."""
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
