"""Stopping is an event: real signals to real ``python -m fmnist`` processes, and the line each prints.

SIGTERM (``kill``, ``timeout``, a scheduler's preemption) ends a command with 143, Ctrl-C with 130;
one ``fmnist: stopped`` line says where, what the run folder keeps and the command that resumes. A
fit stopped by SIGTERM keeps ``last.ckpt`` of that step, and ``--ckpt_path last`` goes on as one run.
"""

import glob
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fmnist.stops import Stop, stop_line
from tests.helpers import QUIET, environment, events, write_dataset

EPOCHS = 4


def _fit_args(data: Path) -> list[str]:
    return [
        "fit", "--data.data_dir", str(data), "--data.download", "false", "--data.val_size", "128",
        "--data.batch_size", "8", "--trainer.max_epochs", str(EPOCHS), "--test_after_fit", "false", *QUIET,
    ]  # fmt: skip


def _slow(stage: str) -> list[str]:
    """Batches of ``stage`` made slower (:mod:`tests.fmnist.slow_steps`), so that a signal lands in it."""
    seconds = "0.05" if stage == "train" else "0.2"  # 32 training batches, 16 validation batches
    return [
        "--trainer.callbacks+", "tests.fmnist.slow_steps.SlowSteps",
        "--trainer.callbacks.stage", stage, "--trainer.callbacks.seconds", seconds,
    ]  # fmt: skip


def _stopped(args: list[str], signum: signal.Signals, cwd: Path, after: float = 0.5) -> subprocess.CompletedProcess:
    """Runs ``python -m fmnist ARGS``; sends ``signum`` ``after`` seconds after the first epoch's ``last.ckpt``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not glob.glob(str(cwd / "runs/*/version_0/checkpoints/last.ckpt")):
        assert process.poll() is None and time.monotonic() < deadline, "the fit ended before its first epoch did"
        time.sleep(0.05)
    time.sleep(after)  # into the second epoch
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["train", "validation"])
def test_sigterm_keeps_the_moment_and_the_run_goes_on_as_one(tmp_path: Path, stage: str) -> None:
    """Stopped while training, the checkpoint is of that step; while validating, of the last finished epoch
    (a resumed run does not validate a half-validated epoch again). Either way the run goes on as one."""
    data = write_dataset(tmp_path / "data")
    done = _stopped([*_fit_args(data), *_slow(stage)], signal.SIGTERM, tmp_path)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr and "Received SIGTERM" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("fmnist:")]
    (run,) = (tmp_path / "runs").glob("*/version_0")
    last = run / "checkpoints" / "last.ckpt"
    kept = "this step" if stage == "train" else "the last finished epoch"
    assert line.startswith("fmnist: stopped by SIGTERM in fit at epoch 2, step ")
    assert f"keeps its logs and last.ckpt of {kept}; resume with: python -m fmnist fit --data.data_dir {data}" in line
    assert line.endswith(f"--ckpt_path {last.relative_to(tmp_path)}")
    saved = torch.load(last, map_location="cpu", weights_only=True)
    if stage == "train":
        assert saved["epoch"] == 1 and 32 < saved["global_step"] < 64, "the step of the stop, not an epoch's end"
    else:
        assert saved["global_step"] == 32, "the first epoch's checkpoint, kept"

    resumed = subprocess.run(
        [sys.executable, "-m", "fmnist", *_fit_args(data), "--ckpt_path", "last"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    steps = [event.step for event in events(run).Scalars("Accuracy/val")]
    assert steps == [32 * epoch - 1 for epoch in range(1, EPOCHS + 1)], "every epoch once, at the steps of one run"
    assert [event.step for event in events(run).Scalars("Loss/train")] == steps


@pytest.mark.slow
def test_ctrl_c_ends_fit_with_130_and_one_line(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data")
    done = _stopped([*_fit_args(data), *_slow("train")], signal.SIGINT, tmp_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("fmnist:")]
    assert line.startswith("fmnist: stopped by Ctrl-C (SIGINT) in fit at epoch 2, step ")
    assert "keeps its logs and last.ckpt of the last finished epoch; resume with: python -m fmnist fit" in line


def test_the_stop_line_says_what_the_run_keeps() -> None:
    run = Path("runs/r/version_0")
    fit = Stop(signal.SIGTERM, "fit", 2, 150, run, run / "checkpoints" / "last.ckpt", saved_now=True)
    args = ["fit", "--config", "my.yaml", "--ckpt_path", "old.ckpt", "--ckpt_path=older.ckpt"]
    assert stop_line(fit, signal.SIGTERM, args) == (
        "fmnist: stopped by SIGTERM in fit at epoch 3, step 150; runs/r/version_0 keeps its logs and last.ckpt"
        " of this step; resume with: python -m fmnist fit --config my.yaml --ckpt_path"
        " runs/r/version_0/checkpoints/last.ckpt"
    )
    assert stop_line(Stop(signal.SIGINT, "fit", 0, 3, run), signal.SIGINT, args).endswith(
        "runs/r/version_0 keeps the logs, no checkpoint yet: run the command again"
    )
    assert stop_line(Stop(signal.SIGTERM, "test", 0, 0, run), signal.SIGTERM, ["test"]).endswith(
        "nothing is written for an unfinished test: run the command again"
    )
    assert stop_line(None, signal.SIGINT, ["fit"]) == (
        "fmnist: stopped by Ctrl-C (SIGINT) before training began; nothing was written: run the command again"
    )
