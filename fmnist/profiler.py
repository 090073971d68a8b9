"""Lightning's PyTorchProfiler with a bounded schedule, and where a training step's time goes, in TensorBoard.

Switched on with ``python -m fmnist fit --config configs/profile.yaml``. What it writes needs no
TensorBoard plugin and no internet: scalars, a bar chart in the Images tab, tables in the Text tab.
"""

import time
from collections import defaultdict
from collections.abc import Iterable

import lightning.pytorch as pl
import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import PyTorchProfiler
from torch.autograd.profiler_util import FunctionEventAvg
from torch.profiler import ProfilerAction
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.render import bar_chart
from callbacks.tensorboard import epoch_step

#: The parts of a training step, each named by pieces of the names Lightning gives the actions it
#: profiles (``[_TrainingEpochLoop].train_dataloader_next``, ``[Strategy]SingleDeviceStrategy.backward``,
#: ``[LightningModule]FashionMNISTClassifier.optimizer_step``, ``[Callback]SampleImages.on_train_batch_end``,
#: ...). The first part with a piece in an action's name gets its own time: data first, because the
#: batch-transfer hooks (``on_after_batch_transfer``: fmnist's augmentation) are data, not callbacks;
#: callbacks next, which also take the module's own ``on_*`` hooks (``on_before_optimizer_step`` is a
#: hook, not the optimizer). What no part names is ``logging``: chiefly the own time of the loops
#: (``run_training_epoch``, ``run_training_batch``), where Lightning's logger connector gathers and
#: writes the logged metrics and the progress is counted.
STEP_PARTS = {
    "data": ("dataloader_next", "batch_to_device", "batch_transfer", ".train_dataloader"),
    "callbacks": ("[Callback]", ".on_", "save_checkpoint"),
    "forward": (".training_step",),
    "backward": (".backward",),
    "optimizer": ("optimizer_step", "optimizer_zero_grad", "gradient_clipping", "lr_scheduler_step"),
}
PART_ORDER = ("data", "forward", "backward", "optimizer", "callbacks", "logging")
EPOCH, BATCH = "run_training_epoch", "run_training_batch"  # the names of Lightning's training loops' actions


def step_part(action: str) -> str:
    """The part of a training step that a Lightning action's own time belongs to.

    >>> [step_part(action) for action in ("[_TrainingEpochLoop].train_dataloader_next",
    ...     "[Strategy]SingleDeviceStrategy.training_step", "[LightningModule]Net.on_before_optimizer_step",
    ...     "[LightningModule]Net.optimizer_step", "run_training_epoch")]
    ['data', 'forward', 'callbacks', 'optimizer', 'logging']
    """
    return next((part for part, pieces in STEP_PARTS.items() if any(p in action for p in pieces)), "logging")


class StepTimer:
    """The own time of every action Lightning profiles while training, and its mean per training step.

    An action's own time is the time in which it is the innermost open action (``training_step``
    runs inside ``optimizer_step``, inside ``run_training_batch``, inside ``run_training_epoch``);
    Lightning's ``SimpleProfiler`` times actions whole, so nested ones would count twice. Only the
    training epoch loop counts (``run_training_epoch`` and what it runs while training): not fit's
    setup, start and end, nor the hooks between epochs, nor validation. Each stretch of own time
    counts only when ``idle`` at both its ends, and a step only when ``idle`` at its start and end:
    the profiler leaves out the steps torch's profiler records, which run several times slower.

    >>> timer = StepTimer()
    >>> timer.start("run_training_epoch", now=0.0, training=True)
    >>> timer.start("run_training_batch", now=0.5, training=True)
    >>> timer.start("[Strategy]S.training_step", now=1.0, training=True)
    >>> timer.stop("[Strategy]S.training_step", now=4.0)
    >>> timer.stop("run_training_batch", now=5.0)
    >>> timer.start("[_EvaluationLoop].val_next", now=5.0, training=False)  # validation: no part
    >>> timer.stop("[_EvaluationLoop].val_next", now=5.25)
    >>> timer.stop("run_training_epoch", now=5.75)
    >>> timer.breakdown()
    {'data': 0.0, 'forward': 3000.0, 'backward': 0.0, 'optimizer': 0.0, 'callbacks': 0.0, 'logging': 2500.0}
    """

    def __init__(self) -> None:
        self.own_s: defaultdict[str, float] = defaultdict(float)
        self.batches = 0
        # the open actions, innermost last: [action, counted, idle at its start, own time since, idle then]
        self._open: list[list] = []

    def start(self, action: str, now: float, training: bool, idle: bool = True) -> None:
        self._own_time_until(now, idle)
        in_epoch = action == EPOCH or any(open_action[0] == EPOCH for open_action in self._open)
        self._open.append([action, training and in_epoch, idle, now, idle])

    def stop(self, action: str, now: float, idle: bool = True) -> None:
        index = next((i for i in range(len(self._open) - 1, -1, -1) if self._open[i][0] == action), None)
        if index is None:
            return
        self._own_time_until(now, idle)
        _, counted, idle_at_start, _, _ = self._open.pop(index)
        self.batches += action == BATCH and counted and idle_at_start and idle
        if self._open:  # the enclosing action's own time starts again
            self._open[-1][3:] = [now, idle]

    def exclude(self, seconds: float) -> None:
        """Leave the next ``seconds`` of the innermost open action out of its own time (no part's time)."""
        if self._open:
            self._open[-1][3] += seconds

    def breakdown(self) -> dict[str, float]:
        """Milliseconds per training step of each part (:data:`PART_ORDER`); empty before any step."""
        if not self.batches:
            return {}
        parts = dict.fromkeys(PART_ORDER, 0.0)
        for action, seconds in self.own_s.items():
            parts[step_part(action)] += 1000 * seconds / self.batches
        return parts

    def _own_time_until(self, now: float, idle: bool) -> None:
        if self._open:
            action, counted, _, since, idle_since = self._open[-1]
            if counted and idle and idle_since:
                self.own_s[action] += max(now - since, 0.0)


def operators_markdown(averages: Iterable[FunctionEventAvg], rows: int) -> str:
    """Markdown tables of the ``rows`` operators with the most self CPU time, and self CUDA time when any."""
    operators = [a for a in averages if not a.key.startswith(("[pl][profile]", "ProfilerStep"))]
    tables = []
    for device, key in (("CPU", "self_cpu_time_total"), ("CUDA", "self_device_time_total")):
        total = sum(getattr(a, key) for a in operators)
        if total <= 0:
            continue
        lines = [
            f"Top {rows} operators by self {device} time, over the profiled steps ({total / 1000:.1f} ms in all)",
            "",
            f"| operator | calls | self {device} ms | share | with children ms |",
            "|---|---:|---:|---:|---:|",
        ]
        children = "cpu_time_total" if device == "CPU" else "device_time_total"
        for a in sorted(operators, key=lambda a: getattr(a, key), reverse=True)[:rows]:
            own = getattr(a, key)
            lines.append(
                f"| `{a.key}` | {a.count} | {own / 1000:.2f} | {own / total:.1%} | {getattr(a, children) / 1000:.2f} |"
            )
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


class TensorBoardProfiler(PyTorchProfiler):
    """Profile a few steps of each stage; traces, tables and the step's breakdown go into the run.

    Each stage (training, validation, ...) is profiled once for ``wait`` + ``warmup`` + ``active``
    steps, recording only the ``active`` ones, so traces stay a few MB however long the run. CPU
    activity is always recorded, CUDA activity when a GPU is used. The traces
    (``*.pt.trace.json``) open in TensorBoard's PyTorch Profiler tab (with the
    ``torch-tb-profiler`` plugin), in https://ui.perfetto.dev and in chrome://tracing. The table of
    the most expensive operations is written to ``<filename>-<stage>.txt``. On global rank zero, at
    the end of each stage, TensorBoard gets (no plugin needed):

    - Text: that table under ``Profiler/<stage>``, and Markdown tables of the top operators by
      self CPU time (and self CUDA time on a GPU) under ``Profiler/<stage>/operators``;
    - Scalars, after ``fit``: the mean milliseconds per training step of each part, over the run's
      steps, as ``Profiler/<part>_ms`` (data, forward, backward, optimizer, callbacks, logging;
      :data:`STEP_PARTS` says what each holds) and their sum ``Profiler/step_ms``;
    - Images: the same as a bar chart, ``Profiler/step_breakdown``.

    The parts are wall-clock time on the host; on a GPU each action is timed after
    ``torch.cuda.synchronize()``, so each part holds the GPU work it launched. The steps the PyTorch
    profiler warms up on and records run several times slower and are left out of the means, and
    so is the profiler's own work (starting and ending its ranges, writing the traces).

    Args:
        dirpath: where traces and the summary go; ``None``: the run's folder (``trainer.log_dir``).
        filename: prefix of the trace and summary files.
        wait: steps skipped before profiling starts.
        warmup: steps profiled but discarded, while the profiler settles.
        active: steps recorded.
        row_limit: rows of the summary table and of the operator tables.
        sort_by_key: the summary's sort column, e.g. ``self_cpu_time_total``; ``None``: CUDA
            time with a GPU, CPU time otherwise.
        record_shapes: record operator input shapes (larger traces).
        profile_memory: record memory allocations (larger traces).
        with_stack: record Python call stacks (much larger traces).

    Example::

        python -m fmnist fit --trainer.profiler fmnist.profiler.TensorBoardProfiler --trainer.profiler.active 5
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "profile",
        wait: NonNegativeInt = 1,
        warmup: NonNegativeInt = 1,
        active: PositiveInt = 3,
        row_limit: PositiveInt = 20,
        sort_by_key: str | None = None,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            row_limit=row_limit,
            sort_by_key=sort_by_key,
            schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            record_shapes=record_shapes,
            profile_memory=profile_memory,
            with_stack=with_stack,
            # per-module ranges hook objects onto every layer that cannot be deep-copied, and weight
            # averaging (callbacks.WeightEMA) deep-copies the model
            record_module_names=False,
            # keep the training steps' events when validation is profiled: the summary covers both
            acc_events=True,
        )
        self.row_limit = row_limit
        self.timer = StepTimer()
        self._cuda = False
        self._running_stage: str | None = None

    @override
    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank=local_rank, log_dir=log_dir)
        self._running_stage = getattr(stage, "value", stage)  # "fit", not "TrainerFn.FITTING"
        self.timer = StepTimer()
        trainer = self._running_trainer()
        self._cuda = trainer is not None and trainer.strategy.root_device.type == "cuda"

    @override
    def start(self, action_name: str) -> None:
        trainer = self._running_trainer()
        before = self._now()
        self.timer.start(action_name, before, training=trainer is not None and trainer.training, idle=self._idle())
        super().start(action_name)
        self.timer.exclude(self._now() - before)  # the PyTorch profiler's own work is no part of the step

    @override
    def stop(self, action_name: str) -> None:
        before = self._now()
        self.timer.stop(action_name, before, idle=self._idle())
        super().stop(action_name)  # at the end of a recorded window: writes the trace
        self.timer.exclude(self._now() - before)

    def _idle(self) -> bool:
        """Whether torch's profiler (Lightning's ``self.profiler``) is neither warming up nor recording."""
        action = getattr(self.profiler, "current_action", ProfilerAction.NONE)  # None before the first action
        return action == ProfilerAction.NONE

    @override
    def summary(self) -> str:
        table = super().summary()
        trainer = self._running_trainer()
        if trainer is None or not trainer.is_global_zero:
            return table
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return table
        stage = self._running_stage
        step = epoch_step(trainer)  # with the last epoch's scalars
        # the run's own writer is closed by now; a second event file in the run folder is still the
        # same run for TensorBoard
        with SummaryWriter(logger.log_dir, filename_suffix=".profiler") as writer:
            if table:
                indented = "\n".join("    " + line for line in table.splitlines())  # a Markdown code block
                writer.add_text(f"Profiler/{stage}", indented, global_step=step)
            if self.function_events:
                operators = operators_markdown(self.function_events.key_averages(), self.row_limit)
                writer.add_text(f"Profiler/{stage}/operators", operators, global_step=step)
            parts = self.timer.breakdown()
            if parts:
                for part, ms in parts.items():
                    writer.add_scalar(f"Profiler/{part}_ms", ms, step)
                writer.add_scalar("Profiler/step_ms", sum(parts.values()), step)
                title = f"ms per training step, mean of {self.timer.batches} steps ({sum(parts.values()):.2f} ms)"
                writer.add_image("Profiler/step_breakdown", bar_chart(list(parts.items()), title=title), step)
        return table

    def _running_trainer(self) -> "pl.Trainer | None":
        # Private, fmnist's one use of Lightning's: the Trainer hands a Profiler the module (and so the
        # trainer) only as this attribute; summary() has no arguments and setup() only the stage and the
        # log folder. The public way tried: a callback beside the profiler, which a user of --trainer.profiler
        # would have to add too. tests/fmnist/test_private_names.py fails with this name when it goes.
        module = self._lightning_module
        try:
            return module.trainer if module is not None else None
        except (RuntimeError, ReferenceError):  # the module is detached from its trainer, or gone
            return None

    def _now(self) -> float:
        if self._cuda:
            torch.cuda.synchronize()
        return time.perf_counter()
