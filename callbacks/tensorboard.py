"""The one place where callbacks find the run's TensorBoard writer."""

from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.writer import FileWriter

from callbacks.contract import warn_once


def find_tensorboard(trainer: "pl.Trainer", callback: Callback) -> SummaryWriter | None:
    """The ``SummaryWriter`` of the first ``TensorBoardLogger`` in ``trainer.loggers``, on global rank zero.

    Returns ``None`` on every other rank (visual work happens once), and when there is no
    TensorBoard logger, after warning once per callback; the callback then skips its work and
    training goes on.
    """
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    warn_once(callback, "writes to TensorBoard but the trainer has no TensorBoardLogger; it will write nothing.")
    return None


def epoch_step(trainer: "pl.Trainer") -> int:
    """The step Lightning logs epoch-end scalars at, so pictures line up with the scalars.

    That is the step of the epoch's last training batch: one less than ``trainer.global_step``
    once its optimizer step is done. A run resumed from that epoch's checkpoint (whose global
    step is ``trainer.global_step``) then continues strictly after it.
    """
    return max(trainer.global_step - 1, 0)


@contextmanager
def event_file(writer: SummaryWriter) -> Iterator[FileWriter]:
    """The run's event file, for records ``SummaryWriter`` has no ``add_*`` method for (an HParams session, a
    graph traced before).

    That is the writer's public ``file_writer``; a closed writer has none, and then a new event file in the
    same folder takes the records, closed on leaving (TensorBoard reads every event file of a folder as one run).
    """
    if writer.file_writer is not None:
        yield writer.file_writer
        return
    file_writer = FileWriter(writer.get_logdir())
    try:
        yield file_writer
    finally:
        file_writer.close()
