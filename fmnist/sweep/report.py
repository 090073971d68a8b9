"""The end of ``python -m fmnist sweep``: the table of trials, the best one, and its ``best.yaml``."""

import statistics
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from fmnist.runs import tensorboard_configs
from fmnist.sweep import board, verdict
from fmnist.sweep.storage import shown_url
from fmnist.sweep.study import Sweep
from fmnist.sweep.trial import TRIAL_ONLY
from fmnist.sweep.trust import SEED_VALUES

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
STATES.update({TrialState.RUNNING: "running", TrialState.WAITING: "waiting"})


def summary(study: optuna.Study, config: Sweep) -> None:
    """Print the trials sorted by the (first) metric, mean ± std, what mattered and the best trial(s).

    Writes ``best.yaml`` (with several metrics: ``best_<n>.yaml`` for each Pareto-optimal trial; with
    ``pick``, ``best.yaml`` from that trial) and the end of the study run (:mod:`~fmnist.sweep.board`).
    """
    settings = config.settings
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]
    sign = -1 if settings.directions[0] == "maximize" else 1
    trials.sort(key=lambda t: (t.values is None, t.state != TrialState.COMPLETE, sign * _value(t, 0), t.number))
    _print_table(trials, [p.key for p in config.params], settings.metrics)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    storage = shown_url(settings.storage)  # the password as ***
    print(f"\nstudy {settings.study}: {finished} of {settings.n_trials} trials finished; storage {storage}")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print("no complete trial yet: no best trial")
        return
    _print_means(complete, settings.metrics)
    found = board.importances(study, settings.metrics, settings.directions)
    for metric, importance in found.items():
        if importance:
            ranked = ", ".join(f"{name} {value.share:.2f}" for name, value in importance.items())
            print(f"what mattered for {metric} (PED-ANOVA importance): {ranked}")
            print("\n".join(verdict.importance_lines(metric, importance, len(complete))))
    best = (
        [study.best_trial]
        if len(settings.metrics) == 1
        else sorted(study.best_trials, key=lambda t: sign * t.values[0])
    )
    commands = _write_best(best, complete, config)
    notes = _trust(complete, config, best)
    board.write_end(config.root, study, settings.metrics, found, best, commands, notes)
    print(f"study run: {config.root / board.FOLDER}  (tensorboard --logdir {config.root})")


def _trust(complete: list[FrozenTrial], config: Sweep, best: list[FrozenTrial]) -> dict[str, str]:
    """Print the noise floor and the significance line; the same for the study run's Text."""
    settings = config.settings
    chosen = next((t for t in complete if t.number == settings.pick), None)
    if chosen is None and len(settings.metrics) == 1:
        chosen = best[0]
    prefix = "" if len(settings.metrics) == 1 else f"{settings.metrics[0]}: "
    noise = verdict.noise_lines(complete, settings.metrics)
    line = verdict.significance_line(complete, settings.metrics[0], settings.directions[0], chosen, prefix)
    print("\n".join([*noise, line]))
    return {"Noise floor": "  \n".join(noise), "Significance": line}


def _print_table(trials: list[FrozenTrial], keys: list[str], metrics: list[str]) -> None:
    header = ["trial", *keys, *metrics, "state", "minutes"]
    rows = [
        [
            str(t.number),
            *(_cell(t.params.get(k)) for k in keys),
            *(_cell(None if t.values is None else t.values[i]) for i in range(len(metrics))),
            STATES[t.state],
            _minutes(t),
        ]
        for t in trials
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _print_means(complete: list[FrozenTrial], metrics: list[str]) -> None:
    for i, metric in enumerate(metrics):
        values = [t.values[i] for t in complete]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        digits = 0 if all(_count(v) for v in values) else 4  # counts, or accuracies and losses
        print(
            f"{metric} over {len(values)} complete trials: {statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"
        )


def _write_best(best: list[FrozenTrial], complete: list[FrozenTrial], config: Sweep) -> dict[int, str]:
    """``best.yaml`` (or ``best_<n>.yaml`` per Pareto-optimal trial, and the picked trial's); the command of each."""
    settings = config.settings
    metrics, directions = settings.metrics, settings.directions
    commands = {}
    if len(metrics) > 1:
        print(f"Pareto-optimal trials ({', '.join(f'{m} {d}' for m, d in zip(metrics, directions))}):")
    for trial in best:
        scores = ", ".join(f"{m} {_score(v)}" for m, v in zip(metrics, trial.values))
        chosen = ", ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
        name = "best.yaml" if len(metrics) == 1 else f"best_{trial.number}.yaml"
        path = write_best(trial, config, name)
        commands[trial.number] = f"python -m fmnist fit --config {path}" if path else ""
        print(
            f"{'best: ' if len(metrics) == 1 else '  '}trial {trial.number}, {scores} ({chosen})  {commands[trial.number]}"
        )
    if settings.pick is not None:
        picked = next((t for t in complete if t.number == settings.pick), None)
        if picked is None:
            print(
                f"pick: trial {settings.pick} is not a complete trial of study {settings.study}: no best.yaml from it"
            )
        else:
            path = write_best(picked, config, "best.yaml")
            commands[picked.number] = f"python -m fmnist fit --config {path}" if path else ""
            print(f"picked: trial {picked.number}  {commands[picked.number]}")
    return commands


def _value(trial: FrozenTrial, index: int) -> float:
    return 0.0 if trial.values is None else trial.values[index]


def trial_line(trial: FrozenTrial, config: Sweep, worker: int) -> None:
    """One line for a trial that just finished: number, sampled values, metric, state, minutes, worker."""
    if trial.user_attrs.get("surplus"):
        return
    values = "  ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
    results = trial.values or [None] * len(config.settings.metrics)
    scores = "  ".join(f"{m} {_cell(v)}" for m, v in zip(config.settings.metrics, results))
    if SEED_VALUES in trial.user_attrs:
        scores += f" (mean of {len(trial.user_attrs[SEED_VALUES])} seeds)"
    state = STATES.get(trial.state, trial.state.name.lower())
    print(
        f"trial {trial.number}  {values}  {scores}  {state}  {_minutes(trial)} min  worker {worker}",
        flush=True,
    )


def write_best(trial: FrozenTrial, config: Sweep, name: str = "best.yaml") -> Path | None:
    """A trial's config.yaml as ``runs/<study>/<name>``, logging into runs/<study>/<stem>/, not over the trial."""
    run_dir = Path(trial.user_attrs.get("run_dir", ""))
    source = run_dir / "config.yaml"
    if not source.is_file():
        print(f"trial {trial.number}'s configuration not found: {source} (its run folder is on another machine?)")
        return None
    fit = yaml.safe_load(source.read_text())
    for args in tensorboard_configs(fit["trainer"]["logger"]):
        if args["version"] == run_dir.name:  # runs/<study>/<stem>/, from a trial's folder or a seed's inside it
            args.update(save_dir=str(config.root.parent), name=f"{config.root.name}/{Path(name).stem}", version=None)
    for option in TRIAL_ONLY:  # off in trials only, as fit has them unless the sweep's flags set them
        if f"--{option}" not in config.fit_options:
            section, _, key = option.rpartition(".")
            (fit[section] if section else fit)[key] = True
    values = ", ".join(f"{k}={_cell(v)}" for k, v in trial.params.items())
    scores = ", ".join(f"{m} {_score(v)}" for m, v in zip(config.settings.metrics, trial.values))
    path = config.root / name
    if SEED_VALUES in trial.user_attrs:
        scores += f" (the mean of {len(trial.user_attrs[SEED_VALUES])} seeds; this file trains the first)"
    header = (
        f"# Trial {trial.number} of study {config.settings.study}: {scores}\n"
        f"# sampled values: {values}\n# reproduce it with: python -m fmnist fit --config {path}\n"
    )
    path.write_text(header + yaml.safe_dump(fit, sort_keys=False))
    return path


def _cell(value: Any) -> str:
    """A value in the table and the trial lines: counts (such as Model/params) whole, other floats to 4 digits.

    >>> _cell(0.86677), _cell(631306.0), _cell(None), _cell(64)
    ('0.8668', '631306', '-', '64')
    """
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if _count(value) else f"{value:.4g}"
    return str(value)


def _score(value: float) -> str:
    """A metric in the summary: whole counts as they are, other values to 4 decimals (accuracies)."""
    return f"{value:.0f}" if _count(value) else f"{value:.4f}"


def _count(value: float) -> bool:
    """Whether a metric's value is a count (``Model/params``), not a share or a loss that happens to be whole."""
    return float(value).is_integer() and abs(value) >= 1e4


def _minutes(trial: FrozenTrial) -> str:
    if trial.datetime_start is None or trial.datetime_complete is None:
        return "-"
    return f"{(trial.datetime_complete - trial.datetime_start).total_seconds() / 60:.1f}"
