"""Stopping is an event: Ctrl-C (SIGINT) and ``kill`` (SIGTERM) end a command with one line, 130 or 143.

Lightning notices both during a trainer's run: SIGTERM through its signal handler, which raises
``SIGTERMException`` at the next batch, Ctrl-C as ``KeyboardInterrupt``; either reaches the
callbacks' ``on_exception``. :class:`StopOnSignal` (one per command, :mod:`fmnist.main`) notes the
stop there and, on SIGTERM in ``fit``, saves ``last.ckpt`` of that moment: a preempted run loses
at most the steps since its last batch. :class:`StopSignals` makes a signal that arrives
while no trainer runs (or in a sweep, whose trials start again from scratch) a stop too;
:func:`stop_line` says what stopped the command, where, what the run folder keeps, and the command
that resumes it.
"""

import shlex
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException
from typing_extensions import override

#: Exit statuses of a command stopped by a signal: 128 + the signal's number, as a shell reports it.
STATUS = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}
NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised where the program stands (a ``KeyboardInterrupt``, as every library expects of
    Ctrl-C: Lightning shuts a trainer down gracefully, Optuna fails the trial); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(NAMES[signal.Signals(signum)])
        self.signum = signal.Signals(signum)


class CommandStopped(Exception):
    """A command a signal stopped, ended by its line (``str(err)``) and ``status`` (:mod:`fmnist.exits`)."""

    def __init__(self, line: str, signum: signal.Signals) -> None:
        super().__init__(line)
        self.status = STATUS[signum]


@dataclass
class Stop:
    """Where a signal stopped a trainer: the stage, epoch and step, the run folder and the checkpoint it keeps."""

    signum: signal.Signals
    stage: str | None = None
    epoch: int = 0
    step: int = 0
    run_dir: Path | None = None
    checkpoint: Path | None = None
    saved_now: bool = False


class StopOnSignal(Callback):
    """Notes a stop by SIGTERM or Ctrl-C (``stop``) and keeps a checkpoint of a fit that SIGTERM stops.

    ``running`` says whether a trainer is between its ``setup`` and ``teardown``, where Lightning
    handles SIGTERM itself (:class:`StopSignals` leaves it to Lightning there).
    """

    def __init__(self) -> None:
        self.stop: Stop | None = None
        self.running = False

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self.running = True

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        self.running = False

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        self.running = False
        if isinstance(exception, SIGTERMException):
            signum = signal.SIGTERM
        elif isinstance(exception, KeyboardInterrupt):
            signum = getattr(exception, "signum", signal.SIGINT)
        else:
            return
        stage = trainer.state.fn.value if trainer.state.fn else None
        log_dir = getattr(trainer.logger, "log_dir", None)  # not Trainer.log_dir: a collective under DDP
        dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
        checkpoint = Path(dirpath) / "last.ckpt" if dirpath else None
        stop = Stop(signum, stage, trainer.current_epoch, trainer.global_step, Path(log_dir) if log_dir else None)
        # SIGTERM: Lightning raised it between training batches, so the state is whole (Ctrl-C may land
        # mid-step); not during the epoch's validation, which a resumed run would not do again
        if signum == signal.SIGTERM and trainer.training and checkpoint is not None and trainer.global_step > 0:
            trainer.save_checkpoint(checkpoint, weights_only=False)  # whole: to resume from
            stop.saved_now = True
        stop.checkpoint = checkpoint if checkpoint is not None and checkpoint.is_file() else None
        self.stop = stop


class StopSignals:
    """Inside the block, Ctrl-C and SIGTERM stop the program: the first is remembered (``received``) and
    raised as :class:`Stopped`; later ones, while it cleans up, are only remembered.

    SIGTERM while ``recorder``'s trainer runs is left to Lightning, whose handler calls this one after
    its own: the trainer stops at the next batch (:class:`StopOnSignal` keeps a checkpoint of it).
    The handlers before are put back after the block.
    """

    def __init__(self, recorder: StopOnSignal | None = None) -> None:
        self.recorder, self.received = recorder, None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():  # elsewhere Python takes no handler
            self.previous = {signum: signal.signal(signum, self._handle) for signum in STATUS}
        return self

    def __exit__(self, *exception: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        first = self.received is None
        self.received = self.received or signal.Signals(signum)
        if first and not (signum == signal.SIGTERM and self.recorder is not None and self.recorder.running):
            raise Stopped(signum)


def stop_line(stop: Stop | None, signum: signal.Signals, args: list[str]) -> str:
    """One line: what stopped the command, where, what its run folder keeps and how to go on."""
    line = f"fmnist: stopped by {NAMES[signum]}"
    if stop is None:
        where = "during the export" if args[:1] == ["export"] else "before training began"
        return f"{line} {where}; nothing was written: run the command again"
    line += f" in {stop.stage} at epoch {stop.epoch + 1}, step {stop.step}"
    if stop.stage != "fit" or stop.run_dir is None:
        return f"{line}; nothing is written for an unfinished {stop.stage}: run the command again"
    if stop.checkpoint is None:
        return f"{line}; {stop.run_dir} keeps the logs, no checkpoint yet: run the command again"
    kept = "of this step" if stop.saved_now else "of the last finished epoch"
    resume = shlex.join(["python", "-m", "fmnist", *_without_ckpt_path(args), "--ckpt_path", str(stop.checkpoint)])
    return f"{line}; {stop.run_dir} keeps its logs and {stop.checkpoint.name} {kept}; resume with: {resume}"


def _without_ckpt_path(args: list[str]) -> list[str]:
    """``args`` less a ``--ckpt_path`` given before: ``['fit', '--ckpt_path', 'x']`` gives ``['fit']``."""
    kept, value_next = [], False
    for arg in args:
        if not value_next and arg != "--ckpt_path" and not arg.startswith("--ckpt_path="):
            kept.append(arg)
        value_next = arg == "--ckpt_path"
    return kept
