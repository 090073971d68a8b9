"""Stop training the moment the loss stops being a finite number.

On by default in ``python -m fmnist fit``; a diverged run exits with status 1 and a message.
"""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergenceGuard(Callback):
    """Raise :class:`TrainingDivergedError` when the training loss is NaN or infinite.

    The check runs before ``backward``, so the weights are never updated with the bad loss, and
    the error stops the run at once: the logs written so far and the checkpoints of earlier epochs
    stay as they were. Lightning's ``EarlyStopping(check_finite=True)`` only checks at epoch end,
    after a whole epoch of NaN updates and a checkpoint of them.

    Checking reads one number from the device per step; on a GPU that is a synchronisation, which
    ``every_n_steps`` spaces out.

    Args:
        every_n_steps: check every this many training batches.

    Example::

        trainer = Trainer(callbacks=[DivergenceGuard()])
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if every_n_steps < 1:
            raise MisconfigurationException(f"DivergenceGuard: every_n_steps must be at least 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._batches = 0

    @override
    def on_before_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", loss: Tensor) -> None:
        self._batches += 1
        if self._batches % self.every_n_steps or torch.isfinite(loss).all():
            return
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        advice = f"; try a lower learning rate than {lr:g}, e.g. --model.lr {lr / 10:g}" if lr else ""
        raise TrainingDivergedError(
            f"the training loss became {loss.item()} at epoch {trainer.current_epoch}, step"
            f" {trainer.global_step}; training stopped before the update, and the logs and"
            f" checkpoints written so far are kept{advice}"
        )
