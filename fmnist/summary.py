"""What ``python -m fmnist fit`` prints when it is done: the result, and where to look at it."""

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

#: TensorBoard keeps 10 images per tag unless told otherwise; 100 keeps every epoch of a typical run.
SAMPLES_PER_PLUGIN = "images=100"


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
