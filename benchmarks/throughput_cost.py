"""What ``callbacks.EpochThroughput`` costs a ``fit``: from the repository root
``python -m benchmarks.throughput_cost [--pairs 3] [--epochs 2] [--data_dir ./data]`` (its figures: ``docs/results.md``).

Runs the default ``fit`` (every callback, real data, no test after it) with and without the
throughput callback, each in a process of its own, in pairs whose order alternates (with/without,
then without/with) so that a slow spell of a shared machine hits both alike. Prints each run's
fit time and epoch times, wall and CPU, and the ratios with/without of the summed fit times and of
the median epoch times.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_fit(throughput: bool, epochs: int, data_dir: str) -> dict:
    """One default fit in this process: its wall and CPU time, and each epoch's (``benchmarks.bench.EpochTimer``)."""
    from benchmarks.bench import EpochTimer
    from callbacks import EpochThroughput
    from fmnist.cli import FashionCLI
    from fmnist.quiet import quiet_lightning

    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="fmnist-throughput-cost-") as tmp:
        cli = FashionCLI(["--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false",
                          "--data.data_dir", data_dir, "--trainer.logger.init_args.save_dir", str(Path(tmp) / "runs"),
                          "--test_after_fit", "false"], run=False)  # fmt: skip
        timer = EpochTimer()
        # assigning trainer.callbacks is how Lightning's own Tuner adds and removes its callbacks
        kept = [c for c in cli.trainer.callbacks if throughput or not isinstance(c, EpochThroughput)]
        cli.trainer.callbacks = [*kept, timer]
        start, cpu_start = time.perf_counter(), time.process_time()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        return {"fit_s": time.perf_counter() - start, "fit_cpu_s": time.process_time() - cpu_start,
                "epochs": timer.seconds, "epochs_cpu": timer.cpu_seconds}  # fmt: skip


def run_child(throughput: bool, epochs: int, data_dir: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.throughput_cost", "--child", "with" if throughput else "without",
               "--epochs", str(epochs), "--data_dir", data_dir]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        print("\n".join(done.stderr.strip().splitlines()[-20:]), file=sys.stderr)
        raise SystemExit(done.returncode if done.returncode > 0 else 1)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs, with and without (default: 3)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (default: 2)")
    parser.add_argument("--data_dir", default="./data", help="as fmnist's --data.data_dir (default: ./data)")
    parser.add_argument("--child", choices=["with", "without"], help=argparse.SUPPRESS)  # one run, in this process
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_fit(args.child == "with", args.epochs, args.data_dir)))
        return
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for pair in range(args.pairs):
        for throughput in (True, False) if pair % 2 == 0 else (False, True):
            result = run_child(throughput, args.epochs, args.data_dir)
            runs[throughput].append(result)
            epochs = " ".join(f"{s:.2f}" for s in result["epochs"])
            print(f"pair {pair + 1} {'with   ' if throughput else 'without'} fit {result['fit_s']:7.2f} s"
                  f" ({result['fit_cpu_s']:7.2f} CPU s)  epochs {epochs} s", flush=True)  # fmt: skip
    print("with / without (CPU time is the steadier on a shared machine):")
    for key, name in (("fit_s", "fit time"), ("fit_cpu_s", "fit CPU time")):
        total = {throughput: sum(r[key] for r in value) for throughput, value in runs.items()}
        pairs = " ".join(f"{w[key] / wo[key]:.3f}" for w, wo in zip(runs[True], runs[False]))
        print(f"  {name:<22} {total[True] / total[False]:.3f}  (each pair: {pairs})")
    for key, name in (("epochs", "median epoch time"), ("epochs_cpu", "median epoch CPU time")):
        median = {throughput: statistics.median(s for r in value for s in r[key]) for throughput, value in runs.items()}
        print(f"  {name:<22} {median[True] / median[False]:.3f}  ({median[True]:.2f} s / {median[False]:.2f} s)")


if __name__ == "__main__":
    main()
