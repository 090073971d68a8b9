"""Fit a run into a time budget: time the first steps, choose how many epochs to train, correct it as it goes.

``configs/tuned.yaml`` uses it: ``python -m fmnist fit --config configs/tuned.yaml`` trains as many of
its 30 epochs as fit into 14 minutes on the machine it runs on, and its one-cycle schedule, whose
length is the run's, ends with the last of them.
"""

import dataclasses
import math
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR
from typing_extensions import override

from callbacks.probe import time_steps, validations_per_epoch


class TimeBudget(Callback):
    """Set ``max_epochs`` so that a run ends inside a time budget, on a fast machine or a slow one.

    When ``fit`` begins (its ``setup``, before ``configure_optimizers``), the callback times
    ``probe_steps`` training steps and as many validation steps on a copy of the module, on the
    training device and in the run's precision: the module's own ``training_step`` and
    ``validation_step``, its ``configure_optimizers``' optimizer, real batches through the batch
    hooks (augmentation included). An epoch's forecast is its steps plus its validation runs; the
    callback then trains the most epochs whose forecast, with the probe and the sanity check, fits
    ``1 - margin`` of the budget: never more than the configured ``max_epochs``, and at least one.
    A schedule whose length is filled from the run's in ``configure_optimizers``
    (``trainer.estimated_stepping_batches``, as fmnist fills OneCycleLR's ``total_steps``) then ends
    with the last epoch. It prints one line: what it measured and what it chose.

    The forecast does not see the loop's and the other callbacks' work (logging, pictures,
    checkpoints) nor a machine whose speed changes later; the margin is for them. At the start of
    every later epoch the callback looks at the last epoch's real time and plans again at that pace:

    - when the run would end past the budget, it trains fewer epochs (the most that fit
      ``1 - margin`` of it) and compresses the rest of every learning-rate schedule Lightning steps:
      each of Lightning's steps then moves the schedule further;
    - when more epochs fit ``1 - margin`` of the budget than are planned (the probe forecast slower
      steps than the run takes), it trains more, up to the configured ``max_epochs``, and stretches
      the rest of every schedule: some of Lightning's steps then leave it where it was. Only a
      schedule whose rate follows from its position alone can stay in place (``OneCycleLR``,
      ``LambdaLR``); with any other, the planned epochs stay, and the callback says so once.

    Either way each schedule still ends with the last step (OneCycleLR reaches its final rate), and
    the callback prints one line. Between the two (the run ends between ``1 - margin`` and the whole
    budget) nothing changes, so one epoch's noise does not move the plan back and forth.
    ``trainer.max_time`` stays the hard stop; this callback never changes it.

    The copy, its optimizer and the random numbers the probe draws are thrown away: the run's
    weights, batch-norm statistics, weight averages and random numbers (Python's, NumPy's, torch's;
    not those of a loader's own ``generator``) are those of a run without it. The copy costs the
    model's memory once more while the probe runs. A resumed run keeps the epochs, and the
    schedules' compression or stretch, of the run it resumes (they are saved in checkpoints), so its
    schedule stays whole.
    Under DDP, rank zero's measurement decides for every process.

    Args:
        minutes: the time ``fit`` may take, from its start (this callback's ``setup``) to its end.
        probe_steps: training steps timed, after two untimed ones; validation steps too, up to an epoch's.
        margin: the share of the budget left for what the forecast does not see.

    Example::

        trainer = Trainer(max_epochs=20, max_time="00:00:15:00", callbacks=[TimeBudget(minutes=14)])
    """

    def __init__(self, minutes: float, probe_steps: int = 10, margin: float = 0.1) -> None:
        if not minutes > 0:
            raise MisconfigurationException(f"TimeBudget: minutes must be above 0, got {minutes:g}")
        if probe_steps < 1:
            raise MisconfigurationException(f"TimeBudget: probe_steps must be at least 1, got {probe_steps}")
        if not 0 <= margin < 1:
            raise MisconfigurationException(
                f"TimeBudget: margin must be from 0 up to (not including) 1, got {margin:g}"
            )
        self.minutes, self.probe_steps, self.margin = minutes, probe_steps, margin
        self.epochs: int | None = None  #: the epochs chosen; None before fit, or when nothing could be timed
        self.epoch_seconds: float | None = None  #: the forecast of an epoch, its validation included
        self.first_epoch_seconds: float | None = None  #: the real time of this fit's first epoch
        self._start = self._epoch_start = 0.0
        self._line, self._resumed, self._most, self._told = "", False, math.inf, False
        self._refitted: list[_Refit | None] | None = None  # per schedule, once the epochs changed

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit":
            return
        self._start, self._epoch_start, self._line, self._resumed = time.monotonic(), 0.0, "", False
        self._refitted, self._told = None, False
        configured = trainer.max_epochs
        self._most = configured if configured is not None and configured > 0 else math.inf
        self.epochs = self.epoch_seconds = self.first_epoch_seconds = None
        try:  # on every process: loading the data has collectives; the copies train side by side
            plan = self._plan(trainer, pl_module)
        except Exception as err:  # a model the probe cannot run: the run goes on without a budget
            rank_zero_warn(
                f"TimeBudget: could not time the training step ({type(err).__name__}: {err}); max_epochs stays"
                f" {trainer.max_epochs}, and only trainer.max_time limits the run"
            )
            plan = None
        plan = trainer.strategy.broadcast(plan, src=0)
        if plan is not None:
            self.epochs, self.epoch_seconds, self._line = plan
            trainer.fit_loop.max_epochs = self.epochs

    def _plan(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> tuple[int, float, str] | None:
        """The epochs to train, an epoch's forecast and the line that says so."""
        trainer.fit_loop.setup_data()  # as trainer.estimated_stepping_batches does, to count the batches
        batches = trainer.num_training_batches
        if not 0 < batches < math.inf:
            rank_zero_warn("TimeBudget: the training loader has no length, so an epoch cannot be forecast; not used")
            return None
        steps = math.ceil(batches / trainer.accumulate_grad_batches)
        trainer.fit_loop.epoch_loop.val_loop.setup_data()  # no public way to count validation batches before fit
        val_batches = sum(n for n in trainer.num_val_batches if n < math.inf)
        step_s, val_s = time_steps(trainer, pl_module, self.probe_steps, min(self.probe_steps, val_batches))
        validation_s = validations_per_epoch(trainer, batches) * val_batches * val_s
        epoch_s = steps * step_s + validation_s
        spent = time.monotonic() - self._start + sum(trainer.num_sanity_val_batches) * val_s  # and the sanity check
        fitting = math.floor((self.minutes * 60 * (1 - self.margin) - spent) / epoch_s) if epoch_s > 0 else math.inf
        configured = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        epochs = int(max(1, min(fitting, configured or math.inf)))
        if fitting < 1:
            rank_zero_warn(
                f"TimeBudget: one epoch is forecast at {epoch_s / 60:.1f} min, more than the {self.minutes:g} min"
                " budget leaves for training; training one epoch, which trainer.max_time may cut"
            )
        line = (
            f"TimeBudget: {_seconds(step_s)} a training step x {steps} steps + {_seconds(validation_s)} of validation"
            f" = {_seconds(epoch_s)} an epoch -> {epochs}{f' of {configured}' if configured else ''} epochs,"
            f" {(spent + epochs * epoch_s) / 60:.1f} min forecast of the {self.minutes:g} min budget"
        )
        return epochs, epoch_s, line

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._resumed:
            rank_zero_info(f"TimeBudget: a resumed run: {self.epochs} epochs, as chosen when it began")
        elif self._line:
            rank_zero_info(self._line)

    @override
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        now = time.monotonic()
        last, self._epoch_start = (now - self._epoch_start if self._epoch_start else None), now
        if last is None or self._resumed or not self.epoch_seconds:
            return
        if self.first_epoch_seconds is None:
            self.first_epoch_seconds = last
        plan = self._replan(trainer, last, now - self._start) if trainer.is_global_zero else None
        plan = trainer.strategy.broadcast(plan, src=0)  # every process trains the same epochs
        if plan is not None:
            epochs, line = plan
            if epochs != trainer.max_epochs:
                self._refit(trainer, epochs)
                self.epochs = trainer.fit_loop.max_epochs = epochs
            rank_zero_info(line)

    def _replan(self, trainer: "pl.Trainer", last: float, elapsed: float) -> tuple[int, str] | None:
        """The epochs to train at the last epoch's pace, when they change, and the line that says so."""
        done, planned, budget = trainer.current_epoch, trainer.max_epochs, self.minutes * 60
        fitting = done + math.floor((budget * (1 - self.margin) - elapsed) / last)
        pace = f"TimeBudget: epoch {done} took {_seconds(last)}, forecast {_seconds(self.epoch_seconds)};"
        if elapsed + (planned - done) * last > budget:  # past the budget at this pace
            epochs, change = max(done + 1, fitting), "compressed"
            if epochs >= planned:
                return None
        elif fitting > planned and self._most > planned:  # room for more
            epochs, change = int(min(fitting, self._most)), "stretched"
            fixed = [type(s).__name__ for s in _counted_schedules(trainer) if not isinstance(s, (OneCycleLR, LambdaLR))]
            if fixed:
                if self._told:
                    return None
                self._told = True
                return planned, (
                    f"{pace} {epochs} epochs would fit, but {', '.join(fixed)}'s rate depends on its past steps,"
                    f" so its schedule cannot be stretched: training the {planned} epochs planned"
                )
        else:
            return None
        return epochs, (
            f"{pace} training {epochs} epochs, not {planned}, the rest of the schedule {change} to end with them:"
            f" {(elapsed + (epochs - done) * last) / 60:.1f} min forecast of the {self.minutes:g} min budget"
        )

    def _refit(self, trainer: "pl.Trainer", epochs: int) -> None:
        """From now on, Lightning's steps of each schedule move it as far as it would have gone in the planned epochs."""
        done, planned = trainer.current_epoch, trainer.max_epochs
        before = self._refitted or [None] * len(_counted_schedules(trainer))
        self._refitted = []
        for schedule, old in zip(_counted_schedules(trainer), before):
            per_epoch = old.per_epoch if old else schedule.last_epoch / done  # Lightning's steps of it an epoch
            end = old.end if old else round(per_epoch * planned)  # a fresh run's schedule starts at 0
            steps = round(per_epoch * (epochs - done))
            refitted = _Refit(schedule.last_epoch, end, steps, per_epoch, seen=schedule.last_epoch) if steps else None
            self._refitted.append(refitted)

    @override
    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # after Lightning has stepped the schedules of this batch (and of the epoch, at its last batch)
        for schedule, refitted in zip(_counted_schedules(trainer), self._refitted or []):
            if refitted is not None:
                refitted.taken += schedule.last_epoch - refitted.seen
                refitted.move(schedule)

    @override
    def state_dict(self) -> dict[str, Any]:
        schedules = self._refitted and [c and dataclasses.asdict(c) for c in self._refitted]
        return {"epochs": self.epochs, "schedules": schedules}

    @override
    def on_load_checkpoint(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: dict) -> None:
        # runs after setup and before configure_optimizers: the restored schedule keeps the length it was made with
        state = checkpoint.get("callbacks", {}).get(self.state_key, {})
        if state.get("epochs") is not None:
            self.epochs, self._resumed = state["epochs"], True
            self._refitted = state.get("schedules") and [c and _Refit(**c) for c in state["schedules"]]
            trainer.fit_loop.max_epochs = self.epochs


@dataclasses.dataclass
class _Refit:
    """A learning-rate schedule fitted into fewer or more epochs than it was made for.

    Its positions from ``start`` to ``end - 1`` are spread evenly over Lightning's ``steps`` steps of
    it: the first training step after the change uses position ``start``, the last one ``end - 1``,
    and Lightning's step after it reaches ``end``, as in a run that trains all the planned epochs.
    Fewer steps than positions (a compressed schedule) move it on, never back, so any schedule can be
    compressed; more steps (a stretched one) sometimes set it back to where it was before Lightning
    stepped it, which only a schedule whose rate follows from its position alone allows.

    >>> [_Refit(start=4, end=8, steps=2, per_epoch=1).position(taken) for taken in range(3)]
    [4, 7, 8]
    >>> [_Refit(start=4, end=8, steps=7, per_epoch=1).position(taken) for taken in range(8)]
    [4, 5, 5, 6, 6, 7, 7, 8]
    """

    start: int  #: its position when refitted
    end: int  #: its position at the end of the planned epochs
    steps: int  #: Lightning's steps of it in the epochs now planned
    per_epoch: float  #: Lightning's steps of it an epoch
    taken: int = 0  #: Lightning's steps of it since
    seen: int = 0  #: its position when this last moved it

    def position(self, taken: int) -> int:
        """Where the schedule is after ``taken`` of Lightning's steps: the position the next training step uses."""
        if taken >= self.steps:
            return self.end
        if self.steps == 1:
            return self.end - 1
        return self.start + math.floor(taken * (self.end - 1 - self.start) / (self.steps - 1) + 0.5)  # half up: even

    def move(self, schedule: Any) -> None:
        """Put ``schedule`` where it goes after ``taken`` of Lightning's steps."""
        target = self.position(self.taken)
        if target < schedule.last_epoch:  # a stretched schedule stays: its rate computed again at the position
            schedule.last_epoch = target - 1
            schedule.step()
        for _ in range(target - schedule.last_epoch):
            schedule.step()
        self.seen = schedule.last_epoch


def _counted_schedules(trainer: "pl.Trainer") -> list[Any]:
    """The learning-rate schedules Lightning steps by count (not ``ReduceLROnPlateau``, which follows a metric)."""
    return [config.scheduler for config in trainer.lr_scheduler_configs if not config.reduce_on_plateau]


def _seconds(seconds: float) -> str:
    """Three significant figures.

    >>> _seconds(0.41234), _seconds(9.06), _seconds(266.4)
    ('0.412 s', '9.06 s', '266 s')
    """
    return f"{seconds:.3g} s" if seconds < 100 else f"{seconds:.0f} s"
