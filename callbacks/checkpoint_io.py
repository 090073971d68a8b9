"""Checkpoints that are whole or absent, never cut short: a ``CheckpointIO`` plugin.

``python -m fmnist`` passes it to every Trainer it builds; any project can with
``Trainer(plugins=[AtomicCheckpointIO()])`` or ``--trainer.plugins callbacks.AtomicCheckpointIO``.
"""

import io
import os
import re
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from typing_extensions import override

#: ``s3://``, ``gs://``, ... : written by Lightning's own way, not as a local file.
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
    plugin writes ``.<name>.<random>.tmp`` in the target's own folder, flushes it to the disk and
    renames it over the target (``os.replace``, atomic within one file system). Whatever stops the
    write (a full disk, a quota, an exception), the target is left as it was (absent, or the
    previous whole checkpoint) and the temporary file is removed; a killed process may leave one,
    whose hidden name no ``*.ckpt`` pattern matches.

    A write that fails with an ``OSError`` raises :class:`CheckpointWriteError`, naming the target
    and the checkpoint's size, so an error message can say which file did not fit without knowing
    who was saving it. Paths with a protocol (``s3://``, ...) are saved by ``TorchCheckpointIO``
    unchanged: object stores write whole objects. Loading and removing are Lightning's.

    Example::

        trainer = Trainer(plugins=[AtomicCheckpointIO()])
    """

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike[str], storage_options: Any | None = None
    ) -> None:
        target = os.fspath(path)
        if _REMOTE.match(target) and not target.startswith("file://"):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        target = Path(target.removeprefix("file://"))
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


def _write_then_rename(data: memoryview, target: Path) -> None:
    """Write ``data`` to a new hidden file beside ``target``, sync it and rename it over ``target``."""
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open, not tempfile.mkstemp: the checkpoint gets the mode the umask gives, not 0600
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with open(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # a full disk may only say so here (NFS, quotas); and a crash keeps the data
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
