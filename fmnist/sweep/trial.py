"""One trial of ``python -m fmnist sweep``: an ordinary fit in ``runs/<study>/trial_<number>/``.

The fit is built by the same :class:`~fmnist.cli.FashionCLI` as ``python -m fmnist fit``, from the
sweep's fit options plus the sampled values, so every fit option works and the trial's
``config.yaml`` is a complete fit configuration. Two things differ: optuna-integration's pruning
callback reports the metric after each validation epoch (unless the pruner is ``none``), and the
HParams row is written when the trial ends, because only then is its state (complete, pruned,
failed) known.

With ``repeats: k`` a trial fits its sampled values k times, with ``seed_everything`` and the k - 1
seeds after it, into ``trial_<number>/seed_<seed>/``; its value is their mean, and only the first
seed reports to the pruner (docs/sweeps.md says why).
"""

import contextvars
import statistics
from pathlib import Path
from typing import Any

import optuna
from optuna_integration import PyTorchLightningPruningCallback

from callbacks import HyperparameterTable
from callbacks.hparams import run_hparams
from fmnist.cli import FashionCLI
from fmnist.errors import InputError
from fmnist.sweep.space import as_flag
from fmnist.sweep.study import Sweep, write_row
from fmnist.sweep.trust import SEED_VALUES

#: Fit options every trial starts from, off where fit has them on (a sweep's own flags come after
#: and win): no progress bars and model summaries from trials that may run side by side, and no
#: test after fit: a search chooses on the validation split (``--test_after_fit true`` for a
#: multi-seed study's test accuracy). ``best.yaml`` switches them on again (report.write_best).
TRIAL_ONLY = ("trainer.enable_progress_bar", "trainer.enable_model_summary", "test_after_fit")
TRIAL_DEFAULTS = [arg for option in TRIAL_ONLY for arg in (f"--{option}", "false")]
#: Trials that count towards n_trials once started: a RUNNING one may still fail and be retried.
STARTED = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class Surplus(Exception):
    """Raised by a trial that another worker's trials made unnecessary (n_trials already started)."""


def fit_args(fit_options: list[str], values: dict[str, Any]) -> list[str]:
    """The fit arguments of one trial (``python -m fmnist fit`` without the ``fit``)."""
    overrides = [arg for key, value in values.items() for arg in (f"--{key}", as_flag(value))]
    return [*TRIAL_DEFAULTS, *fit_options, *overrides]


def run_trial(trial: optuna.Trial, sweep: Sweep) -> float | tuple[float, ...]:
    """The objective: fit the sampled values (once per seed with ``repeats``), return the metric(s), mean over seeds."""
    started = trial.study.get_trials(deepcopy=False, states=STARTED)
    if sum(t.number < trial.number for t in started) >= sweep.settings.n_trials:  # workers asked at the same moment
        trial.set_user_attr("surplus", True)
        raise Surplus(f"trial {trial.number} not needed: {sweep.settings.n_trials} trials had already started")
    values = {param.key: param.suggest(trial) for param in sweep.params}
    seeds = repeat_seeds(sweep, values)
    folder = sweep.root / f"trial_{trial.number}"
    run_dirs = [folder] if seeds == [None] else [folder / f"seed_{seed}" for seed in seeds]
    trial.set_user_attr("run_dir", str(run_dirs[0]))  # the run best.yaml trains again
    # pruning judges the first seed: before the others cost anything, against the same seed of every trial
    runs = [
        fit_run(trial, sweep, values, seed, run_dir, i == 0) for i, (seed, run_dir) in enumerate(zip(seeds, run_dirs))
    ]
    if len(runs) > 1:
        trial.set_user_attr(SEED_VALUES, runs)
    scores = tuple(statistics.fmean(run[i] for run in runs) for i in range(len(sweep.settings.metrics)))
    return scores[0] if len(scores) == 1 else scores


def repeat_seeds(sweep: Sweep, values: dict[str, Any]) -> list[int | None]:
    """The seeds of a trial's runs: ``[None]`` (the fit's own) without repeats, else the fit's seed, +1, ..."""
    if sweep.settings.repeats == 1:
        return [None]
    parse = contextvars.copy_context().run  # as in fit_run: nothing of this parse outlives it
    seed = parse(FashionCLI, fit_args(sweep.fit_options, values), run=False, instantiate=False).config.seed_everything
    first = seed if isinstance(seed, int) and not isinstance(seed, bool) else 0  # true: Lightning drew one
    return [first + i for i in range(sweep.settings.repeats)]


def fit_run(
    trial: optuna.Trial, sweep: Sweep, values: dict[str, Any], seed: int | None, run_dir: Path, prune: bool
) -> tuple[float, ...]:
    """One fit of a trial, in ``run_dir``, with its HParams row; the metric(s) it logged."""
    wanted = sweep.settings.metrics
    pruning = (
        [PyTorchLightningPruningCallback(trial, wanted[0])]  # pruners follow one metric
        if prune and not isinstance(trial.study.pruner, optuna.pruners.NopPruner)
        else []
    )
    args = fit_args(sweep.fit_options, values) + ([] if seed is None else ["--seed_everything", str(seed)])
    # parsed in a copy of the context: jsonargparse leaves the parser of its last parse in a ContextVar
    # (subclass_arg_parser), and the parser holds LightningCLI's instantiators, which hold the CLI with its
    # trainer, model and data; in the worker's own context they would outlive the trial
    defaults = {"callbacks": pruning}
    cli = contextvars.copy_context().run(FashionCLI, args, run=False, run_dir=run_dir, trainer_defaults=defaults)
    # the HParams row is written here when the trial ends, with its state, not by the table when it starts;
    # assigning trainer.callbacks is how Lightning's own Tuner adds and removes its callbacks
    tables = [c for c in cli.trainer.callbacks if isinstance(c, HyperparameterTable)]
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if c not in tables]
    state = "failed"
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        metrics = dict(cli.trainer.callback_metrics)  # the test after fit resets the trainer's metrics
        metrics.update(cli.test_after_fit() or {})
        cli.close_loggers()
        missing = [metric for metric in wanted if metrics.get(metric) is None]
        if missing:
            raise InputError(
                f"metric {missing[0]!r} was not logged by the trial; logged scalars: {', '.join(sorted(metrics))}"
            )
        state = "complete"
        return tuple(float(metrics[metric]) for metric in wanted)
    except optuna.TrialPruned:
        state = "pruned"
        raise
    finally:
        params = run_hparams(cli.trainer, cli.model)
        # sampled options outside the model and data (trainer.*) get a column of their own; the seed has one
        params.update({k: v for k, v in values.items() if not k.startswith(("model.", "data.", "seed_everything"))})
        write_row(
            run_dir, params, trial.number, state, [*wanted, *(m for t in tables for m in t.metrics if m not in wanted)]
        )
