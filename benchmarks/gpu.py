"""GPU check: ``python -m benchmarks.gpu [--data_dir ./data]`` on a machine with a CUDA GPU.

Trains ``configs/default.yaml`` and ``configs/tuned.yaml`` for 2 epochs each, in ``32-true`` and in
``bf16-mixed``, through fmnist's own ``fit`` (every callback, validation included, no test), each
in a process of its own; and times the bare training step of each network (forward, loss,
backward, AdamW; CUDA events, after warm-up). Prints a Markdown table for ``docs/results.md``: seconds per
epoch (each of the two), training images per second of the second epoch (its validation
included), the bare step, and the peak GPU memory of the fit (``torch.cuda.max_memory_allocated``).
Without a GPU it says so in one line and exits with status 2; ``--dry_run`` then runs the
``32-true`` rows on the CPU with a few batches an epoch, to check the script (its figures mean nothing).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.precision import network
from fmnist.model import FashionCNN

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("default.yaml", "tuned.yaml")
PRECISIONS = ("32-true", "bf16-mixed")
EPOCHS = 2
TRAIN_IMAGES = 55_000
#: ``--dry_run``: training batches an epoch, and bare steps timed.
DRY_RUN_BATCHES = 3


def run_fit(config: str, precision: str, data_dir: str, dry_run: bool) -> dict:
    """One ``fit`` of ``configs/<config>`` in ``precision``; its seconds per epoch and peak GPU memory."""
    from benchmarks.bench import EpochTimer
    from fmnist.cli import FashionCLI
    from fmnist.quiet import quiet_lightning

    quiet_lightning()
    with tempfile.TemporaryDirectory(prefix="fmnist-gpu-") as tmp:
        args = ["fit", "--config", str(REPO / "configs" / config), "--trainer.max_epochs", str(EPOCHS),
                "--trainer.precision", precision, "--trainer.accelerator", "cpu" if dry_run else "gpu",
                "--trainer.devices", "1", "--trainer.enable_progress_bar", "false", "--test_after_fit", "false",
                "--data.data_dir", data_dir, "--trainer.logger.init_args.save_dir", f"{tmp}/runs",
                "--trainer.callbacks+=benchmarks.bench.EpochTimer"]  # fmt: skip
        if dry_run:
            args += ["--trainer.limit_train_batches", str(DRY_RUN_BATCHES), "--trainer.limit_val_batches", "2"]
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        cli = FashionCLI(args)
        timer = next(callback for callback in cli.trainer.callbacks if isinstance(callback, EpochTimer))
        memory = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
    return {"epochs": timer.seconds, "peak_mib": memory / 2**20}


def bare_step(config: str, precision: str, dry_run: bool) -> float:
    """Milliseconds of one training step of the configuration's network and batch size, on random data."""
    kwargs, batch_size, smoothing = network(config)
    device = torch.device("cpu" if dry_run else "cuda")
    torch.manual_seed(0)
    model = FashionCNN(**kwargs).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 1, 28, 28, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(model(images), labels, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warmup, timed = (1, DRY_RUN_BATCHES) if dry_run else (50, 500)
    for _ in range(warmup):
        step()
    if dry_run:
        start = time.perf_counter()
        for _ in range(timed):
            step()
        return (time.perf_counter() - start) / timed * 1000
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    begin.record()
    for _ in range(timed):
        step()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / timed


def run_child(config: str, precision: str, data_dir: str, dry_run: bool) -> dict:
    """One configuration and precision in a process of its own; a failure stops here with its own message."""
    command = [sys.executable, "-m", "benchmarks.gpu", "--part", f"{config}:{precision}", "--data_dir", data_dir]
    done = subprocess.run(command + ["--dry_run"] * dry_run, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        message = "\n".join(done.stderr.strip().splitlines()[-20:]) or done.stdout.strip()
        print(
            f"benchmarks.gpu: {config} in {precision} failed (exit status {done.returncode}):\n{message}",
            file=sys.stderr,
        )
        raise SystemExit(done.returncode if done.returncode > 0 else 1)
    return json.loads(done.stdout.strip().splitlines()[-1])


def hardware() -> str:
    from fmnist.hardware import cpu_description

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU (--dry_run: CPU)"
    return f"{gpu}; CPU {cpu_description()[0]}; torch {torch.__version__}, CUDA {torch.version.cuda}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default="./data", help="as fmnist's --data.data_dir (default: ./data)")
    parser.add_argument(
        "--dry_run", action="store_true", help="32-true on the CPU, a few batches: checks the script only"
    )
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: one configuration:precision in this process
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run:
        print(
            "benchmarks.gpu: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if args.part:
        from fmnist.errors import InputError

        config, precision = args.part.split(":")
        try:
            result = run_fit(config, precision, args.data_dir, args.dry_run)
        except InputError as err:  # the user's to fix: one message, no traceback
            print(f"fmnist: error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        result["step_ms"] = bare_step(config, precision, args.dry_run)
        print(json.dumps(result))
        return

    start = time.monotonic()
    print(f"fmnist GPU check: {EPOCHS} epochs of fit per row, every callback, no test; {hardware()}\n")
    print("| config | precision | s/epoch (1st, 2nd) | images/s (2nd epoch, validation included) | bare step | bare step x 1 epoch | peak GPU memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for config in CONFIGS:
        for precision in PRECISIONS[:1] if args.dry_run else PRECISIONS:
            r = run_child(config, precision, args.data_dir, args.dry_run)
            _, batch_size, _ = network(config)
            first, second = r["epochs"][0], r["epochs"][-1]
            epoch_step_s = r["step_ms"] / 1000 * -(-TRAIN_IMAGES // batch_size)
            print(f"| `{config}` | `{precision}` | {first:.1f}, {second:.1f} | {TRAIN_IMAGES / second:,.0f} |"
                  f" {r['step_ms']:.2f} ms | {epoch_step_s:.1f} s | {r['peak_mib']:,.0f} MiB |", flush=True)  # fmt: skip
    print(f"\n{time.monotonic() - start:.0f} s in all")


if __name__ == "__main__":
    main()
