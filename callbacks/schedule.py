"""Learning-rate schedules defined on progress through a planned number of steps, so a plan can change.

:class:`~callbacks.budget.TimeBudget` plans them again when it changes the epochs of a run:
``configs/tuned.yaml`` names :class:`OneCycleProgressLR` as ``model.scheduler`` and leaves its
``total_steps`` to be filled with the run's; ``python -m fmnist fit --config configs/tuned.yaml``.
"""

import math
from collections.abc import Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class ProgressLR(LRScheduler):
    """A schedule whose rate is a function of progress: 0 at the first of ``total_steps`` steps, 1 at the last.

    :meth:`plan` changes the number of steps while the schedule runs: the steps left then cover the
    progress left, so the rate goes on from where it is (no jump) and the last planned step still
    reaches progress 1. Subclasses compute the rate in :meth:`get_lr` from :meth:`position`, a step
    of the run the schedule was made for, so its shape stays the one it was made with. What a plan
    needs is in the state dict, so a resumed run keeps it.

    Args:
        optimizer: the wrapped optimizer.
        total_steps: the steps planned: how many times the schedule's ``step`` is called in a run.
        last_epoch: the index of the last step, as in every torch schedule; -1 to begin.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, last_epoch: int = -1) -> None:
        self.total_steps = self.made_for = _positive_steps(total_steps)
        self.planned_at, self.progress_then = 0, 0.0  # the step of the last plan, and the progress it had reached
        super().__init__(optimizer, last_epoch)

    def progress(self, step: int | None = None) -> float:
        """How far through its plan the schedule is at ``step`` (its current one by default), from 0 to 1."""
        step = self.last_epoch if step is None else step
        left = self.total_steps - 1 - self.planned_at
        if left <= 0 or step >= self.total_steps - 1:
            return 1.0
        return self.progress_then + (1 - self.progress_then) * (step - self.planned_at) / left

    def position(self) -> float:
        """The step of the run the schedule was made for (``made_for`` steps) that has come as far: the step
        itself while the plan is the one it was made with."""
        if self.total_steps == self.made_for and not self.planned_at:  # exact, as torch's schedules count
            return float(min(self.last_epoch, self.made_for - 1))
        return self.progress() * (self.made_for - 1)

    def plan(self, total_steps: int) -> None:
        """Plan ``total_steps`` steps in all from now on; the rate of the current step stays."""
        self.progress_then, self.planned_at = self.progress(), self.last_epoch
        self.total_steps = _positive_steps(total_steps)


class OneCycleProgressLR(ProgressLR):
    """torch's ``OneCycleLR`` (cosine, two phases) that :meth:`~ProgressLR.plan` can lengthen or shorten.

    With an unchanged plan its rates and momenta are ``OneCycleLR``'s, step for step: from
    ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of the steps, then down to
    ``max_lr / div_factor / final_div_factor`` at the last; momentum (Adam's first beta) the other way,
    between ``max_momentum`` and ``base_momentum``.

    Args:
        optimizer: the wrapped optimizer.
        max_lr: the peak learning rate, one for all parameter groups or one each.
        total_steps: the steps planned; fmnist fills it with the run's when left out.
        pct_start: the share of the steps spent rising.
        div_factor: ``max_lr`` over the first rate.
        final_div_factor: the first rate over the last.
        cycle_momentum: move momentum (or Adam's first beta) against the rate.
        base_momentum: the momentum at the peak rate.
        max_momentum: the momentum at the first and last steps.
        last_epoch: the index of the last step; -1 to begin.

    Example::

        schedule = OneCycleProgressLR(optimizer, max_lr=0.003, total_steps=6450)
        schedule.plan(5590)  # 13 epochs of 430 steps, not 15: the rest of the cycle in fewer steps
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        pct_start: float = 0.3,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        last_epoch: int = -1,
    ) -> None:
        groups = len(optimizer.param_groups)
        self.max_lrs = list(max_lr) if isinstance(max_lr, Sequence) else [max_lr] * groups
        if len(self.max_lrs) != groups:
            raise ValueError(f"OneCycleProgressLR: {len(self.max_lrs)} max_lr values for {groups} parameter groups")
        if not 0 < pct_start < 1:
            raise ValueError(f"OneCycleProgressLR: pct_start must be between 0 and 1, got {pct_start}")
        if cycle_momentum and not {"momentum", "betas"} & optimizer.defaults.keys():
            raise ValueError("OneCycleProgressLR: cycle_momentum needs an optimizer with momentum or betas")
        self.pct_start, self.div_factor, self.final_div_factor = pct_start, div_factor, final_div_factor
        self.cycle_momentum, self.momenta = cycle_momentum, (base_momentum, max_momentum)
        super().__init__(optimizer, total_steps, last_epoch)

    def get_lr(self) -> list[float]:
        # OneCycleLR's phases in the run it was made for, its rounding included: the rise ends at step
        # pct_start * total_steps - 1 (at 0 or before it, the schedule starts falling at once)
        step, rise_end, last = self.position(), self.pct_start * self.made_for - 1, self.made_for - 1
        rising = step <= rise_end and rise_end > 0
        share = step / rise_end if rising else (step - rise_end) / (last - rise_end) if last > rise_end else 1.0
        base_momentum, max_momentum = self.momenta
        rates = []
        for group, max_lr in zip(self.optimizer.param_groups, self.max_lrs):
            first = max_lr / self.div_factor
            start, end = (first, max_lr) if rising else (max_lr, first / self.final_div_factor)
            rates.append(_cosine(start, end, share))
            if self.cycle_momentum:
                momentum = _cosine(*((max_momentum, base_momentum) if rising else (base_momentum, max_momentum)), share)
                if "betas" in group:
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return rates


def _cosine(start: float, end: float, share: float) -> float:
    """From ``start`` at share 0 to ``end`` at share 1 along half a cosine, as OneCycleLR anneals.

    >>> _cosine(1.0, 0.0, 0.0), _cosine(1.0, 0.0, 0.5), _cosine(1.0, 0.0, 1.0)
    (1.0, 0.5, 0.0)
    """
    return end + (start - end) / 2 * (math.cos(math.pi * share) + 1)


def _positive_steps(total_steps: int | None) -> int:
    if not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"a schedule on progress needs total_steps, a positive number of steps; got {total_steps}")
    return total_steps
