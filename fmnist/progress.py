"""Progress as plain lines, for output that is not a terminal: CI logs, ``nohup``, SLURM, ``tee``.

``python -m fmnist`` uses it instead of Lightning's bar when standard error is not a terminal
(the bar's carriage returns would fill such a file with every step, twice); on a terminal the
bar stays. One line per training epoch, with its metrics and speed, and a line every quarter of
an epoch that takes longer than a minute.
"""

import sys
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ProgressBar
from torch import Tensor
from typing_extensions import override

from callbacks.throughput import count_images

#: Within a long epoch, a line at each of these fractions of its batches.
MILESTONES = (0.25, 0.5, 0.75)
#: An epoch whose first quarter took longer than this many seconds gets the in-epoch lines.
LONG_EPOCH_S = 15.0
#: Scalars the lines leave out (callbacks.EpochThroughput's): the speed they measure themselves, so that
#: they have it without that callback too, and the model's cost, the same at every epoch.
NOT_SHOWN = ("Time/", "Throughput/", "Model/")


class LineProgressBar(ProgressBar):
    """Lightning's progress bar interface, written as whole lines on standard error.

    Example output::

        epoch 1/5  Loss/train 0.5346  Accuracy/train 0.8077  Loss/val 0.3884  Accuracy/val 0.8582  12.3 s, 4470 images/s
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._start = 0.0
        self._images = 0
        self._trained_s = 0.0
        self._said: set[float] = set()

    @override
    def disable(self) -> None:
        self._enabled = False

    @override
    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, trainer: "pl.Trainer", line: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(line, file=sys.stderr, flush=True)

    @override
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._start, self._images, self._trained_s, self._said = time.perf_counter(), 0, 0.0, set()

    @override
    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._images += count_images(batch)
        self._trained_s = time.perf_counter() - self._start  # images/s counts training batches, not validation
        total = self.total_train_batches
        if not isinstance(total, int) or total <= 0:
            return
        done = (batch_idx + 1) / total
        seconds = time.perf_counter() - self._start
        for milestone in MILESTONES:
            if milestone not in self._said and done >= milestone:
                self._said.add(milestone)
                if seconds / done * MILESTONES[0] > LONG_EPOCH_S:
                    self._print(
                        trainer, f"epoch {self._epoch(trainer)}  {milestone:.0%} of its batches, {seconds:.0f} s"
                    )

    @override
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        seconds = time.perf_counter() - self._start
        metrics = "  ".join(f"{name} {value:.4f}" for name, value in self._scalars(trainer).items())
        speed = f"{seconds:.1f} s"
        if self._trained_s > 0 and self._images:
            speed += f", {self._images / self._trained_s:.0f} images/s"
        self._print(trainer, f"epoch {self._epoch(trainer)}  {metrics}  {speed}".replace("    ", "  "))

    @override
    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.state.fn == "validate":
            self._print(trainer, f"validate  {self._line(trainer)}")

    @override
    def on_test_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._print(trainer, f"test  {self._line(trainer)}")

    @override
    def on_predict_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._images = 0

    @override
    def on_predict_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._images += count_images(batch)

    @override
    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._print(trainer, f"predict  {self._images} images")

    def _line(self, trainer: "pl.Trainer") -> str:
        return "  ".join(f"{name} {value:.4f}" for name, value in self._scalars(trainer).items())

    @staticmethod
    def _epoch(trainer: "pl.Trainer") -> str:
        limit = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        return f"{trainer.current_epoch + 1}/{limit}" if limit else str(trainer.current_epoch + 1)

    @staticmethod
    def _scalars(trainer: "pl.Trainer") -> dict[str, float]:
        """The logged scalars, by name, but for speed and cost."""
        return {
            name: float(value)
            for name, value in sorted(trainer.callback_metrics.items())
            if isinstance(value, Tensor) and value.numel() == 1 and not name.startswith(NOT_SHOWN)
        }
