"""Weights and gradients in TensorBoard's Histograms and Distributions tabs.

On by default in ``python -m fmnist fit``.
"""

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torch.optim import Optimizer
from typing_extensions import override

from callbacks.contract import check_every_n_epochs, is_due
from callbacks.tensorboard import find_tensorboard


class ParameterHistograms(Callback):
    """Histograms of every parameter and of its gradient, once per ``every_n_epochs``.

    Tags are ``weights/<parameter name>`` and ``grads/<parameter name>`` (for fmnist,
    ``weights/net.conv1.weight``). Both are taken in the epoch's last training step, just before
    the optimizer applies it: the gradients are the real ones of that step, after ``backward``
    (and after unscaling under mixed precision, after the all-reduce under DDP) and before they
    are zeroed; the weights are the ones those gradients were computed for.

    Args:
        every_n_epochs: write every this many epochs.
        weights: write the weights.
        gradients: write the gradients.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[ParameterHistograms(every_n_epochs=2)], logger=False)
    """

    def __init__(self, every_n_epochs: int = 1, weights: bool = True, gradients: bool = True) -> None:
        check_every_n_epochs(self, every_n_epochs)
        if not (weights or gradients):
            raise MisconfigurationException(
                "ParameterHistograms: weights and gradients are both off; remove the callback instead"
            )
        self.every_n_epochs, self.weights, self.gradients = every_n_epochs, weights, gradients
        self._last_batch = False

    @override
    def on_train_batch_start(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: object, batch_idx: int
    ) -> None:
        self._last_batch = batch_idx + 1 >= trainer.num_training_batches

    @override
    def on_before_optimizer_step(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", optimizer: Optimizer
    ) -> None:
        if not (self._last_batch and is_due(trainer.current_epoch, self.every_n_epochs)):
            return
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        # global_step has not counted this step yet: the same step as the epoch's scalars
        step = trainer.global_step
        for name, parameter in pl_module.named_parameters():
            if self.weights:
                writer.add_histogram(f"weights/{name}", _values(parameter), step)
            if self.gradients and parameter.grad is not None:
                writer.add_histogram(f"grads/{name}", _values(parameter.grad), step)


def _values(tensor: Tensor) -> Tensor:
    return tensor.detach().float().cpu()
