"""How often the importance intervals are right: ``python -m benchmarks.trust_calibration [--studies 40] [--trials 16]``.

Makes synthetic studies where the learning rate changes the metric and two options do not (a
width choice and a float), with seed noise, sampled by Optuna's random or TPE sampler, and counts
in how many of them :func:`fmnist.sweep.trust.importances` puts each option above noise: for the
learning rate that is the power, for the others the false alarms (the target: at most 2.5%, the
one-sided level, with the random sampler; TPE samples the inert options together with the good
learning rates, which the permutation null does not undo). ``--bootstrap`` counts instead with
the interval first tried and rejected: percentiles of the raw-minus-shuffled importance over
resamples of the trials. The figures are in docs/sweeps.md.
"""

import argparse
import math
import time
import warnings

import numpy as np
import optuna

from fmnist.sweep.trust import LEVEL, importances, top_quantile

OPTIONS = ("model.lr", "model.hidden_size", "x")


def study(trials: int, seed: int, sampler: str, noise: float = 0.003) -> optuna.Study:
    """The metric peaks at a learning rate of 10**-2.5; ``model.hidden_size`` and ``x`` do nothing."""
    made = optuna.samplers.TPESampler(seed=seed) if sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    result = optuna.create_study(direction="maximize", sampler=made)
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        trial = result.ask()
        lr = trial.suggest_float("model.lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("model.hidden_size", [32, 64, 128])
        trial.suggest_float("x", 0.0, 1.0)
        result.tell(trial, 0.90 - 0.03 * (math.log10(lr) + 2.5) ** 2 + rng.normal(0, noise))
    return result


def raw(trials: list[optuna.trial.FrozenTrial]) -> np.ndarray:
    """Unnormalized PED-ANOVA importances of :data:`OPTIONS`, as :mod:`fmnist.sweep.trust` computes them."""
    made = optuna.create_study(direction="maximize")
    made.add_trials(trials)
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=top_quantile(len(trials)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        found = optuna.importance.get_param_importances(made, evaluator=evaluator, normalize=False)
    return np.array([found.get(option, 0.0) for option in OPTIONS])


def bootstrap_above(
    trials: list[optuna.trial.FrozenTrial], rng: np.random.Generator, resamples: int = 200
) -> list[bool]:
    """Per option: is the lower percentile of (raw - shuffled) over resamples of the trials above zero?"""
    differences = []
    for _ in range(resamples):
        picked = rng.integers(len(trials), size=len(trials))
        orders = {option: rng.permutation(len(trials)) for option in OPTIONS}  # one shuffle, drawn as the resample is
        shuffled = [
            optuna.trial.create_trial(
                params={o: trials[orders[o][i]].params[o] for o in OPTIONS},
                distributions=trials[i].distributions,
                value=trials[i].value,
            )
            for i in range(len(trials))
        ]
        differences.append(raw([trials[i] for i in picked]) - raw([shuffled[i] for i in picked]))
    return list(np.quantile(differences, (1 - LEVEL) / 2, axis=0) > 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trust_calibration", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=40, help="synthetic studies per sampler")
    parser.add_argument("--trials", type=int, default=16, help="complete trials per study")
    parser.add_argument("--bootstrap", action="store_true", help="the rejected bootstrap interval instead")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for sampler in ("random", "tpe"):
        start, above = time.perf_counter(), dict.fromkeys(OPTIONS, 0)
        for seed in range(args.studies):
            trials = study(args.trials, 1000 + seed, sampler).trials
            if args.bootstrap:
                verdicts = bootstrap_above(trials, np.random.default_rng(seed))
            else:
                found = importances(trials, 0, "maximize", seed=seed)
                verdicts = [not found[option].noise for option in OPTIONS]
            for option, verdict in zip(OPTIONS, verdicts):
                above[option] += verdict
        shares = ", ".join(f"{option} {above[option] / args.studies:.0%}" for option in OPTIONS)
        seconds = (time.perf_counter() - start) / args.studies
        interval = "bootstrap" if args.bootstrap else "permutation"
        print(f"{interval}, {sampler}, {args.trials} trials: above noise in {shares} of {args.studies} studies", end="")
        print(f" ({seconds:.1f} s each)")


if __name__ == "__main__":
    main()
