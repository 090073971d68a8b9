"""The run folder: ``<save_dir>/<name>/version_<n>/``, its name, its layout, and runs found again.

A run's folder is its TensorBoard logger's: ``trainer.logger.init_args.save_dir``, ``name`` (a
template filled from the configuration, :func:`run_name`) and ``version``. In it:
``checkpoints/`` (``best-*.ckpt``, ``last.ckpt``), ``hparams.yaml``, ``config.yaml`` and the event
files. ``--ckpt_path best|last`` finds the newest run of the same name (:func:`newest_checkpoint`);
a checkpoint inside a run folder is evaluated or resumed in that run (:func:`run_of`). Used by the
fit CLI (:mod:`fmnist.cli`) and by the sweep, whose trials are run folders of their own.
"""

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from fmnist.errors import InputError
from fmnist.logger import RunLogger

#: Where a run keeps its checkpoints, and the file Lightning writes its hyperparameters to.
CHECKPOINTS, HPARAMS = "checkpoints", "hparams.yaml"
#: ``--ckpt_path`` values that name a checkpoint of the newest run with the same run name.
CHECKPOINT_SHORTHANDS = {"last": "last.ckpt", "best": "best-*.ckpt"}


def tensorboard_configs(logger: Any) -> list[MutableMapping[str, Any]]:
    """The ``init_args`` of the ``trainer.logger`` entries that take TensorBoardLogger's ``save_dir``, ``name``, ``version``.

    ``logger`` as parsed (jsonargparse ``Namespace``) or as read from a ``config.yaml`` (``dict``).

    >>> tensorboard_configs({"class_path": "fmnist.logger.RunLogger", "init_args": {"save_dir": "runs", "name": "a", "version": None}})
    [{'save_dir': 'runs', 'name': 'a', 'version': None}]
    >>> tensorboard_configs([{"class_path": "CSVLogger", "init_args": {"save_dir": "runs"}}])
    []
    """
    entries = logger if isinstance(logger, list) else [logger]
    found = []
    for entry in entries:
        args = entry.get("init_args") if isinstance(entry, (Namespace, dict)) else None
        if isinstance(args, (Namespace, dict)) and all(key in args for key in ("save_dir", "name", "version")):
            found.append(args)
    return found


def log_into(loggers: list[MutableMapping[str, Any]], run_dir: Path) -> None:
    """Point the first TensorBoard logger at an existing or chosen run folder ``<save_dir>/<name>/<version>``."""
    if loggers:
        logger = loggers[0]
        logger["save_dir"], logger["name"], logger["version"] = (
            str(run_dir.parent.parent),
            run_dir.parent.name,
            run_dir.name,
        )


def run_name(template: str | None, config: Namespace) -> str | None:
    """Fill ``{model.lr}``-style placeholders of a run name from the parsed configuration."""
    if not template or "{" not in template:
        return template
    try:
        return template.format(model=config.model, data=config.data, trainer=config.trainer)
    except (AttributeError, KeyError, IndexError, ValueError) as err:
        raise InputError(
            f"trainer.logger name {template!r}: cannot fill it in ({err}); placeholders look like"
            " {model.lr} or {data.batch_size}"
        ) from err


def newest_checkpoint(shorthand: str, loggers: list[MutableMapping[str, Any]]) -> Path:
    """The newest ``last.ckpt`` or ``best-*.ckpt`` among the runs with the first logger's name."""
    if not loggers:
        raise InputError(f"--ckpt_path {shorthand} needs a TensorBoard logger to know where runs are")
    runs = Path(loggers[0]["save_dir"]) / (loggers[0]["name"] or "")
    pattern = f"*/{CHECKPOINTS}/{CHECKPOINT_SHORTHANDS[shorthand]}"
    found = sorted(runs.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not found:
        raise InputError(f"--ckpt_path {shorthand}: no checkpoint matches {runs / pattern}")
    return found[-1]


def run_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file lies in, ``None`` for one outside any fmnist run."""
    run_dir = checkpoint.parent.parent
    return run_dir if checkpoint.parent.name == CHECKPOINTS and (run_dir / HPARAMS).is_file() else None


class DiscardFailedRun(Callback):
    """A run that stops on the user's input before its first training step leaves no run folder behind.

    Such errors (a damaged data file, an impossible setting Lightning finds) are :class:`InputError`
    or Lightning's ``MisconfigurationException``; the folder a :class:`~fmnist.logger.RunLogger`
    made for the run is deleted. A run that trained keeps its folder (a damaged test file found by
    the test after fit), and so does an existing run that a checkpoint's test logs into.
    """

    @override
    def on_exception(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException) -> None:
        if isinstance(exception, (InputError, MisconfigurationException)) and trainer.global_step == 0:
            for logger in trainer.loggers:
                if isinstance(logger, RunLogger):
                    logger.discard()
