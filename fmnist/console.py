"""What fmnist prints of a run: its first line (what runs, on what, where) and, after ``fit``, the summary.

Used by the fit CLI (:mod:`fmnist.cli`); the progress shown in between is Lightning's bar in a
terminal and :class:`~fmnist.progress.LineProgressBar` elsewhere (:func:`wants_progress_lines`).
"""

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import TimeBudget

#: TensorBoard keeps 10 images per tag unless told otherwise; 100 keeps every epoch of a typical run.
SAMPLES_PER_PLUGIN = "images=100"


def first_line(trainer: "pl.Trainer", subcommand: str, ckpt_path: str | None, seed: Any) -> str:
    """fmnist's first line: what runs, on what, and where its run folder is."""
    device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
    epochs = trainer.max_epochs
    what = f"{epochs} epoch{'s' * (epochs != 1)}" if subcommand == "fit" and epochs and epochs > 0 else "the model"
    budget = next((c for c in trainer.callbacks if isinstance(c, TimeBudget)), None)
    if subcommand == "fit" and budget is not None:  # it chooses the epochs once fit has begun
        what = f"up to {what} in {budget.minutes_for(trainer):.3g} min (TimeBudget)"
    source = f" from {shown(ckpt_path)}" if ckpt_path else ""
    folder = f"; run folder {shown(trainer.log_dir)}" if trainer.log_dir else ""
    return (
        f"fmnist {subcommand}: {what}{source}, seed {seed}, on {trainer.num_devices} {device}"
        f" ({trainer.precision}){folder}"
    )


def wants_progress_lines(trainer: Namespace) -> bool:
    """Whether a run configured so (``trainer`` as parsed) prints progress lines instead of a bar.

    Not a terminal (CI, nohup, a file): lines instead of a bar's carriage returns, unless the
    bar is off or the configuration names a progress bar of its own.
    """
    callbacks = trainer.get("callbacks")
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    configured = any("ProgressBar" in str(c.get("class_path", "")) for c in callbacks if isinstance(c, Namespace))
    return trainer.get("enable_progress_bar") is not False and not configured and not sys.stderr.isatty()


def fit_summary(trainer: "pl.Trainer", test_metrics: Mapping[str, float] | None) -> str:
    """Test accuracy, best validation accuracy, run folder, best checkpoint, TensorBoard command."""
    lines = []
    if test_metrics and "Accuracy/test" in test_metrics:
        lines.append(
            f"test accuracy      {float(test_metrics['Accuracy/test']):.4f}"
            f"  (loss {float(test_metrics['Loss/test']):.4f}, official 10k test split)"
        )
    if test_metrics and "Accuracy/test_tta" in test_metrics:
        views = ", ".join(getattr(trainer.lightning_module.hparams, "tta", None) or [])
        lines.append(
            f"test accuracy TTA  {float(test_metrics['Accuracy/test_tta']):.4f}"
            f"  (softmax averaged over the image and its views: {views}; the line above is without)"
        )
    best = _best_checkpoint(trainer)
    if best is not None and best.best_model_score is not None:
        lines.append(f"best val accuracy  {float(best.best_model_score):.4f}")
    if trainer.log_dir:
        lines.append(f"run folder         {shown(trainer.log_dir)}")
    if best is not None and best.best_model_path:
        lines.append(f"best checkpoint    {shown(best.best_model_path)}")
    logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
    if logger is not None:
        command = f"{tensorboard_command()} --logdir {shown(logger.save_dir)} --samples_per_plugin {SAMPLES_PER_PLUGIN}"
        lines.append(f"TensorBoard        {command}")
    return "\n".join(lines)


def _best_checkpoint(trainer: "pl.Trainer") -> ModelCheckpoint | None:
    """The checkpoint callback that keeps the best model by a monitored metric."""
    return next((cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor), None)


def tensorboard_command() -> str:
    """``tensorboard`` when it is on the PATH, else the one installed beside this Python (e.g. ``.venv/bin/tensorboard``)."""
    beside = Path(sys.executable).with_name("tensorboard")
    on_path = shutil.which("tensorboard")
    if on_path and Path(on_path).resolve() == beside.resolve() or not beside.exists():
        return "tensorboard"
    return shown(beside)


def shown(path: str | os.PathLike) -> str:
    """A path relative to the current folder when it lies inside it, so it can be pasted as is."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
