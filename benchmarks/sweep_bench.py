"""Sweep benchmark: ``python -m benchmarks.sweep_bench [--epochs 5] [--batches 0.25]`` (its figures: ``docs/results.md``).

On the real Fashion-MNIST data, with short trials (``--epochs`` epochs on ``--batches`` of the
training batches, validation on ``--val_batches`` of the validation batches, every callback of
configs/default.yaml), all in one run so that ratios compare like with like:

(a) per-trial overhead: a trial's duration inside ``python -m fmnist sweep`` against the same
    fit run alone by ``python -m fmnist fit``, alternated in one process;
(b) a 12-trial grid over lr x batch size with the median pruner (pruning after 2 complete trials,
    the default, and after 3) against the same 12 trials without pruning: wall time ratio and best
    metric difference;
(c) trials per hour with 1 and 2 workers (``--workers``), the same fixed configuration;
(d) a worker's fixed cost and memory per trial: ``--memory_trials`` tiny trials (1 epoch of 5 batches,
    2 validation batches, a space over ``model.lr``) on one worker; per trial, the time outside
    training and validation and the worker's memory after it, then where that time goes:
    ``python -m benchmarks.sweep_bench --parts d --memory_trials 100`` (about 4 minutes).
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import optuna
import yaml
from lightning.pytorch.profilers import Profiler

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
    parser.add_argument("--memory_trials", type=int, default=100, help="tiny trials on one worker for (d)")
    parser.add_argument(
        "--parts", default="a,b,c", help="which measurements, comma-separated: a,b,c,d (default: a,b,c)"
    )
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
    if "d" in parts:
        fixed_cost(folder, options.memory_trials)


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


def rss_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, ``VmHWM``) in MB, as the kernel counts it."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(f"{field}:"))


class TrialClock(Profiler):
    """(d)'s clock inside each trial (``--trainer.profiler``): the own time of every action Lightning
    profiles, training batches and validation batches each summed as one, when fit began and ended,
    and the worker's memory when the trial's trainer was built (what the trials before it left);
    written as JSON into the run folder (``fit-clock.txt``)."""

    def __init__(self, dirpath: str | None = None, filename: str = "clock") -> None:
        super().__init__(dirpath, filename)
        self.built, self.rss_at_build, self.began = time.time(), rss_mb(), 0.0
        self.own: dict[str, float] = defaultdict(float)
        self._open: list[list] = []  # [part, started, time of nested actions]

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank, log_dir)
        self.began = self.began or time.time()

    def start(self, action_name: str) -> None:
        outer = self._open[-1][0] if self._open else ""
        if outer in ("training", "validation"):
            part = outer  # a hook inside a training or validation batch belongs to that batch
        elif action_name == "run_training_batch":
            part = "training"
        elif any(piece in action_name for piece in ("validation_step", "val_next", "validation_batch")):
            part = "validation"  # the sanity check's too
        else:
            part = action_name
        self._open.append([part, time.perf_counter(), 0.0])

    def stop(self, action_name: str) -> None:
        part, started, nested = self._open.pop()
        spent = time.perf_counter() - started
        self.own[part] += spent - nested
        if self._open:
            self._open[-1][2] += spent

    def summary(self) -> str:
        times = {"built": self.built, "began": self.began, "ended": time.time(), "rss_at_build": self.rss_at_build}
        return json.dumps({**times, "own": self.own})


#: (d)'s trials, as in issue 28: a space over the learning rate, no pruner (a pruned trial stops inside
#: fit, before its clock is written), 1 epoch of 5 training batches and 2 validation batches.
TINY_SPACE = {"pruner": "none", "space": {"model.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
TINY = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "5", "--trainer.limit_val_batches", "2"]


def fixed_cost(folder: Path, count: int) -> None:
    """(d) tiny trials on one worker: per trial, the time outside training and validation and memory after it."""
    lr = folder / "tiny.yaml"
    lr.write_text(yaml.safe_dump(TINY_SPACE))
    rss_before = rss_mb()
    clock = ["--trainer.profiler", f"{__name__}.TrialClock"]
    wall = run("sweep", "--space", str(lr), "--n_trials", str(count), *TINY, *clock)
    after_last = rss_mb()
    done = sorted(trials("tiny"), key=lambda t: t.number)
    clocks = [json.loads((Path(t.user_attrs["run_dir"]) / "fit-clock.txt").read_text()) for t in done]
    starts = [t.datetime_start.timestamp() for t in done]
    memory = [c["rss_at_build"] for c in clocks[1:]] + [after_last]  # a trial's clock starts after the last ended
    print(f"\n(d) {count} tiny trials on one worker: {wall:.0f} s, {3600 * count / wall:.0f} trials/hour;")
    print(f"  memory before the sweep {rss_before:.0f} MB; per trial:")
    print("  trial  wall s  training  validation  outside both  memory after")
    rows = []
    for i, (trial, clock) in enumerate(zip(done, clocks, strict=True)):
        end = starts[i + 1] if i + 1 < len(done) else trial.datetime_complete.timestamp()
        cycle, train, val = end - starts[i], clock["own"].get("training", 0.0), clock["own"].get("validation", 0.0)
        rows.append(_phases(trial, clock, end))
        outside = cycle - train - val
        print(f"  {trial.number:5d}  {cycle:6.2f}  {train:8.2f}  {val:10.2f}  {outside:12.2f}  {memory[i]:9.0f} MB")
    _breakdown(rows[1:] or rows)  # the first trial also pays the imports and first calls
    tenth, highest = memory[min(9, len(memory) - 1)], max(memory[9:] or memory)
    print(
        f"  memory after trial 10: {tenth:.0f} MB, after trial {count}: {memory[-1]:.0f} MB"
        f" ({memory[-1] / tenth - 1:+.1%}), highest after any later trial: {highest:.0f} MB"
        f" ({highest / tenth - 1:+.1%}; target within 10%); peak {rss_mb('VmHWM'):.0f} MB"
    )


def _phases(trial: optuna.trial.FrozenTrial, clock: dict, end: float) -> dict[str, float]:
    """A trial's time outside training and validation, by where it went."""
    own = {k: v for k, v in clock["own"].items() if k not in ("training", "validation")}
    complete = trial.datetime_complete.timestamp()
    phases = {"set-up: sample, parse, build model, data and trainer": clock["began"] - trial.datetime_start.timestamp()}
    phases.update(own)
    phases["fit, not profiled (Lightning's set-up, loops)"] = (
        clock["ended"] - clock["began"] - sum(clock["own"].values())
    )
    phases["after fit: close the event file, HParams row, storage"] = complete - clock["ended"]
    phases["between trials: storage, study board, report line"] = end - complete
    return phases


def _breakdown(rows: list[dict[str, float]]) -> None:
    names = {name for row in rows for name in row}
    means = {name: statistics.fmean(row.get(name, 0.0) for row in rows) for name in names}
    print(f"  where the time outside training and validation goes, mean of {len(rows)} trials:")
    for name, seconds in sorted(means.items(), key=lambda item: -item[1])[:14]:
        print(f"    {seconds:6.3f} s  {name}")
    print(f"    {sum(means.values()):6.3f} s  in all")


if __name__ == "__main__":
    main_bench()
