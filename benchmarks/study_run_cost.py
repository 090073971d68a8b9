"""What the study run costs a sweep: ``python -m benchmarks.study_run_cost --storage URL --study NAME``.

Replays a finished study's trials through :class:`fmnist.sweep.board.StudyRun` (the Optuna callback
every worker calls when a trial ends) into a throw-away folder, then writes the study run's end
(importances, Pareto front, best trials: :func:`fmnist.sweep.board.write_end`). Prints the
milliseconds of each part against the study's own median trial, so the share a sweep spends on
its study run is read off directly, not from two wall-clock runs that a machine's drift blurs.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from fmnist.sweep import board


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study_run_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", required=True, help="the sweep's storage URL, e.g. sqlite:///runs/sweep/study.db")
    parser.add_argument("--study", required=True, help="the study's name (the space file's stem by default)")
    parser.add_argument("--metric", default="Accuracy/val_best", help="the sweep's metric(s), separated by commas")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=args.study, storage=args.storage)
    trials = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    metrics = args.metric.split(",")
    directions = [d.name.lower() for d in study.directions]
    trial_s = statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in trials)
    with tempfile.TemporaryDirectory(prefix="fmnist-study-run-cost-") as tmp:
        run = board.StudyRun(Path(tmp), metrics)
        each = []
        for trial in trials:
            start = time.perf_counter()
            run.trial_finished(study, trial)
            each.append(time.perf_counter() - start)
        run.close()
        start = time.perf_counter()
        found = board.importances(study, metrics, directions)
        best = [study.best_trial] if len(metrics) == 1 else study.best_trials
        board.write_end(Path(tmp), study, metrics, found, best, {t.number: "" for t in best})
        end_s = time.perf_counter() - start
    per_trial = statistics.median(each)
    print(f"study {args.study}: {len(trials)} finished trials, median trial {trial_s:.1f} s")
    print(f"StudyRun.trial_finished: median {per_trial * 1000:.2f} ms a trial (first {each[0] * 1000:.1f} ms),"
          f" {per_trial / trial_s:.3%} of a trial")  # fmt: skip
    print(f"the end (importances, pictures, best trials): {end_s * 1000:.0f} ms once,"
          f" {end_s / (trial_s * len(trials)):.3%} of the trials' time")  # fmt: skip


if __name__ == "__main__":
    main()
