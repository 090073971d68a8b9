"""How far to trust what a sweep found: the seed noise, importances with intervals, differences that count.

Pure functions of Optuna's finished trials, no files: the end of ``python -m fmnist sweep``
(:mod:`~fmnist.sweep.verdict`) and the study run (:mod:`~fmnist.sweep.board`) use them.
``docs/sweeps.md`` explains the statistics:

- the **noise floor** is the pooled standard deviation of a metric between seeds of one
  configuration: the seeds of each trial (``repeats``), and trials that differ only in their seed;
- two trials' values (means of ``n_a`` and ``n_b`` seeds) differ by more than the noise when the
  difference exceeds ``Z`` standard errors, ``Z * std * sqrt(1/n_a + 1/n_b)``;
- an option's **importance** is Optuna's raw (unnormalized) importance minus the importance its
  values get when shuffled across the trials (a permutation null: what chance gives an option
  that does nothing), with an interval from the null's quantiles; one that reaches zero says
  the option is indistinguishable from noise.
"""

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

#: The user attribute where a trial of several seeds keeps each seed's metric values, one list per seed.
SEED_VALUES = "seed_values"
#: The fit option the repeats set; trials that differ only in it are the same configuration.
SEED_OPTION = "seed_everything"
#: Standard errors a difference must exceed to count: about a two-sided test at 5% (a 95% band).
Z = 2.0
#: Shuffles of the permutation null, and the interval's coverage.
SHUFFLES, LEVEL = 200, 0.95


def seed_values(trial: FrozenTrial, index: int = 0) -> list[float]:
    """A trial's metric (``index``) for each seed it was trained with; one value without repeats.

    >>> trial = optuna.trial.create_trial(value=0.5, user_attrs={SEED_VALUES: [[0.4], [0.6]]})
    >>> seed_values(trial), seed_values(optuna.trial.create_trial(value=0.5))
    ([0.4, 0.6], [0.5])
    """
    runs = trial.user_attrs.get(SEED_VALUES)
    return [float(run[index]) for run in runs] if runs else [float(trial.values[index])]


@dataclass(frozen=True)
class Noise:
    """The standard deviation of a metric between seeds of one configuration, and what it rests on."""

    std: float
    runs: int  # seed runs of configurations trained more than once
    configurations: int

    def margin(self, n_a: int, n_b: int) -> float:
        """The smallest difference between a mean of ``n_a`` seeds and one of ``n_b`` that counts.

        >>> round(Noise(0.001, 8, 4).margin(2, 2), 6)
        0.002
        """
        return Z * self.std * math.sqrt(1 / n_a + 1 / n_b)

    def band(self, n: int) -> float:
        """Half the width of the noise band around a mean of ``n`` seeds (``Z`` standard errors)."""
        return Z * self.std / math.sqrt(n)


def noise_floor(trials: Sequence[FrozenTrial], index: int = 0) -> Noise | None:
    """The pooled standard deviation between seeds, over complete trials; ``None`` with no configuration seen twice.

    A configuration is a trial's values without ``seed_everything``: its seed runs, and those of
    trials with the same values, are samples of one mean. Pooled: ``sqrt(sum of squared deviations
    from each configuration's mean / sum of (runs - 1))``.

    >>> make = lambda lr, runs: optuna.trial.create_trial(params={"lr": lr}, value=sum(runs) / len(runs),
    ...     distributions={"lr": optuna.distributions.FloatDistribution(0.0, 1.0)},
    ...     user_attrs={SEED_VALUES: [[r] for r in runs]})
    >>> noise = noise_floor([make(0.1, [0.80, 0.82]), make(0.2, [0.70, 0.72, 0.74])])
    >>> round(noise.std, 4), noise.runs, noise.configurations  # sqrt((2 * 0.01**2 + 2 * 0.02**2) / (1 + 2))
    (0.0183, 5, 2)
    >>> noise_floor([make(0.1, [0.8])]) is None
    True
    """
    groups: dict[tuple, list[float]] = defaultdict(list)
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.values is not None:
            key = tuple(sorted((k, repr(v)) for k, v in trial.params.items() if k != SEED_OPTION))
            groups[key].extend(seed_values(trial, index))
    repeated = [values for values in groups.values() if len(values) > 1]
    freedom = sum(len(values) - 1 for values in repeated)
    if not freedom:
        return None
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in repeated)
    return Noise(math.sqrt(squares / freedom), sum(map(len, repeated)), len(repeated))


def within_noise(trials: Sequence[FrozenTrial], noise: Noise, index: int, direction: str) -> list[FrozenTrial]:
    """The complete trials whose value is within the noise of the best one's, the best first."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    sign = -1.0 if direction == "maximize" else 1.0
    complete.sort(key=lambda t: (sign * t.values[index], t.number))
    if not complete:
        return []
    best, n_best = complete[0], len(seed_values(complete[0], index))
    return [
        t
        for t in complete
        if abs(t.values[index] - best.values[index]) <= noise.margin(n_best, len(seed_values(t, index)))
    ]


@dataclass(frozen=True)
class Importance:
    """An option's importance for a metric: Optuna's share, and the importance above chance with its interval."""

    share: float  # Optuna's normalized importance (the shares sum to 1), as "what mattered" prints it
    estimate: float  # raw importance minus the mean importance of the option's values shuffled across trials
    low: float
    high: float

    @property
    def noise(self) -> bool:
        """Whether the interval reaches zero: the option is indistinguishable from noise."""
        return self.low <= 0.0


def top_quantile(trials: int) -> float:
    """PED-ANOVA's top quantile: Optuna's 10%, widened to hold 5 trials (its documentation's advice), at most half.

    With the default 10%, 16 trials put 2 in it, and any two trials have something in common.

    >>> top_quantile(16), top_quantile(100), top_quantile(4)
    (0.3125, 0.1, 0.5)
    """
    return min(0.5, max(0.1, 5 / trials))


def importances(
    trials: Sequence[FrozenTrial], index: int, direction: str, shuffles: int = SHUFFLES, seed: int = 0
) -> dict[str, Importance]:
    """Each searched option's :class:`Importance` for metric ``index``, most important first.

    Optuna's PED-ANOVA (its default evaluator; top quantile: :func:`top_quantile`) on in-memory studies of the complete trials: as they are, and ``shuffles``
    times with each option's values permuted across them (the null: what the option gets by
    chance). The estimate is the raw importance minus the null's mean; the interval, the raw
    importance minus the null's upper and lower ``LEVEL`` quantiles (its upper end at least 0). It
    reaches zero exactly when a one-sided permutation test at ``(1 - LEVEL) / 2`` cannot tell the
    option from chance. Empty
    with fewer than 3 complete trials or 2 options, or when the evaluator cannot work on them.
    """
    rows = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    names = sorted(set.intersection(*(set(t.params) for t in rows))) if rows else []
    if len(rows) < 3 or len(names) < 2:
        return {}
    rows = [
        optuna.trial.create_trial(
            params={n: t.params[n] for n in names},
            distributions={n: t.distributions[n] for n in names},
            value=t.values[index],
        )
        for t in rows
    ]
    rng, verbosity = np.random.default_rng(seed), optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory" each time
    try:
        raw = _raw(rows, names, direction)
        nulls = np.array([_raw(_shuffled(rows, names, rng), names, direction) for _ in range(shuffles)])
    except (ValueError, RuntimeError):  # e.g. no option varies
        return {}
    finally:
        optuna.logging.set_verbosity(verbosity)
    upper, lower = np.quantile(nulls, [(1 + LEVEL) / 2, (1 - LEVEL) / 2], axis=0)
    total = float(raw.sum()) or 1.0
    # an option cannot matter less than not at all: an interval wholly below zero (its values spread over the
    # best trials more evenly than almost any shuffle, which chance does (1 - LEVEL) / 2 of the time) ends at zero
    found = {
        n: Importance(raw[i] / total, raw[i] - nulls[:, i].mean(), raw[i] - upper[i], max(raw[i] - lower[i], 0.0))
        for i, n in enumerate(names)
    }
    return dict(sorted(found.items(), key=lambda item: (-item[1].estimate, item[0])))


def _raw(rows: list[FrozenTrial], names: list[str], direction: str) -> np.ndarray:
    study = optuna.create_study(direction=direction)  # in memory
    study.add_trials(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # normalize=False
        found = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(target_quantile=top_quantile(len(rows))), normalize=False
        )
    return np.array([float(found.get(name, 0.0)) for name in names])


def _shuffled(rows: list[FrozenTrial], names: list[str], rng: np.random.Generator) -> list[FrozenTrial]:
    """The trials with each option's values permuted across them, independently: no option can matter."""
    orders = {name: rng.permutation(len(rows)) for name in names}
    return [
        optuna.trial.create_trial(
            params={n: rows[orders[n][i]].params[n] for n in names}, distributions=row.distributions, value=row.value
        )
        for i, row in enumerate(rows)
    ]
