"""Fit a run into a time budget: time its first steps, choose how many epochs to train, correct it as it goes.

``configs/tuned.yaml`` uses it: ``python -m fmnist fit --config configs/tuned.yaml`` trains as many of
its 30 epochs as fit into 14 minutes on the machine it runs on, and its one-cycle schedule
(:class:`~callbacks.schedule.OneCycleProgressLR`) ends with the last of them.
"""

import math
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, Timer
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from typing_extensions import override

from callbacks.schedule import ProgressLR

#: Training steps left untimed before the timed ones: the first calls build kernels and caches.
WARMUP_STEPS = 2


class TimeBudget(Callback):
    """Set ``max_epochs`` so that a run ends inside a time budget, on a fast machine or a slow one.

    The callback times the run's own first training steps (after two untimed ones): everything
    between one ``on_train_batch_end`` and the next, loading and augmenting the batch, the step, the
    optimizer and the logging. The sanity check's validation steps give the pace of validation. An
    epoch's forecast is its steps plus its validation runs; after ``probe_steps`` steps the callback
    trains the most epochs whose forecast, with the time already spent, fits ``1 - margin`` of the
    budget: never more than the configured ``max_epochs``, and at least one. It prints one line: what
    it measured and what it chose.

    Every learning-rate schedule that is a :class:`~callbacks.schedule.ProgressLR` (a function of the
    progress through its planned steps, such as :class:`~callbacks.schedule.OneCycleProgressLR`) is
    then planned for the epochs chosen, so it ends with the last step; the steps already taken keep
    their rates. Other schedules keep the length they were made with, and the callback warns once.

    The forecast does not see per-epoch work (pictures, checkpoints) nor a machine whose speed changes
    later; the margin is for them. At the start of every later epoch the callback plans again
    (:func:`replan`) at the pace of the last two epochs (the forecast stands in for the one before the
    first), and prints one line when the plan changes:

    - when the run would end past ``1 - margin / 2`` of the budget even at the faster of the two paces,
      it trains fewer epochs: the most that fit ``1 - margin`` of the budget at that pace;
    - when, even at the slower of the two, more epochs fit ``1 - margin`` of the budget than are
      planned, it trains more, up to the configured ``max_epochs``.

    So the pace of one slow (or fast) epoch alone never moves the plan (the time it took does count);
    two in a row do, and a run that only just fits is shortened while half the margin is left for a
    slowdown after the last check.
    ``trainer.max_time`` stays the hard stop; this callback never changes it. A resumed run keeps the
    epochs of the run it resumes (saved in checkpoints, as its schedules' plans are) and plans nothing
    again. Under DDP, rank zero's measurement decides for every process.

    Args:
        minutes: the time ``fit`` may take, from its start (this callback's ``setup``) to its end; ``None``:
            the trainer's ``max_time`` (what its ``Timer`` has left when fit starts), so that one number
            sets both the plan and the hard stop.
        probe_steps: training steps timed before the epochs are chosen, after two untimed ones.
        margin: the share of the budget left for what the forecast does not see.
        clock: the seconds, as ``time.monotonic`` gives them (its default); tests drive it.

    Example::

        trainer = Trainer(max_epochs=20, max_time="00:00:15:00", callbacks=[TimeBudget(minutes=14)])
        trainer = Trainer(max_epochs=20, max_time="00:00:02:00", callbacks=[TimeBudget()])  # 2 minutes
    """

    def __init__(
        self,
        minutes: float | None = None,
        probe_steps: int = 10,
        margin: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if minutes is not None and not minutes > 0:
            raise MisconfigurationException(f"TimeBudget: minutes must be above 0, got {minutes:g}")
        if probe_steps < 1:
            raise MisconfigurationException(f"TimeBudget: probe_steps must be at least 1, got {probe_steps}")
        if not 0 <= margin < 1:
            raise MisconfigurationException(
                f"TimeBudget: margin must be from 0 up to (not including) 1, got {margin:g}"
            )
        self.minutes, self.probe_steps, self.margin, self.clock = minutes, probe_steps, margin, clock
        self.budget = minutes  #: the budget in minutes: ``minutes``, or what ``max_time`` leaves when fit starts
        self.epochs: int | None = None  #: the epochs chosen; None before they are, or when they cannot be
        self.epoch_seconds: float | None = None  #: the forecast of an epoch, its validation included
        self.paces: list[float] = []  #: the forecast, then each epoch's real seconds
        self._start = self._epoch_start = 0.0
        self._marks: list[float] = []  # the ends of the first epoch's steps, until the epochs are chosen
        self._val_seconds: list[float] = []  # the sanity check's validation steps
        self._active, self._resumed, self._told, self._most = False, False, False, math.inf

    def minutes_for(self, trainer: "pl.Trainer") -> float:
        """The budget on ``trainer``: ``minutes``, or what its ``max_time`` leaves for training (its ``Timer``)."""
        if self.minutes is not None:
            return self.minutes
        timer = next((callback for callback in trainer.callbacks if isinstance(callback, Timer)), None)
        left = timer.time_remaining() if timer is not None else None
        if left is None:
            raise MisconfigurationException("TimeBudget: give it minutes, or give the trainer a max_time")
        return left / 60

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage == "fit":
            self._start, self._active, self._resumed, self._told = self.clock(), True, False, False
            self._most = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else math.inf
            self.epochs, self.epoch_seconds, self.paces, self._marks, self._val_seconds = None, None, [], [], []
            self.budget = self.minutes_for(trainer)

    @override
    def on_load_checkpoint(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: dict) -> None:
        # runs after setup and before configure_optimizers: the schedules are made for the epochs planned
        state = checkpoint.get("callbacks", {}).get(self.state_key, {})
        if state.get("epochs") is not None:
            self.epochs, self._resumed = state["epochs"], True
            trainer.fit_loop.max_epochs = self.epochs

    @override
    def on_validation_batch_start(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            self._val_seconds.append(-self.clock())

    @override
    def on_validation_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking:
            self._val_seconds[-1] += self.clock()

    @override
    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._resumed:
            self._active = False
            rank_zero_info(f"TimeBudget: a resumed run: {self.epochs} epochs, as chosen when it began")
        elif not 0 < trainer.num_training_batches < math.inf:
            self._active = False
            rank_zero_warn("TimeBudget: the training loader has no length, so an epoch cannot be forecast; not used")

    @override
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        now = self.clock()
        last, self._epoch_start = now - self._epoch_start, now
        if not self._active:
            return
        if self.epochs is None:  # the first epoch: its steps are timed
            self._marks = [now]
            return
        self.paces.append(last)
        plan = self._replan(trainer, now - self._start) if trainer.is_global_zero else None
        plan = trainer.strategy.broadcast(plan, src=0)  # every process trains the same epochs
        if plan is not None:
            self._apply(trainer, plan[0])
            rank_zero_info(plan[1])

    @override
    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # after Lightning has stepped the schedules of this batch: the plan starts from the next step
        if not self._active or self.epochs is not None:
            return
        self._marks.append(self.clock())
        if len(self._marks) - 1 < min(WARMUP_STEPS + self.probe_steps, trainer.num_training_batches):
            return
        plan = self._plan(trainer) if trainer.is_global_zero else None
        epochs, self.epoch_seconds, line = trainer.strategy.broadcast(plan, src=0)
        self.paces = [self.epoch_seconds]
        self._apply(trainer, epochs)
        rank_zero_info(line)

    def _plan(self, trainer: "pl.Trainer") -> tuple[int, float, str]:
        """The epochs to train, an epoch's forecast and the line that says so, from the steps timed."""
        batches, done = trainer.num_training_batches, len(self._marks) - 1
        timed = min(self.probe_steps, done)
        step_s = (self._marks[-1] - self._marks[-1 - timed]) / timed
        val_batches = sum(n for n in trainer.num_val_batches if n < math.inf)
        val_steps = self._val_seconds[1:] or self._val_seconds  # the first one builds kernels and caches
        validation_s = validations_per_epoch(trainer, batches) * val_batches * sum(val_steps) / max(1, len(val_steps))
        epoch_s = batches * step_s + validation_s
        spent = self._marks[-1] - self._start + (batches - done) * step_s + validation_s  # to the first epoch's end
        this = trainer.current_epoch + 1  # the epochs trained at the end of this one
        fitting = this + math.floor((self.budget * 60 * (1 - self.margin) - spent) / epoch_s)
        configured = self._most if self._most < math.inf else None
        epochs = int(max(this, min(fitting, self._most)))
        if fitting < this:
            rank_zero_warn(
                f"TimeBudget: one epoch is forecast at {epoch_s / 60:.1f} min, more than the {self.budget:.3g} min"
                " budget leaves for training; training one epoch, which trainer.max_time may cut"
            )
        untimed = val_batches and not val_steps
        validation = "validation not timed (no sanity check)" if untimed else f"{_seconds(validation_s)} of validation"
        line = (
            f"TimeBudget: {_seconds(step_s)} a training step x {batches} steps + {validation}"
            f" = {_seconds(epoch_s)} an epoch -> {epochs}{f' of {configured}' if configured else ''} epochs,"
            f" {(spent + (epochs - 1) * epoch_s) / 60:.1f} min forecast of the {self.budget:.3g} min budget"
        )
        return epochs, epoch_s, line

    def _replan(self, trainer: "pl.Trainer", elapsed: float) -> tuple[int, str] | None:
        """The epochs to train at the last two epochs' pace, when they change, and the line that says so."""
        done, planned = trainer.current_epoch, trainer.max_epochs
        epochs = replan(planned, done, elapsed, self.paces, self.budget * 60, self.margin, self._most)
        if epochs == planned:
            return None
        pace, change = (min(self.paces[-2:]), "compressed") if epochs < planned else (max(self.paces[-2:]), "stretched")
        rest = f", the rest of the schedule {change} to end with them" if _planned_schedules(trainer) else ""
        return epochs, (
            f"TimeBudget: epoch {done} took {_seconds(self.paces[-1])}, forecast {_seconds(self.epoch_seconds)};"
            f" training {epochs} epochs, not {planned}{rest}:"
            f" {(elapsed + (epochs - done) * pace) / 60:.1f} min forecast of the {self.budget:.3g} min budget"
        )

    def _apply(self, trainer: "pl.Trainer", epochs: int) -> None:
        """Train ``epochs`` epochs; plan every schedule on progress for them, and say once that others cannot be."""
        self.epochs = epochs
        if epochs == trainer.max_epochs:
            return
        trainer.fit_loop.max_epochs = epochs  # as Lightning's own tuner sets its loop's limits
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ProgressLR):
                length = trainer.estimated_stepping_batches if config.interval == "step" else epochs
                config.scheduler.plan(max(1, int(length) // config.frequency))
            elif not config.reduce_on_plateau and not self._told:  # ReduceLROnPlateau has no length
                self._told = True
                rank_zero_warn(
                    f"TimeBudget: {type(config.scheduler).__name__} cannot be planned again, so it keeps the length"
                    " it was made with; a callbacks.ProgressLR (such as callbacks.OneCycleProgressLR) ends with"
                    " the epochs the budget chooses"
                )

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"epochs": self.epochs}


def replan(
    planned: int, done: int, elapsed: float, paces: list[float], budget: float, margin: float, most: float = math.inf
) -> int:
    """The epochs to train after ``done`` of ``planned``, ``elapsed`` seconds into a ``budget``.

    ``paces`` are the seconds of the epochs so far (the forecast first); the last two decide. When the
    run would end past ``1 - margin / 2`` of the budget even at the faster of them, the most epochs that
    fit ``1 - margin`` of it at that pace; when, even at the slower, more epochs fit ``1 - margin`` than
    are planned, those (never more than ``most``); else the plan stays. So one slow epoch alone never
    moves the plan, and a run that only just fits is shortened while half the margin is left.

    >>> replan(14, 2, 156.5, [49.5, 49.5, 82.0], budget=840, margin=0.1)  # one slow epoch
    14
    >>> replan(14, 3, 238.5, [49.5, 49.5, 82.0, 82.0], budget=840, margin=0.1)  # two in a row
    9
    >>> replan(10, 3, 120.0, [40.0, 40.0, 36.0, 36.0], budget=840, margin=0.1, most=30)  # faster than planned
    20
    """
    fast, slow = min(paces[-2:]), max(paces[-2:])
    if elapsed + (planned - done) * fast > budget * (1 - margin / 2):
        return min(planned, max(done + 1, done + math.floor((budget * (1 - margin) - elapsed) / fast)))
    fitting = done + math.floor((budget * (1 - margin) - elapsed) / slow)
    return int(min(most, fitting)) if fitting > planned and most > planned else planned


def validations_per_epoch(trainer: "pl.Trainer", batches: int) -> float:
    """How many times validation runs in an epoch (``val_check_interval``, ``check_val_every_n_epoch``)."""
    every = trainer.val_check_batch
    runs = batches / every if isinstance(every, (int, float)) and 0 < every < math.inf else 1.0
    if trainer.check_val_every_n_epoch is None:  # validation every n steps, across epochs
        return runs
    return max(1, math.floor(runs)) / trainer.check_val_every_n_epoch


def _planned_schedules(trainer: "pl.Trainer") -> list[ProgressLR]:
    return [config.scheduler for config in trainer.lr_scheduler_configs if isinstance(config.scheduler, ProgressLR)]


def _seconds(seconds: float) -> str:
    """Three significant figures.

    >>> _seconds(0.41234), _seconds(9.06), _seconds(266.4)
    ('0.412 s', '9.06 s', '266 s')
    """
    return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"
