"""A full disk as one ``fmnist: error:`` line: what could not be written, what was kept, how to go on.

``python -m fmnist fit|validate|test|predict|sweep`` (:mod:`fmnist.main`) and the sweep's worker
processes print :func:`disk_full_message` instead of a traceback when a write fails with ENOSPC
or EDQUOT (a checkpoint, an event file, ``predictions.csv``) or SQLite finds the study's database
full. It only reads: no checkpoint is ever cut short, because :class:`callbacks.AtomicCheckpointIO`
writes each beside its target and renames it into place.

What the line names comes from the error and from who knows it: the checkpoint that did not fit
from :class:`~callbacks.checkpoint_io.CheckpointWriteError`, the run folder from the trainer the
error stopped (:class:`StoppedRun`, a callback), the study's database from the sweep
(:func:`database_full`).
"""

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from callbacks.checkpoint_io import CheckpointWriteError
from fmnist.errors import debugging
from fmnist.runs import CHECKPOINTS

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)
SAVE_DIR_FLAG = "--trainer.logger.init_args.save_dir"


class DatabaseFull(OSError):
    """SQLite found the study's database, ``filename``, full (see :func:`database_full`)."""


class StoppedRun(Callback):
    """Remembers the run folder of the trainer that an exception stopped: ``run_dir``, else ``None``.

    ``python -m fmnist`` gives one to the trainer it builds, and passes ``run_dir`` to
    :func:`disk_full_message` when the command fails.
    """

    def __init__(self) -> None:
        self.run_dir: Path | None = None

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        # the logger's log_dir, not Trainer.log_dir: that one is a collective, and other ranks may not be failing
        log_dir = getattr(trainer.logger, "log_dir", None)
        self.run_dir = Path(log_dir) if log_dir and os.path.isdir(log_dir) else None


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an exception it was raised from, says the disk (or the quota) is full."""
    return any(_says_full(e) for e in _chain(err))


def database_full(err: BaseException, url: str) -> DatabaseFull | None:
    """The :class:`DatabaseFull` behind ``err`` when it says that the SQLite database at ``url`` is full.

    SQLite's error, wrapped in SQLAlchemy's and Optuna's, names no file; the sweep, which knows
    its storage's URL, raises this one from it so that the line can name the database.
    """
    if not url.startswith("sqlite:///") or not any(isinstance(e, sqlite3.Error) and _says_full(e) for e in _chain(err)):
        return None
    return DatabaseFull(errno.ENOSPC, "database or disk is full", url.removeprefix("sqlite:///").split("?")[0])


def disk_full_message(err: BaseException, command: str, run_dir: Path | None = None) -> str | None:
    """The ``fmnist: error:`` text for a full disk, ``None`` for other errors.

    ``command`` is the subcommand (``fit``, ``sweep``, ...): it decides how to go on. ``run_dir``
    is the run folder of the failed command, if known (:class:`StoppedRun`); a checkpoint's names it too.
    """
    if not is_disk_full(err):
        return None
    written = next((e for e in _chain(err) if isinstance(e, OSError) and (e.filename2 or e.filename)), None)
    # a failed write() names no file, nor does TensorBoard's writer thread: the file the disk stopped is the newest
    path = Path(os.fsdecode(written.filename2 or written.filename)) if written else _newest_file(run_dir)
    if run_dir is None and path is not None and path.parent.name == CHECKPOINTS:
        run_dir = path.parent.parent
    checkpoints = _checkpoints(run_dir)
    text = f"no space left on device writing {path}" if path else "no space left on device"
    notes = _notes(err, written, path, checkpoints, command)
    text += f" ({'; '.join(notes)})" if notes else ""
    if command == "sweep":
        database = f"the study's database {path}" if isinstance(written, DatabaseFull) else "the study's database"
        return (
            f"{text}; {database} keeps the finished trials; free space, then run the same sweep command again to go on"
        )
    if run_dir is not None:
        names = f" and the checkpoints {', '.join(p.name for p in checkpoints)}" if checkpoints else ""
        names = names or (" and no checkpoint" if command == "fit" else "")
        text += f"; the run folder {run_dir} keeps the event files written so far{names}"
    return f"{text}; {_how_to_go_on(command, run_dir, checkpoints)}"


def _notes(
    err: BaseException, written: OSError | None, path: Path | None, checkpoints: list[Path], command: str
) -> list[str]:
    """The parenthesis after the file: a checkpoint's size, and what became of the file."""
    unsaved = next((e for e in _chain(err) if isinstance(e, CheckpointWriteError)), None)
    size = unsaved.nbytes if unsaved is not None else max((p.stat().st_size for p in checkpoints), default=None)
    notes = [f"a checkpoint takes {size / 2**20:.1f} MB"] if size and command in ("fit", "sweep") else []
    if isinstance(written, CheckpointWriteError):
        notes += ["the incomplete file was deleted"]  # by AtomicCheckpointIO: the target is as it was
    elif path is not None and path.is_file() and not isinstance(written, DatabaseFull) and "tfevents" not in path.name:
        notes += ["it is incomplete"]  # e.g. predictions.csv; an event file reads back up to its last record
    return notes


def _how_to_go_on(command: str, run_dir: Path | None, checkpoints: list[Path]) -> str:
    if command != "fit":
        return "free space there, then run the command again"
    if run_dir is None:
        return f"free space there (or pass another {SAVE_DIR_FLAG}), then resume with --ckpt_path last or run the command again"
    move = f"or move {run_dir.parent.parent} to a disk with room and pass its new place as {SAVE_DIR_FLAG}"
    if any(p.name == "last.ckpt" for p in checkpoints):
        return f"free space there ({move}), then resume with --ckpt_path last"
    if checkpoints:
        return f"free space there ({move}), then resume with --ckpt_path {checkpoints[-1]}"
    return f"nothing to resume from: free space there or pass another {SAVE_DIR_FLAG}, then run the command again"


@contextmanager
def threads_quiet_when_disk_full() -> Iterator[None]:
    """No traceback from a thread that a full disk ends, e.g. TensorBoard's event writer.

    Its error is not lost: the writer raises it again in the main thread at its next write,
    flush or close, where :func:`disk_full_message` reports it. ``FMNIST_DEBUG=1`` shows it.
    The previous hook is back when the block ends, so calls in one process never stack hooks.
    """
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.exc_value is None or debugging() or not is_disk_full(args.exc_value):
            previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and every exception it was raised from or while handling, nearest first."""
    seen: set[int] = set()
    todo = [err]
    while todo:
        current = todo.pop(0)
        if id(current) not in seen:
            seen.add(id(current))
            yield current
            todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def _says_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in _FULL
    if isinstance(err, sqlite3.Error):  # reaches us wrapped in SQLAlchemy's and Optuna's errors
        code = getattr(err, "sqlite_errorcode", None)  # Python 3.11+
        return code == _SQLITE_FULL if code is not None else "database or disk is full" in str(err)
    return False


def _newest_file(run_dir: Path | None) -> Path | None:
    """The file of ``run_dir`` written last, or ``None``; not a checkpoint, whose error names it."""
    if run_dir is None:
        return None
    files = [p for p in run_dir.rglob("*") if p.is_file() and p.suffix != ".ckpt" and not p.name.startswith(".")]
    return max(files, key=lambda p: p.stat().st_mtime_ns, default=None)


def _checkpoints(run_dir: Path | None) -> list[Path]:
    if run_dir is None or not (run_dir / CHECKPOINTS).is_dir():
        return []
    return sorted((run_dir / CHECKPOINTS).glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
