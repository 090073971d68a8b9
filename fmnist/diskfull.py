"""A full disk as one ``fmnist: error:`` line: what could not be written, what was kept, how to go on.

``python -m fmnist fit|validate|test|predict|sweep`` (:mod:`fmnist.main`) and the sweep's worker
processes print :func:`disk_full_message` instead of a traceback when a write fails with ENOSPC
or EDQUOT (checkpoints, event files, ``predictions.csv``) or SQLite finds the study's database
full. A checkpoint cut short is deleted first, so that ``--ckpt_path last|best`` never reads one.
"""

import errno
import os
import shutil
import sqlite3
import tempfile
import threading
import time
import traceback
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from lightning.pytorch import Trainer

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_FULL = getattr(sqlite3, "SQLITE_FULL", 13)
SAVE_DIR_FLAG = "--trainer.logger.init_args.save_dir"
_DATABASES = {".db", ".sqlite", ".sqlite3"}  # SQLite rolls a failed write back: the file stays whole
_STARTED = time.time()  # checkpoints older than this process are never its half-written ones


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err``, or an exception it was raised from, says the disk (or the quota) is full."""
    return any(_says_full(e) for e in _chain(err))


def disk_full_message(err: BaseException, command: str) -> str | None:
    """The ``fmnist: error:`` text for a full disk, ``None`` for other errors.

    ``command`` is the subcommand (``fit``, ``sweep``, ...): it decides how to go on. Checkpoints
    the full disk cut short are deleted first (see :func:`_remove_cut`).
    """
    if not is_disk_full(err):
        return None
    frames = [frame for e in _chain(err) for frame, _ in traceback.walk_tb(e.__traceback__)][::-1]
    path = _written_file(err, frames)
    run_dir = _run_dir(path, _trainer(frames))
    sqlite = path is not None and path.suffix in _DATABASES
    folders = [run_dir] if run_dir else []
    if sqlite and path is not None:  # a sweep's trial folders lie beside its database (by default)
        folders += [folder for folder in path.parent.glob("trial_*") if (folder / "hparams.yaml").is_file()]
    removed = _remove_cut(path, folders)
    checkpoints = _checkpoints(run_dir)
    sizes = [p.stat().st_size for folder in folders for p in _checkpoints(folder)]
    size = max(sizes, default=None) or _checkpoint_bytes(frames)
    notes = [f"a checkpoint takes {size / 2**20:.1f} MB"] if size and command in ("fit", "sweep") else []
    notes += ["the incomplete file was deleted" if p == path else f"deleted the incomplete {p}" for p in removed]
    if path is not None and path.is_file() and not sqlite and path.suffix != ".ckpt" and "tfevents" not in path.name:
        notes += ["it is incomplete"]  # e.g. predictions.csv; an event file reads back up to its last record
    staging = tempfile.gettempdir()  # where fsspec writes a checkpoint before moving it into the run folder
    staged = path is None and shutil.disk_usage(staging).free < max(size or 0, 2**20)
    text = f"no space left on device writing {path}" if path else "no space left on device"
    text += f" in the temporary folder {staging}, where checkpoints are written first" if staged else ""
    text += f" ({'; '.join(notes)})" if notes else ""
    if command == "sweep":
        database = f"the study's database {path}" if sqlite else "the study's database"
        return (
            f"{text}; {database} keeps the finished trials; free space, then run the same sweep command again to go on"
        )
    if run_dir is not None:
        names = f" and the checkpoints {', '.join(p.name for p in checkpoints)}" if checkpoints else ""
        names = names or (" and no checkpoint" if command == "fit" else "")
        text += f"; the run folder {run_dir} keeps the event files written so far{names}"
    if staged:
        last = "resume with --ckpt_path last" if command == "fit" and checkpoints else "run the command again"
        return f"{text}; free space in {staging} or set TMPDIR to a folder with room, then {last}"
    return f"{text}; {_how_to_go_on(command, run_dir, checkpoints)}"


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
    """
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.exc_value is None or os.environ.get("FMNIST_DEBUG") or not is_disk_full(args.exc_value):
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


def _written_file(err: BaseException, frames: list[FrameType]) -> Path | None:
    """The file being written: the error's own (a failed move names its target second), or else the
    file of the innermost object that was writing one. A failed ``write()`` names no file, and
    neither do TensorBoard's writer thread nor SQLAlchemy; their objects keep it as ``filename``
    (TensorBoard's GFile), ``path`` (fsspec's files, PredictionWriter) or ``url`` (Optuna's storage)."""
    for e in _chain(err):
        if isinstance(e, OSError) and (e.filename2 or e.filename):
            return Path(os.fsdecode(e.filename2 or e.filename))
    for frame in frames:
        owner = frame.f_locals.get("self")
        fields = getattr(owner, "__dict__", None) or {}  # the instance's own fields: no property runs
        for name in ("filename", "path"):  # GFile's is bytes
            if isinstance(fields.get(name), str | bytes | os.PathLike) and os.path.isfile(fields[name]):
                return Path(os.fsdecode(fields[name]))
        url = fields.get("url")
        if isinstance(url, str) and url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
    return None


def _trainer(frames: list[FrameType]) -> Trainer | None:
    # the error escaped FashionCLI before it returned, so main never held its trainer
    for frame in frames:
        for value in (frame.f_locals.get("trainer"), frame.f_locals.get("self")):
            if isinstance(value, Trainer):
                return value
    return None


def _run_dir(path: Path | None, trainer: Trainer | None) -> Path | None:
    if path is not None and path.parent.name == "checkpoints":
        return path.parent.parent
    if path is not None and (path.parent / "hparams.yaml").is_file():
        return path.parent
    # the logger's log_dir, not Trainer.log_dir: that one is a collective, and other ranks may not be failing
    log_dir = getattr(trainer.logger, "log_dir", None) if trainer is not None else None
    return Path(log_dir) if log_dir and os.path.isdir(log_dir) else None


def _remove_cut(path: Path | None, run_dirs: list[Path]) -> list[Path]:
    """Delete the checkpoints a full disk cut short: the one being written, and any in ``run_dirs``
    written since this process started (a sweep's storage error may hide which trial's it was).

    Lightning's ``_atomic_save`` writes a temporary file and moves it into place, and a move to
    another file system copies: the copy stops where the disk is full. Checkpoints are zip
    archives, whose directory comes last: a cut one has none."""
    found = [path] if path is not None and path.suffix == ".ckpt" else []
    found += [p for d in run_dirs for p in (d / "checkpoints").glob("*.ckpt") if p.stat().st_mtime >= _STARTED]
    cut = [p for p in dict.fromkeys(found) if p.is_file() and not zipfile.is_zipfile(p)]
    for checkpoint in cut:
        checkpoint.unlink()
    return cut


def _checkpoints(run_dir: Path | None) -> list[Path]:
    if run_dir is None or not (run_dir / "checkpoints").is_dir():
        return []
    return sorted((run_dir / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)


def _checkpoint_bytes(frames: list[FrameType]) -> int | None:
    """The checkpoint that was being saved: ``CheckpointIO.save_checkpoint``'s ``checkpoint`` argument."""
    for frame in frames:
        checkpoint = frame.f_locals.get("checkpoint")
        if isinstance(checkpoint, dict):
            return _tensor_bytes(checkpoint)
    return None


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0
