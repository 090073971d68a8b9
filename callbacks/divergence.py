"""Stop training the moment the loss stops being a finite number, or explodes.

On by default in ``python -m fmnist fit``; a diverged run exits with status 1 and a message.
"""

import math

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN, infinite, or exploded."""


class DivergenceGuard(Callback):
    """Raise :class:`TrainingDivergedError` when the training loss is NaN, infinite or explodes.

    "Explodes" means above ``max_loss_factor`` times the loss of the first training batch the
    guard sees (floored at 1, so a resumed run that starts near a loss of 0 is not stopped by an
    ordinary bad batch). A learning rate far too large drives a loss to 1e20 and beyond while it
    stays finite; a run that is merely bad, with its loss stuck near the chance level (ln 10 = 2.3
    for ten classes), is not stopped. For cross-entropy a loss of 1000 means the network gives the
    right class a probability of e^-1000 on average: nothing trains back from there.

    The check runs before ``backward``, so the weights are never updated with the bad loss, and
    the error stops the run at once: the logs written so far and the checkpoints of earlier epochs
    stay as they were. Lightning's ``EarlyStopping(check_finite=True)`` only checks at epoch end,
    after a whole epoch of NaN updates and a checkpoint of them.

    Checking reads one number from the device per step; on a GPU that is a synchronisation, which
    ``every_n_steps`` spaces out.

    Args:
        every_n_steps: check every this many training batches.
        max_loss_factor: stop when the loss exceeds this multiple of the first batch's loss
            (at least 1); ``None`` checks only for NaN and infinity.

    Example::

        trainer = Trainer(callbacks=[DivergenceGuard()])
    """

    def __init__(self, every_n_steps: int = 1, max_loss_factor: float | None = 1000.0) -> None:
        if every_n_steps < 1:
            raise MisconfigurationException(f"DivergenceGuard: every_n_steps must be at least 1, got {every_n_steps}")
        if max_loss_factor is not None and not max_loss_factor > 1:
            raise MisconfigurationException(f"DivergenceGuard: max_loss_factor must be above 1, got {max_loss_factor}")
        self.every_n_steps = every_n_steps
        self.max_loss_factor = max_loss_factor
        self._batches = 0
        self._max_loss: float | None = None

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._batches, self._max_loss = 0, None

    @override
    def on_before_backward(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", loss: Tensor) -> None:
        self._batches += 1
        if self._batches % self.every_n_steps:
            return
        value = float(loss.detach().float().mean())  # the one read from the device per check
        if self._max_loss is None and self.max_loss_factor is not None and math.isfinite(value):
            self._max_loss = self.max_loss_factor * max(value, 1.0)
        if math.isfinite(value) and (self._max_loss is None or value <= self._max_loss):
            return
        why = "" if not math.isfinite(value) else f" (above {self._max_loss:g}: it exploded)"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        advice = f"; try a learning rate below {lr:g}, e.g. {lr / 10:g}" if lr else ""
        raise TrainingDivergedError(
            f"the training loss became {value:g}{why} at epoch {trainer.current_epoch}, step"
            f" {trainer.global_step}; training stopped before the update, and the logs and"
            f" checkpoints written so far are kept{advice}"
        )
