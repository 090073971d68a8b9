"""One trial of ``python -m fmnist sweep``: an ordinary fit in ``runs/<study>/trial_<number>/``.

The fit is built by the same :class:`~fmnist.cli.FashionCLI` as ``python -m fmnist fit``, from the
sweep's fit options plus the sampled values, so every fit option works and the trial's
``config.yaml`` is a complete fit configuration. Two things differ: optuna-integration's pruning
callback reports the metric after each validation epoch (unless the pruner is ``none``), and the
HParams row is written when the trial ends, because only then is its state (complete, pruned,
failed) known.
"""

from pathlib import Path
from typing import Any

import optuna
from optuna_integration import PyTorchLightningPruningCallback
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from callbacks import HyperparameterTable
from callbacks.hparams import run_hparams
from fmnist.cli import FashionCLI, _tensorboard_configs
from fmnist.errors import InputError
from fmnist.space import Param, as_flag

#: Fit flags every trial starts from (a sweep's own flags come after and win): no progress bars
#: and model summaries from trials that may run side by side, and no test after fit: a search
#: chooses on the validation split (``--test_after_fit true`` for a multi-seed study's test accuracy).
TRIAL_DEFAULTS = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
TRIAL_DEFAULTS += ["--test_after_fit", "false"]
#: The trial state shown in HParams -> TensorBoard's session status.
STATUS = {"complete": "STATUS_SUCCESS", "pruned": "STATUS_SUCCESS", "failed": "STATUS_FAILURE"}


#: Trials that count towards n_trials once started: a RUNNING one may still fail and be retried.
STARTED = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class Surplus(Exception):
    """Raised by a trial that another worker's trials made unnecessary (n_trials already started)."""


def fit_args(fit_options: list[str], values: dict[str, Any]) -> list[str]:
    """``python -m fmnist fit`` arguments of one trial."""
    overrides = [arg for key, value in values.items() for arg in (f"--{key}", as_flag(value))]
    return ["fit", *TRIAL_DEFAULTS, *fit_options, *overrides]


class TrialCLI(FashionCLI):
    """``python -m fmnist fit`` for one trial: its own run folder, a pruning callback, no early HParams."""

    def __init__(self, args: list[str], trial: optuna.Trial, metric: str, run_dir: Path, built: list) -> None:
        self.trial, self.metric, self.run_dir, self.built = trial, metric, run_dir, built
        self.table_metrics: list[str] = []  # metric columns of the config's HyperparameterTable
        self.metrics: dict[str, Any] = {}  # what the fit logged, and the test after it when that runs
        super().__init__(args)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        logger = _tensorboard_configs(self.config.fit.trainer.logger)[0].init_args
        logger.save_dir, logger.name, logger.version = (
            str(self.run_dir.parent.parent),
            self.run_dir.parent.name,
            self.run_dir.name,
        )

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        self.built.append(self)

    def after_fit(self) -> None:
        fitted = dict(self.trainer.callback_metrics)  # a test after fit resets the trainer's metrics
        super().after_fit()
        self.metrics = {**fitted, **self.trainer.callback_metrics}

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Any]) -> Any:
        if not isinstance(self.trial.study.pruner, optuna.pruners.NopPruner):  # --pruner none: nothing to report
            callbacks = [*callbacks, PyTorchLightningPruningCallback(self.trial, self.metric)]
        trainer = super()._instantiate_trainer(config, callbacks)
        # the HParams row is written by the sweep when the trial ends, with its state
        for table in [c for c in trainer.callbacks if isinstance(c, HyperparameterTable)]:
            trainer.callbacks.remove(table)
            self.table_metrics += table.metrics
        return trainer


def run_trial(
    trial: optuna.Trial, params: list[Param], fit_options: list[str], metric: str, root: Path, limit: int
) -> float:
    """The objective: fit with the sampled values, return the metric, leave the HParams row."""
    started = trial.study.get_trials(deepcopy=False, states=STARTED)
    if sum(t.number < trial.number for t in started) >= limit:  # workers asked at the same moment
        trial.set_user_attr("surplus", True)
        raise Surplus(f"trial {trial.number} not needed: {limit} trials had already started")
    values = {param.key: param.suggest(trial) for param in params}
    run_dir = root / f"trial_{trial.number}"
    trial.set_user_attr("run_dir", str(run_dir))
    built: list[TrialCLI] = []  # the CLI, kept even when the fit raises inside its constructor
    state = "failed"
    try:
        cli = TrialCLI(fit_args(fit_options, values), trial, metric, run_dir, built)
        value = cli.metrics.get(metric)
        if value is None:
            logged = ", ".join(sorted(cli.metrics))
            raise InputError(f"metric {metric!r} was not logged by the trial; logged scalars: {logged}")
        state = "complete"
        return float(value)
    except optuna.TrialPruned:
        state = "pruned"
        raise
    finally:
        if built:
            _write_row(built[0], trial.number, state, values)


def _write_row(cli: TrialCLI, number: int, state: str, values: dict[str, Any]) -> None:
    """The trial's row in the HParams dashboard: its hyperparameters, trial number and state."""
    params = run_hparams(cli.model, cli.datamodule)
    # sampled options outside the model and data (seed_everything, trainer.*) get a column of their own
    params.update({k: v for k, v in values.items() if not k.startswith(("model.", "data."))})
    write_row(cli.run_dir, params, number, state, [cli.metric, *cli.table_metrics])


def write_row(run_dir: Path, params: dict[str, Any], number: int, state: str, metrics: list[str]) -> None:
    params = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
    params.update(trial=number, trial_state=state)
    experiment, start, end = hparams(params, dict.fromkeys(metrics, 0.0))
    data = plugin_data_pb2.HParamsPluginData.FromString(end.value[0].metadata.plugin_data.content)
    data.session_end_info.status = api_pb2.Status.Value(STATUS[state])
    end.value[0].metadata.plugin_data.content = data.SerializeToString()
    writer = SummaryWriter(str(run_dir))
    for summary in (experiment, start, end):
        writer._get_file_writer().add_summary(summary)
    writer.close()


class RetryKilled(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped, plus its HParams row: state failed.

    The row has the sampled values only (the killed process took the rest with it), and is
    written only where the trial's run folder is, i.e. on the machine that ran it.
    """

    def __init__(self, metric: str, max_retry: int) -> None:
        super().__init__(max_retry=max_retry)
        self.metric = metric

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        super().__call__(study, trial)
        run_dir = Path(trial.user_attrs.get("run_dir", ""))
        if trial.user_attrs.get("run_dir") and run_dir.is_dir():
            write_row(run_dir, dict(trial.params), trial.number, "failed", [self.metric])
