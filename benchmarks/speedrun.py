"""Time to accuracy: ``python -m benchmarks.speedrun --config configs/speed/2min.yaml [--config ...] [--seeds 5]``.

Runs each config's whole ``python -m fmnist fit`` (start-up, training, the test after it) once per
seed, each in a process of its own, one after the other, and prints one row per config: the wall
time of training (``Time/epoch_s`` summed: every epoch with its validation) and of the whole
command, test accuracy mean ± std over the seeds (plain and with TTA, when the config averages
views), training images per second and the compute efficiency: the training FLOP/s achieved
(``Throughput/flops_per_s``, from the model's counted FLOPs) divided by this machine's own
matrix-multiply peak, measured here first in fp32 and bf16 and printed with the CPU's name and
flags. On a machine with a CUDA GPU ``fit`` trains there, its data kept there, and the peak is
the GPU's; add ``-- --data.batch_size 1024`` or more to fill it. ``--baseline`` adds the
tutorial's own loop (``benchmarks/tutorial_loop.py``, 5 epochs) as the first row. ``--picture
FILE`` draws accuracy against the command's minutes, the front joined; ``--json FILE`` keeps
every seed's figures, and ``--load FILE`` puts such a file's rows (measured earlier, with the
peaks of that day) into the table and the picture again without running them.

Run it on a quiet machine: anything else running changes every time it prints. Extra arguments
after ``--`` go to every fit, e.g. ``-- --data.data_dir DIR``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
#: The table's columns, in order.
COLUMNS = (
    "config", "seeds", "train_s", "command_s", "test_acc", "test_acc_tta", "images_per_s", "tflops", "efficiency",
)  # fmt: skip


def matmul_peak(dtype: torch.dtype, device: str = "cpu", seconds: float = 1.0) -> float:
    """FLOP/s of square matrix products in ``dtype`` on ``device`` (the CPU's threads, or a GPU), the best of a second's tries."""
    size = 8192 if device == "cuda" else 2048  # a GPU needs large products to reach its peak
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    wait = torch.cuda.synchronize if device == "cuda" else lambda: None  # a GPU's products run asynchronously
    torch.mm(a, b)  # warm-up: the first call picks its kernel
    wait()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        wait()
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def cpu_name() -> str:
    """The CPU's model name and the matrix-unit flags that decide bf16's speed (AMX, AVX512-BF16, AVX2)."""
    name, flags = platform.processor() or platform.machine(), set()
    with open("/proc/cpuinfo") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as info:
        for line in info:
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    shown = [flag for flag in ("amx_bf16", "avx512_bf16", "avx512f", "avx2") if flag in flags]
    return f"{name}, {os.cpu_count()} cores, {' '.join(shown) or 'no AVX2'}"


def fit_once(config: str, seed: int, workdir: Path, extra: list[str]) -> dict[str, float]:
    """One seed of one config: the whole command in a process of its own; what its event files say."""
    runs = workdir / "runs"
    command = [sys.executable, "-m", "fmnist", "fit", "--config", config, "--seed_everything", str(seed),
               "--trainer.logger.init_args.save_dir", str(runs), "--trainer.enable_progress_bar", "false", *extra]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"speedrun: {config} seed {seed} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    scalars = _scalars(runs)
    epochs = scalars.get("Time/epoch_s", [])
    return {
        "train_s": sum(epochs),
        "epochs": len(epochs),
        "command_s": seconds,
        "test_acc": scalars["Accuracy/test"][-1],
        "test_acc_tta": scalars["Accuracy/test_tta"][-1] if "Accuracy/test_tta" in scalars else float("nan"),
        "images_per_s": statistics.mean(scalars["Throughput/images_per_s"]),
        "flops_per_s": statistics.mean(scalars["Throughput/flops_per_s"]),
        "bf16": float("bf16" in done.stdout.splitlines()[0]) if done.stdout else 0.0,
    }


def _scalars(runs: Path) -> dict[str, list[float]]:
    """Every scalar of the newest run under ``runs``, by tag, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run,) = {path.parent for path in runs.rglob("events.out.tfevents.*") if "study" not in path.parts}
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [point.value for point in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tutorial_once(data_dir: str, workdir: Path, epochs: int = 5) -> dict[str, float]:
    """The tutorial's loop as the baseline row: its epochs' time, the whole process's, its test accuracy."""
    code = (
        "import json, sys; from pathlib import Path; from benchmarks.tutorial_loop import run_tutorial; "
        f"print(json.dumps(run_tutorial({epochs}, Path(sys.argv[1]), sys.argv[2])))"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(workdir), data_dir], capture_output=True, text=True, cwd=REPO
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"speedrun: the tutorial's loop failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    train_s = sum(result["epochs"])
    images_per_s = 60_000 * epochs / train_s
    return {
        "train_s": train_s, "epochs": epochs, "command_s": seconds, "test_acc": result["accuracy"], "test_acc_tta": float("nan"),
        "images_per_s": images_per_s, "flops_per_s": images_per_s * tutorial_flops_per_image(), "bf16": 0.0,
    }  # fmt: skip


def tutorial_flops_per_image() -> float:
    """A training step's FLOPs per image of the tutorial's network (forward and backward), counted by torch."""
    from lightning.fabric.utilities.throughput import measure_flops

    from fmnist.model import FashionCNN

    model = FashionCNN()
    return measure_flops(model, lambda: model(torch.zeros(1, 1, 28, 28)), lambda y: y.sum())


#: The baseline row's name.
TUTORIAL = "tutorial loop, 5 epochs"


def row(name: str, results: list[dict[str, float]], peaks: dict[str, float]) -> dict[str, str]:
    """One line of the table: means over the seeds (accuracy with its standard deviation)."""

    def mean(key: str) -> float:
        return statistics.mean(r[key] for r in results)

    def spread(key: str) -> str:
        values = [r[key] for r in results]
        if any(v != v for v in values):  # NaN: no TTA in this config
            return "-"
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {std:.4f}"

    peak = peaks["bf16"] if mean("bf16") > 0.5 else peaks["fp32"]
    return {
        "config": name, "seeds": str(len(results)), "train_s": f"{mean('train_s'):.1f}",
        "command_s": f"{mean('command_s'):.1f}", "test_acc": spread("test_acc"), "test_acc_tta": spread("test_acc_tta"),
        "images_per_s": f"{mean('images_per_s'):.0f}", "tflops": f"{mean('flops_per_s') / 1e12:.3f}",
        "efficiency": f"{mean('flops_per_s') / peak:.2f}",
    }  # fmt: skip


def print_table(rows: list[dict[str, str]]) -> None:
    widths = {column: max(len(column), *(len(r[column]) for r in rows)) for column in COLUMNS}
    for line in [dict(zip(COLUMNS, COLUMNS)), *rows]:
        print("  ".join(line[column].ljust(widths[column]) for column in COLUMNS).rstrip(), flush=True)


def draw(rows: list[dict[str, str]], path: Path) -> None:
    """Test accuracy (with the config's TTA, if it has one) against the whole command's minutes, the front joined."""
    from PIL import Image

    from fmnist.sweep.charts import pareto_scatter

    def accuracy(r: dict[str, str]) -> float:
        return float((r["test_acc"] if r["test_acc_tta"] == "-" else r["test_acc_tta"]).split(" ")[0])

    points = [(float(r["command_s"]) / 60, accuracy(r)) for r in rows]
    front = [i for i, (x, y) in enumerate(points) if not any(a <= x and b > y for a, b in points)]
    axes = ("minutes, the whole fit command", "test accuracy (with TTA where the config has it)")
    Image.fromarray(pareto_scatter(points, front, [r["config"] for r in rows], axes)).save(path)


def rows_of(raw: dict[str, list[dict[str, float]]], peaks: dict[str, float]) -> list[dict[str, str]]:
    """The table's rows of one speedrun's runs (a config's path, or ``tutorial``, to its seeds' figures)."""
    return [row(TUTORIAL if name == "tutorial" else Path(name).stem, seeds, peaks) for name, seeds in raw.items()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speedrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="a fit config; give several to compare")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 per config (default 5)")
    parser.add_argument("--baseline", action="store_true", help="add the tutorial's own loop as the first row")
    parser.add_argument("--data_dir", default="./data", help="for the baseline: where fit finds Fashion-MNIST")
    parser.add_argument("--picture", type=Path, help="draw accuracy against minutes into this PNG")
    parser.add_argument("--json", type=Path, help="write every seed's figures here too")
    parser.add_argument("--load", action="append", type=Path, default=[], help="an earlier run's --json: its rows join the table and picture")  # fmt: skip
    args, extra = parser.parse_known_args(argv)
    if not (args.config or args.baseline or args.load):
        parser.error("give --config (a fit config to run), --baseline or --load (an earlier run's --json)")
    extra = [a for a in extra if a != "--"]
    rows = []
    for path in args.load:  # measured earlier, maybe on another day: each file says on what
        saved = json.loads(path.read_text())
        print(f"{path}: CPU {saved['cpu']}; peak fp32 {saved['peaks']['fp32'] / 1e12:.3f} TFLOP/s")
        rows += rows_of(saved["runs"], saved["peaks"])
    if args.config or args.baseline:
        rows += run(args, extra)
    print_table(rows)
    if args.picture:
        draw(rows, args.picture)


def run(args: argparse.Namespace, extra: list[str]) -> list[dict[str, str]]:
    """Measure this machine's peaks, then run the baseline and every config's seeds; their rows."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where fit trains (accelerator auto), so the peak's
    peaks = {"fp32": matmul_peak(torch.float32, device), "bf16": matmul_peak(torch.bfloat16, device)}
    gpu = f"; GPU: {torch.cuda.get_device_name()}" if device == "cuda" else ""
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}{gpu}")
    print(
        f"matrix-multiply peak: fp32 {peaks['fp32'] / 1e12:.3f} TFLOP/s, bf16 {peaks['bf16'] / 1e12:.3f} TFLOP/s ({device})"
    )
    raw = {}
    with tempfile.TemporaryDirectory(prefix="speedrun-") as tmp:
        if args.baseline:
            raw["tutorial"] = [tutorial_once(args.data_dir, Path(tmp) / "tutorial")]
        for config in args.config:
            raw[config] = [
                fit_once(config, seed, Path(tmp) / f"{Path(config).stem}-{seed}", extra) for seed in range(args.seeds)
            ]
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name() + gpu, "peaks": peaks, "runs": raw}, indent=1))
    return rows_of(raw, peaks)


if __name__ == "__main__":
    main()
