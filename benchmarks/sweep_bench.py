"""Sweep benchmark: ``python -m benchmarks.sweep_bench [--epochs 5] [--batches 0.25]`` (its figures: ``docs/results.md``).

On the real Fashion-MNIST data, with short trials (``--epochs`` epochs on ``--batches`` of the
training batches, validation on ``--val_batches`` of the validation batches, every callback of
configs/default.yaml), all in one run so that ratios compare like with like:

(a) per-trial overhead: a trial's duration inside ``python -m fmnist sweep`` against the same
    fit run alone by ``python -m fmnist fit``, alternated in one process;
(b) a 12-trial grid over lr x batch size with the median pruner (pruning after 2 complete trials,
    the default, and after 3) against the same 12 trials without pruning: wall time ratio and best
    metric difference;
(c) trials per hour with 1 and 2 workers (``--workers``), the same fixed configuration.
"""

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import yaml

from fmnist.main import main

GRID = {"model.lr": [1e-4, 3e-4, 1e-3, 3e-3], "data.batch_size": [32, 64, 128]}


def run(*args: str) -> float:
    """Wall seconds of one in-process ``python -m fmnist`` command; its output is swallowed."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(list(args))
        except SystemExit as exit:
            if exit.code:
                raise RuntimeError(f"python -m fmnist {' '.join(args)} exited with {exit.code}") from None
    return time.perf_counter() - start


def space(folder: Path, name: str, params: dict, **settings: object) -> str:
    body = {"space": {key: {"type": "categorical", "choices": values} for key, values in params.items()}, **settings}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def trials(name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///runs/{name}/study.db").trials


def seconds(trial: optuna.trial.FrozenTrial) -> float:
    return (trial.datetime_complete - trial.datetime_start).total_seconds()


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batches", type=float, default=0.25, help="fraction of the training batches per epoch")
    parser.add_argument("--val_batches", type=float, default=1.0, help="fraction of the validation batches")
    parser.add_argument("--repeat", type=int, default=5, help="fit/trial pairs for (a)")
    parser.add_argument("--trials", type=int, default=4, help="trials per worker setting for (c)")
    parser.add_argument("--parts", default="a,b,c", help="which measurements, comma-separated (default: a,b,c)")
    options = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    short = ["--trainer.max_epochs", str(options.epochs), "--trainer.limit_train_batches", str(options.batches)]
    short += ["--trainer.limit_val_batches", str(options.val_batches)]
    short += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    folder = Path(tempfile.mkdtemp(prefix="fmnist-sweep-bench-"))
    os.chdir(folder)  # runs/ goes there; the data is found in /usr/share/datasets/fashion-mnist
    print(f"setting: real Fashion-MNIST, {options.epochs} epochs on {options.batches:.0%} of the training batches,")
    print(f"validation on {options.val_batches:.0%} of the 5000 held-out images every epoch, every default callback;")
    print(f"{os.cpu_count()} cores (ratios are measured side by side); {folder}")

    parts = set(options.parts.split(","))
    if "a" in parts:
        overhead(folder, short, options.repeat)
    if "b" in parts:
        pruning(folder, short)
    if "c" in parts:
        throughput(folder, short, options.trials)


def overhead(folder: Path, short: list[str], repeat: int) -> None:
    """(a) the same configuration as a fit alone and as a sweep trial, alternated."""
    # the median pruner as in a real sweep (its callback reports after every epoch), waiting for
    # more complete trials than there are, so that no repeat of the same trial is pruned
    single = space(folder, "single", {"model.lr": [1e-3]}, pruner="median", prune_after=1000)
    fits, trial_walls, commands = [], [], []
    for i in range(repeat):
        # alternated fit-sweep, sweep-fit, ... so that a drift of the machine's speed favours neither
        for step in ("fit", "sweep") if i % 2 == 0 else ("sweep", "fit"):
            if step == "fit":
                fits.append(run("fit", "--test_after_fit", "false", *short))  # trials skip the test after fit too
            else:
                commands.append(run("sweep", "--space", single, "--n_trials", str(i + 1), *short))
                trial_walls.append(seconds(trials("single")[-1]))
    fit, trial, command = (statistics.median(x) for x in (fits, trial_walls, commands))
    print(
        f"\n(a) per-trial overhead, medians of {repeat} alternated pairs"
        f" (fit alone: {', '.join(f'{x:.1f}' for x in fits)} s; trials: {', '.join(f'{x:.1f}' for x in trial_walls)} s)"
    )
    print(
        f"  fit alone {fit:.1f} s, the same fit as a sweep trial {trial:.1f} s:"
        f" overhead {trial / fit - 1:+.1%}, {trial - fit:+.1f} s (target <= 5%)"
    )
    print(
        f"  whole sweep command for one more trial {command:.1f} s: {command / fit - 1:+.1%}, {command - fit:+.1f} s"
        " (once per command: the space checked by the fit parser, the storage opened, the summary)"
    )


def pruning(folder: Path, short: list[str]) -> None:
    """(b) the 12 grid trials without pruning, then with the median pruner: its default (pruning
    after 2 complete trials) and, for comparison, after 3."""
    grid = space(folder, "grid", GRID, sampler="grid")
    searches = {"none": ["--pruner", "none"], "median": ["--pruner", "median"]}
    searches["median, after 3"] = ["--pruner", "median", "--prune_after", "3"]
    walls = {
        name: run("sweep", "--space", grid, "--study", f"grid{i}", *flags, *short)
        for i, (name, flags) in enumerate(searches.items())
    }
    full = trials("grid0")
    best_full = max(t.value for t in full)
    print("\n(b) 12 trials, lr x batch size grid (lr 1e-4..3e-3, batch 32/64/128), median pruner vs none")
    print(f"  no pruning: {walls['none']:.0f} s, best Accuracy/val_best {best_full:.4f}")
    for i, name in enumerate(searches):
        if name == "none":
            continue
        pruned = trials(f"grid{i}")
        best = max(t.value for t in pruned if t.state == optuna.trial.TrialState.COMPLETE)
        count = sum(t.state == optuna.trial.TrialState.PRUNED for t in pruned)
        summed = sum(map(seconds, pruned)) / sum(map(seconds, full))
        print(
            f"  {name}: {walls[name]:.0f} s, {count} of 12 pruned: wall ratio {walls[name] / walls['none']:.2f}"
            f" (target <= 0.6; summed trial durations {summed:.2f}); best {best:.4f},"
            f" {100 * (best_full - best):.2f} points below (target <= 0.3)"
        )


def throughput(folder: Path, short: list[str], trials_per_setting: int) -> None:
    """(c) the same fixed trial, several times, with 1 and with 2 worker processes."""
    print(f"\n(c) trials per hour, {trials_per_setting} trials of the fixed configuration")
    for workers in (1, 2):
        fixed = space(
            folder,
            f"workers{workers}",
            {"seed_everything": list(range(trials_per_setting))},
            sampler="grid",
            pruner="none",
        )
        wall = run("sweep", "--space", fixed, "--workers", str(workers), *short)
        print(
            f"  {workers} worker{'s' if workers > 1 else ''}: {wall:.0f} s for {trials_per_setting} trials ="
            f" {3600 * trials_per_setting / wall:.0f} trials/hour (command wall time, start-up included)"
        )


if __name__ == "__main__":
    main_bench()
