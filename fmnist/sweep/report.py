"""The end of ``python -m fmnist sweep``: the table of trials, the best one, and its ``best.yaml``."""

import statistics
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from fmnist.sweep.study import Sweep, shown_url

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
STATES.update({TrialState.RUNNING: "running", TrialState.WAITING: "waiting"})


def summary(study: optuna.Study, config: Sweep) -> None:
    """Print the trials sorted by the metric, the best trial, mean ± std; write ``best.yaml``."""
    settings = config.settings
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    sign = -1 if settings.direction == "maximize" else 1
    trials.sort(key=lambda t: (t.value is None, t.state != TrialState.COMPLETE, sign * (t.value or 0), t.number))
    keys = [p.key for p in config.params]
    header = ["trial", *keys, settings.metric, "state", "minutes"]
    rows = [
        [str(t.number), *(_cell(t.params.get(k)) for k in keys), _cell(t.value), STATES[t.state], _minutes(t)]
        for t in trials
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    storage = shown_url(settings.storage)  # the password as ***
    print(f"\nstudy {settings.study}: {finished} of {settings.n_trials} trials finished; storage {storage}")
    values = [t.value for t in trials if t.state == TrialState.COMPLETE]
    if not values:
        print("no complete trial yet: no best trial")
        return
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{settings.metric} over {len(values)} complete trials: {statistics.mean(values):.4f} ± {spread:.4f}")
    best = study.best_trial
    chosen = ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())
    print(f"best: trial {best.number}, {settings.metric} {best.value:.4f} ({chosen})")
    path = write_best(best, config)
    if path is not None:
        print(f"best configuration: {path}  (python -m fmnist fit --config {path})")


def trial_line(trial: FrozenTrial, config: Sweep, worker: int) -> None:
    """One line for a trial that just finished: number, sampled values, metric, state, minutes, worker."""
    if trial.user_attrs.get("surplus"):
        return
    values = "  ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
    state = STATES.get(trial.state, trial.state.name.lower())
    print(
        f"trial {trial.number}  {values}  {config.settings.metric} {_cell(trial.value)}  {state}"
        f"  {_minutes(trial)} min  worker {worker}",
        flush=True,
    )


def write_best(best: FrozenTrial, config: Sweep) -> Path | None:
    """The best trial's config.yaml, logging into runs/<study>/best/ instead of over the trial's folder."""
    run_dir = Path(best.user_attrs.get("run_dir", ""))
    source = run_dir / "config.yaml"
    if not source.is_file():
        print(f"best trial's configuration not found: {source} (its run folder is on another machine?)")
        return None
    fit = yaml.safe_load(source.read_text())
    loggers = fit["trainer"]["logger"]
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        args = logger.get("init_args", {}) if isinstance(logger, dict) else {}
        if args.get("version") == run_dir.name:
            args.update(name=f"{args['name']}/best", version=None)
    for flag in ("enable_progress_bar", "enable_model_summary"):  # off in trials only to keep workers' output apart
        if f"--trainer.{flag}" not in config.fit_options:
            fit["trainer"][flag] = True
    values = ", ".join(f"{k}={_cell(v)}" for k, v in best.params.items())
    header = (
        f"# Best trial of study {config.settings.study}: trial {best.number}, {config.settings.metric} {best.value:.4f}\n"
        f"# sampled values: {values}\n# reproduce it with: python -m fmnist fit --config {config.root / 'best.yaml'}\n"
    )
    path = config.root / "best.yaml"
    path.write_text(header + yaml.safe_dump(fit, sort_keys=False))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _minutes(trial: FrozenTrial) -> str:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return "-"
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds() / 60:.1f}"
