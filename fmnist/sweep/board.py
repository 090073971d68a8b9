"""The study run: the search itself as a TensorBoard run, ``runs/<study>/study/``, beside its trials.

Updated as trials finish (each worker writes its own event file there): every finished trial's
metric, and the best so far, against the trial number (Scalars, ``Trial/<metric>`` and
``Best/<metric>``); once some configuration has run with two seeds, the seed noise
(``Noise/<metric>``) and the best so far's noise band (``Best/<metric>/low`` and ``/high``, a margin
chart in Custom Scalars). At the end of a sweep: which hyperparameter mattered (Optuna's PED-ANOVA
importances above chance with their intervals, as bars with whiskers in Images and a table in
Text), the noise floor and the significance line, the best trial and the command that trains it
again (Text), and for a study of two metrics its Pareto front (Images).
``tensorboard --logdir runs/<study>`` shows it next to the trials.
"""

from collections.abc import Mapping
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from torch.utils.tensorboard import SummaryWriter

from fmnist.sweep import trust
from fmnist.sweep.charts import interval_bars, pareto_scatter
from fmnist.sweep.verdict import importance_markdown

#: The study run's folder under ``runs/<study>/``.
FOLDER = "study"


class StudyRun:
    """One worker's writer into the study run; :meth:`trial_finished` is an Optuna callback."""

    def __init__(self, root: Path, metrics: list[str]) -> None:
        self.folder, self.metrics = root / FOLDER, metrics
        self._writer: SummaryWriter | None = None
        self._band = False

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
        if trial.state == TrialState.COMPLETE:
            self._noise(study, trial.number)
        self._writer.flush()

    def _noise(self, study: optuna.Study, step: int) -> None:
        """The seed noise so far, and (one metric) the band of ``Z`` standard errors around the best mean."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for index, metric in enumerate(self.metrics):
            noise = trust.noise_floor(complete, index)
            if noise is None:
                return
            self._writer.add_scalar(f"Noise/{metric}", noise.std, global_step=step)
        if len(self.metrics) == 1:
            metric, best = self.metrics[0], study.best_trial
            half = noise.band(len(trust.seed_values(best)))
            self._writer.add_scalar(f"Best/{metric}/low", best.value - half, global_step=step)
            self._writer.add_scalar(f"Best/{metric}/high", best.value + half, global_step=step)
            if not self._band:  # the margin chart's layout, once per writer
                tags = [f"Best/{metric}", f"Best/{metric}/low", f"Best/{metric}/high"]
                self._writer.add_custom_scalars_marginchart(tags, "Study", f"best {metric} so far, ± seed noise")
                self._band = True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def importances(
    study: optuna.Study, metrics: list[str], directions: list[str]
) -> dict[str, dict[str, trust.Importance]]:
    """Each searched option's importance for each metric, with its interval (:func:`~fmnist.sweep.trust.importances`).

    Empty for a metric where they cannot be computed: fewer than 3 complete trials, or a single
    searched option (which takes all of Optuna's shares, whatever it does).
    """
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {
        metric: trust.importances(trials, i, direction)
        for i, (metric, direction) in enumerate(zip(metrics, directions))
    }


def write_end(
    root: Path,
    study: optuna.Study,
    metrics: list[str],
    found: Mapping[str, Mapping[str, trust.Importance]],
    best: list[FrozenTrial],
    commands: Mapping[int, str],
    notes: Mapping[str, str] | None = None,
) -> None:
    """The end of a sweep into the study run: importances, best (or Pareto) trials, their commands, and notes.

    ``notes``: more Text, title to markdown (the noise floor and the significance line).
    """
    step = max((t.number for t in study.get_trials(deepcopy=False)), default=0)
    with SummaryWriter(str(root / FOLDER)) as writer:
        for metric, values in found.items():
            if not values:
                continue
            bars = [(name, v.estimate, v.low, v.high) for name, v in values.items()]
            title = f"importance for {metric} above chance (PED-ANOVA), {trust.LEVEL:.0%} interval"
            writer.add_image(f"Importance/{metric}", interval_bars(bars, title), global_step=step, dataformats="HWC")
            writer.add_text(f"Importance/{metric}", importance_markdown(values), global_step=step)
        for title, text in (notes or {}).items():
            writer.add_text(title, text, global_step=step)
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
