"""Speed benchmark: ``make benchmark``, or from the repository root
``python -m benchmarks.bench [--epochs 5] [--repeat 2] [--parts fit,step] [--data_dir ./data]``.

Times, in one run on the same data: the tutorial's own training loop (per-image PIL transforms,
``SummaryWriter`` and all), ``fit`` with every callback, ``fit`` without callbacks, and the bare
train step (the compute floor); prints seconds per epoch (median of the epochs of all repeats), the ratios,
peak memory and test accuracy, and how long ``python -m fmnist --help`` takes next to importing
lightning and torchvision. Each part runs in a process of its own, so that its peak memory and
its warm-up are its own. A part that fails stops the benchmark with that part's own error message.
The figures it gave, and how long it took: ``docs/results.md``.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from typing_extensions import override

REPO = Path(__file__).resolve().parents[1]
PARTS = {
    "tutorial": "tutorial loop (PIL transforms, SummaryWriter)",
    "fit": "fit, every callback",
    "fit_plain": "fit, no callbacks",
    "step": "bare train step",
}


class EpochTimer(pl.Callback):
    """Wall time of each training epoch, its validation and the callbacks' work included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    @override
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._start, self._cpu_start = time.perf_counter(), time.process_time()

    @override
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.cpu_seconds.append(time.process_time() - self._cpu_start)


def run_fit(epochs: int, workdir: Path, data_dir: str, callbacks: bool) -> dict:
    from fmnist.cli import FashionCLI
    from fmnist.quiet import quiet_lightning

    quiet_lightning()
    args = ["fit", "--trainer.max_epochs", str(epochs), "--trainer.enable_progress_bar", "false",
            "--data.data_dir", data_dir, "--trainer.logger.init_args.save_dir", str(workdir / "runs")]  # fmt: skip
    if not callbacks:
        args += ["--trainer.callbacks", "[]"]
    args += ["--trainer.callbacks+=benchmarks.bench.EpochTimer"]
    cli = FashionCLI(args)
    # the CLI imports benchmarks.bench.EpochTimer; under `python -m` this file is __main__
    from benchmarks.bench import EpochTimer as Timer

    timer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, Timer))
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return {"epochs": timer.seconds, "cpu": timer.cpu_seconds, "accuracy": result["Accuracy/test"]}


def run_step(epochs: int, data_dir: str) -> dict:
    """The model's training step alone, on the same decoded tensors and batch size as ``fit``."""
    from fmnist.data import FashionMNISTDataModule
    from fmnist.module import FashionMNISTClassifier

    data = FashionMNISTDataModule(data_dir)
    data.prepare_data()
    data.setup("fit")
    images, labels = data.train_set.tensors
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(42)
    model = FashionMNISTClassifier().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds, cpu = [], []
    for _ in range(epochs):
        start, cpu_start = time.perf_counter(), time.process_time()
        for batch in torch.randperm(len(images), device=device).split(data.hparams.batch_size):
            loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    return {"epochs": seconds, "cpu": cpu}


def run_part(part: str, epochs: int, data_dir: str) -> dict:
    from benchmarks.tutorial_loop import run_tutorial

    with tempfile.TemporaryDirectory(prefix=f"fmnist-bench-{part}-") as tmp:
        workdir = Path(tmp)
        if part == "tutorial":
            result = run_tutorial(epochs, workdir, data_dir)  # imported here: it imports what the tutorial does
        elif part == "step":
            result = run_step(epochs, data_dir)
        else:
            result = run_fit(epochs, workdir, data_dir, callbacks=part == "fit")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def time_command(command: list[str], repeat: int = 3) -> float:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def run_child(part: str, epochs: int, data_dir: str) -> dict:
    """Run one part in a process of its own; a failure stops here with the child's own message."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench",
        "--part",
        part,
        "--epochs",
        str(epochs),
        "--data_dir",
        data_dir,
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        message = "\n".join(done.stderr.strip().splitlines()[-20:]) or done.stdout.strip()
        print(f"benchmark part {part!r} failed (exit status {done.returncode}):\n{message}", file=sys.stderr)
        raise SystemExit(done.returncode if done.returncode > 0 else 1)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per part (default: 5)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each part, pooled (default: 2)")
    parser.add_argument("--data_dir", default="./data", help="as fmnist's --data.data_dir (default: ./data)")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: no part {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    if args.part:
        from fmnist.errors import InputError

        try:
            print(json.dumps(run_part(args.part, args.epochs, args.data_dir)))
        except InputError as err:  # the user's to fix: one message, no traceback
            print(f"fmnist: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        return

    cpu = platform.processor() or platform.machine()
    device = (
        torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({cpu}), {torch.get_num_threads()} threads"
    )
    print(
        f"fmnist benchmark: {args.repeat} x {args.epochs} epochs per part, batch 64, torch {torch.__version__}, lightning {pl.__version__}, {device}"
    )
    results: dict[str, dict] = {}
    parts = args.parts.split(",")
    # round-robin repeats, so that a slow spell of a shared machine hits every part alike
    for _ in range(args.repeat):
        for part in parts:
            result = run_child(part, args.epochs, args.data_dir)
            pooled = results.setdefault(part, {"epochs": [], "cpu": [], "peak_rss_mb": 0.0, "accuracy": []})
            pooled["epochs"] += result["epochs"]
            pooled["cpu"] += result["cpu"]
            pooled["peak_rss_mb"] = max(pooled["peak_rss_mb"], result["peak_rss_mb"])
            if "accuracy" in result:
                pooled["accuracy"].append(result["accuracy"])
    for part in parts:
        r = results[part]
        r["median"], r["cpu_median"] = statistics.median(r["epochs"]), statistics.median(r["cpu"])
        accuracy = " / ".join(f"{a:.4f}" for a in r["accuracy"]) or "-"
        epochs = " ".join(f"{s:.1f}" for s in r["epochs"])
        print(f"  {PARTS[part]:<46} {r['median']:6.2f} s/epoch ({r['cpu_median']:5.1f} CPU s)  peak RSS"
              f" {r['peak_rss_mb']:5.0f} MB  test acc {accuracy}  (epochs: {epochs})")  # fmt: skip

    def ratio(a: str, b: str, target: str, limit: float) -> None:
        if a in results and b in results:
            value = results[a]["median"] / results[b]["median"]
            cpu = results[a]["cpu_median"] / results[b]["cpu_median"]
            verdict = "ok" if value <= limit else "MISSED"
            print(f"  {target:<46} {value:6.3f}   (target <= {limit}: {verdict}; in CPU time {cpu:.3f})")

    print("ratios of the medians (wall time; CPU time is steadier on a shared machine)")
    ratio("fit", "tutorial", "fit / tutorial loop", 0.75)
    ratio("fit", "step", "fit / bare train step", 1.10)
    ratio("fit", "fit_plain", "fit / fit without callbacks", 1.05)
    if "fit" in results:
        print(f"  {'peak RSS of fit':<46} {results['fit']['peak_rss_mb']:6.0f} MB (target < 2048)")
    cli = time_command([sys.executable, "-m", "fmnist", "--help"])
    imports = time_command([sys.executable, "-c", "import lightning, torchvision"])
    verdict = "ok" if cli <= 1.2 * imports else "MISSED"
    print(f"  {'python -m fmnist --help':<46} {cli:6.2f} s vs {imports:.2f} s to import lightning and torchvision:"
          f" {cli / imports:.2f}x (target <= 1.2: {verdict})")  # fmt: skip


if __name__ == "__main__":
    main()
