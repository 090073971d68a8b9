"""The run's hyperparameters and final metrics in TensorBoard's HParams tab.

On by default in ``python -m fmnist fit``, so that runs with different settings compare in one table.
"""

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from typing_extensions import override

from callbacks.tensorboard import event_file, find_tensorboard


class HyperparameterTable(Callback):
    """Register the run in the HParams dashboard with its hyperparameters and metric columns.

    The hyperparameters are those of the LightningModule and the LightningDataModule
    (``save_hyperparameters``). The metric columns are scalar tags the run logs anyway; the
    dashboard shows each one's latest value, e.g. the best validation accuracy so far. Unlike
    ``TensorBoardLogger.log_hyperparams(params, metrics)``, this writes no placeholder metric
    values (no ``hp_metric = -1``): the table only shows numbers the run really measured.

    Args:
        metrics: scalar tags shown as metric columns.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[HyperparameterTable(["Accuracy/val_best", "Loss/val"])], logger=False)
    """

    def __init__(self, metrics: Sequence[str] = ("Accuracy/val_best", "Loss/val")) -> None:
        if not metrics:
            raise MisconfigurationException("HyperparameterTable needs at least one metric tag")
        self.metrics = list(metrics)

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        write_session(writer, run_hparams(trainer, pl_module), self.metrics)


def write_session(
    writer: SummaryWriter, params: Mapping[str, Any], metrics: Sequence[str], status: str | None = None
) -> None:
    """Register the writer's run in the HParams dashboard: its hyperparameters and metric columns.

    Args:
        writer: the run's ``SummaryWriter``; the session goes into its own event file.
        params: column name to value; values other than ``bool``, ``int``, ``float`` and ``str``
            are shown as text.
        metrics: scalar tags the run logs, shown as metric columns with their latest value.
        status: how the run ended, as TensorBoard's session status (``"STATUS_SUCCESS"``,
            ``"STATUS_FAILURE"``, ...) when it is known; ``None`` leaves torch's default.
    """
    params = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
    experiment, start, end = hparams(params, dict.fromkeys(metrics, 0.0))
    if status is not None:
        data = plugin_data_pb2.HParamsPluginData.FromString(end.value[0].metadata.plugin_data.content)
        data.session_end_info.status = api_pb2.Status.Value(status)
        end.value[0].metadata.plugin_data.content = data.SerializeToString()
    # SummaryWriter's add_hparams writes into a new sub-run of its own, so the table's row would not be this run's
    with event_file(writer) as file_writer:
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)


def run_hparams(trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> dict[str, Any]:
    """The HParams columns of a run: what the user chose.

    The module's and the datamodule's ``save_hyperparameters`` (classes with the arguments that
    differ from their defaults, no bookkeeping such as ``_instantiator``), the seed given to
    ``seed_everything`` and the trainer's precision.
    """
    params = dict(_flatten(pl_module.hparams_initial))
    if trainer.datamodule is not None:
        params.update(_flatten(trainer.datamodule.hparams_initial))
    seed = os.environ.get("PL_GLOBAL_SEED")  # where Lightning's seed_everything leaves the seed
    if seed is not None:
        params["seed"] = int(seed)
    params["precision"] = str(trainer.precision)
    return params


def chosen_hparams(values: Mapping[str, Any]) -> dict[str, Any]:
    """Nested hyperparameters as a user chose them, for ``hparams.yaml``.

    Keys with a leading underscore (Lightning's bookkeeping) go; a class given as configuration
    keeps its ``class_path`` and only the ``init_args`` that differ from the class's defaults.

    >>> chosen_hparams({"lr": 0.1, "_instantiator": "x", "optimizer": {"class_path": "torch.optim.SGD",
    ...     "init_args": {"lr": 0.1, "momentum": 0.9, "dampening": 0, "nesterov": False}}})
    {'lr': 0.1, 'optimizer': {'class_path': 'torch.optim.SGD', 'init_args': {'lr': 0.1, 'momentum': 0.9}}}
    """
    chosen: dict[str, Any] = {}
    for key, value in values.items():
        if str(key).startswith("_"):
            continue
        if isinstance(value, Mapping) and "class_path" in value:
            arguments = _non_defaults(value["class_path"], value.get("init_args") or {})
            value = {
                "class_path": value["class_path"],
                **({"init_args": chosen_hparams(arguments)} if arguments else {}),
            }
        elif isinstance(value, Mapping):
            value = chosen_hparams(value)
        chosen[key] = value
    return chosen


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Any:
    """``(name, value)`` pairs TensorBoard accepts.

    A class given as configuration reads ``optimizer: torch.optim.SGD`` plus one column per
    argument that differs from the class's default (``optimizer.momentum``), not one per argument.
    """
    for key, value in values.items():
        if key.startswith("_"):
            continue  # Lightning's bookkeeping, such as _instantiator
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and "class_path" in value:
            yield name, str(value["class_path"])
            yield from _flatten(_non_defaults(value["class_path"], value.get("init_args") or {}), f"{name}.")
        elif isinstance(value, Mapping):
            yield from _flatten(value, f"{name}.")
        elif isinstance(value, (bool, int, float, str)):
            yield name, value
        else:
            yield name, str(value)


def _non_defaults(class_path: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    try:
        module, _, name = class_path.rpartition(".")
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return dict(arguments)

    def default(name: str) -> Any:
        value = parameters[name].default
        return list(value) if isinstance(value, tuple) else value  # YAML has lists, signatures tuples

    return {k: v for k, v in arguments.items() if k not in parameters or default(k) != v}
