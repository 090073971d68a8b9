"""The study run: the search itself as a TensorBoard run, ``runs/<study>/study/``, beside its trials.

Updated as trials finish (each worker writes its own event file there): every finished trial's
metric, and the best so far, against the trial number (Scalars, ``Trial/<metric>`` and
``Best/<metric>``). At the end of a sweep: which hyperparameter mattered (Optuna's PED-ANOVA
importances, as a bar chart in Images and a table in Text), the best trial and the command that
trains it again (Text), and for a study of two metrics its Pareto front (Images).
``tensorboard --logdir runs/<study>`` shows it next to the trials.
"""

import warnings
from collections.abc import Mapping
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from torch.utils.tensorboard import SummaryWriter

from callbacks.render import bar_chart
from fmnist.sweep.charts import pareto_scatter

#: The study run's folder under ``runs/<study>/``.
FOLDER = "study"


class StudyRun:
    """One worker's writer into the study run; :meth:`trial_finished` is an Optuna callback."""

    def __init__(self, root: Path, metrics: list[str]) -> None:
        self.folder, self.metrics = root / FOLDER, metrics
        self._writer: SummaryWriter | None = None

    def trial_finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Scalars of a trial that just finished: its metric(s), and the best so far."""
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or trial.values is None:
            return
        if self._writer is None:
            self._writer = SummaryWriter(str(self.folder))
        for metric, value in zip(self.metrics, trial.values):
            self._writer.add_scalar(f"Trial/{metric}", value, global_step=trial.number)
        if len(self.metrics) == 1 and trial.state == TrialState.COMPLETE:
            self._writer.add_scalar(f"Best/{self.metrics[0]}", study.best_value, global_step=trial.number)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def importances(study: optuna.Study, metrics: list[str], directions: list[str]) -> dict[str, dict[str, float]]:
    """Optuna's parameter importances (PED-ANOVA, its default) for each metric; empty where they cannot be computed.

    They need at least two complete trials that differ in some parameter, and say something only
    with two parameters or more (one takes all the importance, whatever it does). PED-ANOVA ranks the
    parameters by how much the best trials' values differ from all trials' values; given a metric as
    a target (several metrics), it takes low values as the best, so a maximized metric is negated.
    """
    result = {}
    for index, (metric, direction) in enumerate(zip(metrics, directions)):
        sign = -1.0 if direction == "maximize" else 1.0
        target = None if len(metrics) == 1 else lambda t, i=index, s=sign: s * t.values[i]
        try:
            with warnings.catch_warnings():  # the sign above is what its warning about low target values asks for
                warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes the importances")
                found = optuna.importance.get_param_importances(study, target=target)
            result[metric] = found if len(found) > 1 else {}
        except (ValueError, RuntimeError):  # too few complete trials, or no parameter varies
            result[metric] = {}
    return result


def write_end(
    root: Path,
    study: optuna.Study,
    metrics: list[str],
    found: Mapping[str, Mapping[str, float]],
    best: list[FrozenTrial],
    commands: Mapping[int, str],
) -> None:
    """The end of a sweep into the study run: importances, best (or Pareto) trials, their commands."""
    step = max((t.number for t in study.get_trials(deepcopy=False)), default=0)
    with SummaryWriter(str(root / FOLDER)) as writer:
        for metric, values in found.items():
            if not values:
                continue
            picture = bar_chart(list(values.items()), unit="", title=f"parameter importance for {metric} (PED-ANOVA)")
            writer.add_image(f"Importance/{metric}", picture, global_step=step)
            rows = "\n".join(f"| {name} | {value:.3f} |" for name, value in values.items())
            writer.add_text(f"Importance/{metric}", f"| parameter | importance |\n|---|---|\n{rows}", global_step=step)
        lines = []
        for trial in best:
            scores = ", ".join(f"{m} {v:.4f}" for m, v in zip(metrics, trial.values))
            values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            lines.append(f"- **trial {trial.number}**: {scores}; {values}  \n  `{commands.get(trial.number, '')}`")
        title = "Best trial" if len(metrics) == 1 else "Pareto-optimal trials"
        writer.add_text(title, "\n".join(lines), global_step=step)
        if len(metrics) == 2:
            complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
            front = {t.number for t in best}
            picture = pareto_scatter(
                [(t.values[1], t.values[0]) for t in complete],
                [i for i, t in enumerate(complete) if t.number in front],
                [str(t.number) for t in complete],
                (metrics[1], metrics[0]),
            )
            writer.add_image("Pareto front", picture, global_step=step, dataformats="HWC")
