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
#: A schedule whose every step differs: its rate, logged at every step, shows where a resumed run goes on
ONE_CYCLE = [
    "--model.scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--model.scheduler.init_args.max_lr", "0.01",
    "--model.scheduler_interval", "step", "--trainer.log_every_n_steps", "1",
]  # fmt: skip


def _fit_args(data: Path) -> list[str]:
    return [
        "fit", "--data.data_dir", str(data), "--data.download", "false", "--data.val_size", "128",
        "--data.batch_size", "8", "--trainer.max_epochs", str(EPOCHS), "--test_after_fit", "false", *QUIET,
    ]  # fmt: skip


def _slow(stage: str) -> list[str]:
    """Batches of ``stage`` made slower (:mod:`tests.fmnist.slow_steps`), so that a signal lands in it."""
    seconds = "0.05" if stage == "train" else "0.3"  # 32 training batches (1.6 s), 16 validation batches (4.8 s)
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
    args = [*_fit_args(data), *ONE_CYCLE, *_slow(stage)]
    # 0.5 s after the first epoch's checkpoint: in the second epoch's training; 2 s: past it (a few hundred ms
    # on a slow CPU), in its validation
    done = _stopped(args, signal.SIGTERM, tmp_path, after=0.5 if stage == "train" else 2.0)
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
        [sys.executable, "-m", "fmnist", *args, "--ckpt_path", "last"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    steps = [event.step for event in events(run).Scalars("Accuracy/val")]
    assert steps == [32 * epoch - 1 for epoch in range(1, EPOCHS + 1)], "every epoch once, at the steps of one run"
    assert [event.step for event in events(run).Scalars("Loss/train")] == steps
    # the one-cycle schedule goes on where it was: every step's learning rate as in a run never stopped
    (tmp_path / "reference").mkdir()
    reference = subprocess.run(
        [sys.executable, "-m", "fmnist", *args], cwd=tmp_path / "reference", capture_output=True, text=True,
        timeout=300, env=environment(),
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    (whole,) = (tmp_path / "reference" / "runs").glob("*/version_0")
    rates = {event.step: event.value for event in events(run).Scalars("lr-Adam")}
    expected = {event.step: event.value for event in events(whole).Scalars("lr-Adam")}
    assert len(events(run).Scalars("lr-Adam")) == len(expected) == 32 * EPOCHS, "every step's rate, once"
    assert rates == pytest.approx(expected, rel=1e-6)


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
    assert stop_line(None, signal.SIGTERM, ["export", "--ckpt_path", "best"]) == (
        "fmnist: stopped by SIGTERM during the export; nothing was written: run the command again"
    )


@pytest.mark.slow
def test_sigterm_ends_validate_with_143_and_one_line(tmp_path: Path) -> None:
    """Any command: a validation SIGTERM stops at its next batch, and nothing half-written is claimed."""
    data = write_dataset(tmp_path / "data")
    fitted = subprocess.run(
        [sys.executable, "-m", "fmnist", *_fit_args(data), "--trainer.max_epochs", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=environment(),
    )  # fmt: skip
    assert fitted.returncode == 0, fitted.stderr
    (last,) = (tmp_path / "runs").glob("*/version_0/checkpoints/last.ckpt")
    validate = [
        "validate", "--data.data_dir", str(data), "--data.download", "false", "--data.val_size", "128",
        "--data.batch_size", "8", "--ckpt_path", str(last), *_slow("validation"), *QUIET,
    ]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "fmnist", *validate],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while "fmnist validate:" not in (process.stdout.readline() if process.poll() is None else "fmnist validate:"):
        assert time.monotonic() < deadline
    time.sleep(2)  # past the data's set-up, into the validation's batches (0.3 s each, 4.8 s in all)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("fmnist:")]
    assert line.startswith("fmnist: stopped by SIGTERM in validate at epoch ")
    assert line.endswith("nothing is written for an unfinished validate: run the command again")
