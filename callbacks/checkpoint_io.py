"""Checkpoints that are whole or absent, never cut short: a ``CheckpointIO`` plugin.

``python -m fmnist`` passes it to every Trainer it builds; any project can with
``Trainer(plugins=[AtomicCheckpointIO()])`` or ``--trainer.plugins callbacks.AtomicCheckpointIO``.
"""

import contextlib
import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

try:
    import fcntl
except ImportError:  # Windows: no flock, so the leftovers of killed writers stay
    fcntl = None


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the file it names (``filename``) is as it was before.

    ``errno`` and ``strerror`` are those of the failed write (``ENOSPC``: the disk is full),
    which is its ``__cause__``; ``nbytes`` is the size of the checkpoint that did not fit.
    """

    def __init__(self, errno: int | None, strerror: str | None, filename: str, nbytes: int | None = None) -> None:
        super().__init__(errno, strerror, filename)
        self.nbytes = nbytes


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` that writes each checkpoint beside its target, then renames it.

    Lightning stages a checkpoint in the temporary folder (``$TMPDIR``, through fsspec's
    transaction) and moves it into place; a move to another file system copies, and a copy that a
    full disk stops leaves a checkpoint cut short where ``--ckpt_path last`` would read it. This
    plugin writes ``.<name>.<random>.tmp`` in the target's own folder (``<name>`` shortened where the
    folder's name limit asks), flushes it to the disk, renames it over the target (``os.replace``,
    atomic within one file system) and syncs the folder, so that the new name survives a power loss
    too. Whatever stops the write (a full disk, a quota, an exception), the target is left as it was
    (absent, or the previous whole checkpoint) and the temporary file is removed. A writer killed
    mid-write (``kill -9``) leaves its file: the next save of the same target removes it, unless its
    ``flock`` is held, which each writer keeps until its rename (the kernel drops a dead one's).
    Without ``fcntl`` (Windows) such leftovers stay; their hidden names match no ``*.ckpt`` pattern.

    A write that fails with an ``OSError`` raises :class:`CheckpointWriteError`, naming the target
    and the checkpoint's size, so an error message can say which file did not fit without knowing
    who was saving it. Paths fsspec does not read as local files (``s3://...``, ``memory://...``,
    chained URLs such as ``simplecache::s3://...``) are saved by ``TorchCheckpointIO`` unchanged:
    object stores write whole objects. Loading and removing are Lightning's.

    Example::

        trainer = Trainer(plugins=[AtomicCheckpointIO()])
    """

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:  # Lightning's words: the same call fails the same way
            raise TypeError(
                "`Trainer.save_checkpoint(..., storage_options=...)` with `storage_options` arg"
                f" is not supported for `{self.__class__.__name__}`. Please implement your custom `CheckpointIO`"
                " to define how you'd like to use `storage_options`."
            )
        protocols = get_filesystem(path).protocol  # as Lightning reads the path: a URL chain is no folder name
        protocols = (protocols,) if isinstance(protocols, str) else protocols
        if "file" not in protocols:
            super().save_checkpoint(checkpoint, path)
            return
        target = os.fspath(path)
        for protocol in protocols:  # file://, local://: the local file system's own prefixes
            target = target.removeprefix(f"{protocol}://")
        target = Path(target)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # first in memory, as Lightning does: only the write can fail on disk
        data = buffer.getbuffer()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_then_rename(data, target)
        except OSError as err:
            raise CheckpointWriteError(err.errno, err.strerror or str(err), str(target), data.nbytes) from err
        finally:
            data.release()
        sync_folder(target.parent)  # outside: the target is already the new checkpoint


def sync_folder(folder: str | os.PathLike[str]) -> None:
    """Flush ``folder``'s entries (a rename into it) to the disk; nothing on Windows, which cannot open folders."""
    if os.name != "nt":
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _write_then_rename(data: memoryview, target: Path) -> None:
    """Write ``data`` to a new hidden file beside ``target``, sync it and rename it over ``target``."""
    try:
        limit = os.pathconf(target.parent, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or a file system that does not say
        limit = 255
    name = target.name
    while len(os.fsencode(f".{name}.01234567.tmp")) > (limit if limit > 0 else 255):
        name = name[:-1]
    _remove_leftovers(target.parent, re.compile(re.escape(f".{name}.") + r"[0-9a-f]{8}\.tmp"))
    while True:
        temporary = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        # os.open, not tempfile.mkstemp: the checkpoint gets the mode the umask gives, not 0600
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        if fcntl is None:
            break
        try:  # held until the rename; waits only while another save looks at the file
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            if os.path.samestat(os.stat(temporary), os.fstat(descriptor)):
                break
        except FileNotFoundError:  # another save took it for a leftover just before the lock
            pass
        except OSError:  # a file system without locks (ENOLCK): no other save can take one either
            break
        os.close(descriptor)  # and a new name
    try:
        with open(descriptor, "wb") as file:  # closing it drops the lock: only after the rename
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # a full disk may only say so here (NFS, quotas); and a crash keeps the data
            os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _remove_leftovers(folder: Path, pattern: re.Pattern[str]) -> None:
    """Remove the files in ``folder`` whose names ``pattern`` matches and whose lock no live process holds."""
    if fcntl is None:
        return
    with os.scandir(folder) as entries:
        leftovers = [entry.path for entry in entries if pattern.fullmatch(entry.name)]
    for leftover in leftovers:
        # gone meanwhile (another save removed it), not ours to open, or locked by a live writer (BlockingIOError)
        with contextlib.suppress(OSError):
            descriptor = os.open(leftover, os.O_RDWR)  # read-write: NFS's flock is an fcntl lock, which needs it
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.unlink(leftover)
            finally:
                os.close(descriptor)
