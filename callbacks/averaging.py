"""Validate, checkpoint and predict with a moving average of the weights.

On by default in ``python -m fmnist fit`` (``configs/default.yaml``): a higher test accuracy after 5 epochs
(fmnist's ``docs/results.md``).
"""

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override


class WeightEMA(WeightAveraging):
    """Lightning's ``EMAWeightAveraging`` with a decay that warms up.

    After every update the average moves towards the weights with decay ``min(decay, (1 + n) / (10 + n))`` after
    ``n`` updates, the schedule of timm's ``ModelEmaV2`` (:class:`WarmupEMA`). ``EMAWeightAveraging`` uses ``decay``
    from the first update, so after a few hundred steps the average still mostly holds the first step's weights: a
    short run validates far below its real accuracy. Validation, checkpoints (``state_dict``), ``test`` and
    ``predict`` use the average; training continues on the raw weights. When to update is
    ``EMAWeightAveraging``'s choice, with its options.

    On Fashion-MNIST after 5 epochs this average tests better than a fixed decay, which tests better than no
    averaging (fmnist's ``docs/results.md``, "The default configuration").

    The callback pickles, so it also goes where the trainer is sent to new processes (``ddp_spawn``).
    List it after callbacks that draw validation pictures, so they see the averaged weights
    the validation metrics use (it swaps them in and out at the validation epoch's start and end).

    Args:
        decay: the decay the warm-up reaches; an average over roughly ``1 / (1 - decay)`` updates.
        device: where the average lives (``"cpu"``, ``"cuda:1"``, a GPU index); ``None``: with the model.
        use_buffers: average the buffers (batch norm's statistics) too; ``False``: only the parameters.
        update_every_n_steps: update after every n-th optimizer step (``step_idx % n == 0``); 0: not after steps.
        update_starting_at_step: update only from this optimizer step (0-based) on; ``None``: from the first.
        update_starting_at_epoch: also update at the end of this epoch (0-based) and every later one; ``None``: not
            at epoch ends.

    The last four mean what they mean for ``EMAWeightAveraging`` and keep its order; ``decay`` and ``device`` come
    first, as they did before ``WeightEMA`` had the others.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[WeightEMA(decay=0.999)], logger=False)
    """

    def __init__(
        self,
        decay: float = 0.999,
        device: torch.device | int | str | None = None,
        use_buffers: bool = True,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
    ) -> None:
        if not 0 < decay < 1:
            raise MisconfigurationException(f"WeightEMA: decay must be between 0 and 1, got {decay}")
        if update_every_n_steps < 0:
            raise MisconfigurationException(
                f"WeightEMA: update_every_n_steps must be 0 (not after steps) or more, got {update_every_n_steps}"
            )
        starts = {
            "update_starting_at_step": update_starting_at_step,
            "update_starting_at_epoch": update_starting_at_epoch,
        }
        for name, start in starts.items():
            if start is not None and start < 0:
                raise MisconfigurationException(f"WeightEMA: {name} must be None or 0 or more, got {start}")
        if update_every_n_steps == 0 and update_starting_at_epoch is None:
            # EMAWeightAveraging would accept this and, at the end of fit, replace the trained weights
            # with the untouched copy of the initial ones
            raise MisconfigurationException(
                "WeightEMA: update_every_n_steps=0 and no update_starting_at_epoch: the average would never be updated"
            )
        # Lightning's EMAWeightAveraging hands AveragedModel avg_fn=get_ema_avg_fn(decay), a fixed decay and a
        # closure: a callback holding one cannot be pickled ("Can't pickle local object", ddp_spawn), and its
        # **kwargs cannot replace it (a second avg_fn is a TypeError). So this is a WeightAveraging, the
        # documented base, with the warm-up as its average and EMAWeightAveraging's options in should_update.
        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=WarmupEMA(decay))
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    @override
    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """After an optimizer step or an epoch, as ``EMAWeightAveraging`` decides with the same options."""
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        if epoch_idx is not None and self.update_starting_at_epoch is not None:
            return epoch_idx >= self.update_starting_at_epoch
        return False


class WarmupEMA:
    """An exponential moving average whose decay warms up, for ``AveragedModel(multi_avg_fn=...)``.

    After ``n`` updates the average moves ``1 - decay_after(n)`` of the way towards the weights, with
    ``decay_after(n) = min(decay, (1 + n) / (10 + n))``. A class, not a closure, so that it pickles.

    Args:
        decay: the decay the warm-up reaches.

    Example::

        >>> average, weights = [torch.zeros(2)], [torch.ones(2)]
        >>> WarmupEMA(0.999)(average, weights, torch.tensor(0))  # decay 1/10: 9/10 of the way
        >>> average[0]
        tensor([0.9000, 0.9000])
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def decay_after(self, n: int) -> float:
        """The decay of the update that follows ``n`` earlier ones."""
        return min(self.decay, (1 + n) / (10 + n))

    def __call__(self, averaged: list[Tensor], current: list[Tensor], num_averaged: Tensor) -> None:
        # AveragedModel reads num_averaged on the host for every update anyway, so .item() adds no
        # synchronisation. One in-place lerp per tensor: torch's own get_ema_multi_avg_fn fuses them with
        # its private _foreach ops, which for the few tensors of an image classifier saves nothing measurable
        # (fmnist's docs/results.md, "Weight averaging without torch's private ops").
        weight = 1 - self.decay_after(num_averaged.item())
        for average, value in zip(averaged, current):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:  # batch norm's num_batches_tracked: a count, not averaged
                average.copy_(value)
