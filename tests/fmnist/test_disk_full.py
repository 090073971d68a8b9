"""A full disk: one ``fmnist: error:`` line naming the file, what was kept and how to go on; no cut checkpoint.

The real thing needs a small file system: a tmpfs, which only root may mount (CI runs the tests
as root); without root these tests are skipped. Checkpoints are written by ``AtomicCheckpointIO``
(beside their target, then renamed), so a full disk leaves none cut short and no temporary file.
"""

import errno
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml

from callbacks import AtomicCheckpointIO, CheckpointWriteError
from fmnist.diskfull import disk_full_message
from fmnist.main import main
from tests.helpers import QUIET, environment, events

RUN = "fashion_mnist_lr_0.001_bs_64/version_0"  # the default run name of the synthetic fits


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``small_disk("9m")``: a tmpfs of that size at ``tmp_path/disk``, unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if getattr(os, "geteuid", lambda: -1)() != 0:
            pytest.skip("mounting a small tmpfs needs root (CI runs as root); test_a_cut_checkpoint_* injects it")
        point = tmp_path / "disk"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    try:
        yield mount
    finally:
        for point in mounted:
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "--lazy", str(point)], check=True)  # a file still open in this process


def error_line(err: str) -> str:
    """The one ``fmnist: error:`` line of ``err``, checking that nothing else went wrong loudly."""
    lines = [line for line in err.splitlines() if line.startswith("fmnist: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


def assert_whole_checkpoints(folder: Path) -> list[str]:
    """No checkpoint a resume could read is cut short, and no temporary file is left; returns their names."""
    names = sorted(p.name for p in folder.glob("*.ckpt"))
    assert all(zipfile.is_zipfile(folder / name) for name in names), names
    assert sorted(p.name for p in folder.iterdir()) == names, "only whole checkpoints"
    return names


def fill(disk: Path) -> Path:
    """Write a file into ``disk`` until it is full; delete it to free the space again."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(descriptor, bytes(65536))
    except OSError as err:
        assert err.errno == errno.ENOSPC
    try:  # the last few pages
        while True:
            os.write(descriptor, bytes(512))
    except OSError:
        pass
    os.close(descriptor)
    return filler


@pytest.mark.slow  # mounts a file system
def test_a_full_disk_ends_fit_with_one_line_and_it_resumes_after(fmnist, small_disk, capsys) -> None:
    disk = small_disk("9m")  # two checkpoints of 3.5 MB and the events fit, a third does not
    save_dir = ("--trainer.logger.init_args.save_dir", str(disk / "runs"))
    assert fmnist("fit", *save_dir, "--trainer.max_epochs", "3") == 2
    line = error_line(capsys.readouterr().err)
    run = disk / "runs" / RUN
    assert line.startswith(f"fmnist: error: no space left on device writing {run}/checkpoints/best-epoch01-")
    assert "(a checkpoint takes 3." in line and "MB; the incomplete file was deleted)" in line
    assert line.endswith(f"the run folder {run} keeps the event files written so far and the checkpoints "
                         f"best-epoch00-acc0.1719.ckpt, last.ckpt; free space there (or move {disk / 'runs'} to a disk "
                         "with room and pass its new place as --trainer.logger.init_args.save_dir), then resume with "
                         "--ckpt_path last")  # fmt: skip
    assert assert_whole_checkpoints(run / "checkpoints") == ["best-epoch00-acc0.1719.ckpt", "last.ckpt"]
    assert [p.step for p in events(run).Scalars("Loss/train")] == [3], "epoch 0 reads back (epoch 1 ends on the save)"

    subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)  # "free space there"
    assert fmnist("fit", *save_dir, "--trainer.max_epochs", "3", "--ckpt_path", "last") == 0
    assert [p.step for p in events(run).Scalars("Loss/train")] == [3, 7, 11]
    assert "last.ckpt" in assert_whole_checkpoints(run / "checkpoints")


@pytest.mark.slow  # mounts a file system
def test_a_full_disk_under_the_event_file_names_it(data_dir: Path, small_disk) -> None:
    disk = small_disk("100k")  # full before the first epoch ends: TensorBoard's writer thread fails
    # a process of its own: pytest would catch the writer thread's traceback before Python prints it
    data = ["--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false", *QUIET]
    done = subprocess.run(
        [sys.executable, "-m", "fmnist", "fit", *data, "--trainer.logger.init_args.save_dir", str(disk / "runs")],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    line = error_line(done.stderr)  # no traceback from the writer thread either
    assert "Exception in thread" not in done.stderr
    run = disk / "runs" / RUN
    event_file = next(run.glob("events.out.tfevents.*"))
    assert line.startswith(f"fmnist: error: no space left on device writing {event_file};")
    assert "and no checkpoint; nothing to resume from" in line and "then run the command again" in line
    assert events(run).Scalars("lr-Adam"), "what was written before reads back"


@pytest.mark.slow  # mounts a file system
def test_a_full_temporary_folder_no_longer_matters(fmnist, small_disk, monkeypatch) -> None:
    # Lightning's own CheckpointIO stages each checkpoint there; AtomicCheckpointIO writes beside the target
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk("1m")))
    assert fmnist("fit", "--trainer.max_epochs", "1") == 0
    assert assert_whole_checkpoints(Path("runs") / RUN / "checkpoints") == ["best-epoch00-acc0.1719.ckpt", "last.ckpt"]


@pytest.mark.slow  # mounts a file system
def test_a_full_disk_ends_a_sweep_with_one_line(fmnist, small_disk, tmp_path: Path, capsys) -> None:
    disk = small_disk("9m")  # the first trial's two checkpoints fit, the second trial's do not
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"n_trials": 2, "space": {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    )
    args = ("--space", str(space), "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(disk))
    database = f"sqlite:///{tmp_path / 'study.db'}"  # elsewhere: only the trials' disk is full
    assert fmnist("sweep", *args, "--storage", database) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"fmnist: error: no space left on device writing {disk}/space/trial_1/checkpoints/")
    assert "the incomplete file was deleted" in line
    assert line.endswith("keeps the finished trials; free space, then run the same sweep command again to go on")
    for trial in ("trial_0", "trial_1"):
        assert_whole_checkpoints(disk / "space" / trial / "checkpoints")


@pytest.mark.slow  # mounts a file system; real worker processes
def test_a_full_disk_ends_a_sweep_of_two_workers_with_one_line(data_dir: Path, small_disk, tmp_path: Path) -> None:
    disk = small_disk("9m")  # both workers' trials write checkpoints there until it is full
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"n_trials": 6, "space": {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    )
    data = ["--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false"]
    done = subprocess.run(
        [sys.executable, "-m", "fmnist", "sweep", "--space", str(space), "--workers", "2", *data,
         "--trainer.max_epochs", "1", "--trainer.logger.init_args.save_dir", str(disk),
         "--storage", f"sqlite:///{tmp_path / 'study.db'}"],
        env=environment(PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    line = error_line(done.stderr)  # one line for the sweep, whichever worker found the disk full first
    assert line.startswith(f"fmnist: error: no space left on device writing {disk}/space/trial_"), line
    for folder in (disk / "space").glob("trial_*/checkpoints"):
        assert_whole_checkpoints(folder)


@pytest.mark.slow  # mounts a file system
def test_a_full_study_database_ends_the_sweep_with_one_line_and_it_resumes(
    fmnist, small_disk, tmp_path, capsys
) -> None:
    disk = small_disk("1m")  # the trials' runs are elsewhere: only the database's disk fills
    space, database = tmp_path / "space.yaml", disk / "study.db"
    args = ["--space", str(space), "--trainer.max_epochs", "1", "--storage", f"sqlite:///{database}"]
    lr = {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    space.write_text(yaml.safe_dump({"n_trials": 1, "space": lr}))
    assert fmnist("sweep", *args) == 0
    filler = fill(disk)
    space.write_text(yaml.safe_dump({"n_trials": 3, "space": lr}))
    capsys.readouterr()
    assert fmnist("sweep", *args) == 2, "the next trial cannot be recorded"
    assert error_line(capsys.readouterr().err) == (
        f"fmnist: error: no space left on device writing {database}; the study's database {database} keeps the"
        " finished trials; free space, then run the same sweep command again to go on"
    )
    filler.unlink()  # "free space"
    assert fmnist("sweep", *args) == 0
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{disk / 'study.db'}")
    assert sorted(t.number for t in study.trials if t.state.is_finished()) == [0, 1, 2]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


@pytest.mark.slow  # mounts a file system
@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_a_full_disk_ends_every_command_with_one_line(fmnist, small_disk, command, capsys) -> None:
    disk = small_disk("9m")
    save_dir = ("--trainer.logger.init_args.save_dir", str(disk / "runs"))
    assert fmnist("fit", *save_dir, "--trainer.max_epochs", "1", "--test_after_fit", "false") == 0
    run = disk / "runs" / RUN
    before = {p: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    fill(disk)
    capsys.readouterr()
    assert fmnist(command, *save_dir, "--ckpt_path", "last") == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"fmnist: error: no space left on device writing {run}/"), line
    assert line.endswith(
        f"the run folder {run} keeps the event files written so far and the checkpoints "
        "best-epoch00-acc0.1719.ckpt, last.ckpt; free space there, then run the command again"
    )
    assert {p: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


@pytest.mark.slow  # mounts a file system
def test_a_checkpoint_that_does_not_fit_leaves_the_previous_one_whole(small_disk) -> None:
    target = small_disk("1m") / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(1000)}, target)
    with pytest.raises(CheckpointWriteError) as raised:
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(500_000)}, target)  # 2 MB
    assert (raised.value.errno, raised.value.filename) == (errno.ENOSPC, str(target))
    assert raised.value.nbytes > 2_000_000 and isinstance(raised.value.__cause__, OSError)
    assert torch.load(target)["weights"].shape == (1000,), "the previous checkpoint, whole"
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"], "no temporary file left"


@pytest.mark.slow  # mounts a file system
@pytest.mark.skipif(os.name == "nt", reason="without flock, leftovers stay")
def test_the_leftover_of_a_killed_writer_frees_its_space_for_the_next_save(small_disk) -> None:
    target = small_disk("1m") / "last.ckpt"
    (target.parent / ".last.ckpt.0123abcd.tmp").write_bytes(bytes(700_000))  # a writer killed mid-write left it
    AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(150_000)}, target)  # 600 kB: fits only without it
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.parametrize("error", [TypeError, KeyboardInterrupt])
def test_a_checkpoint_that_fails_to_save_leaves_no_file(tmp_path: Path, error: type[BaseException]) -> None:
    target = tmp_path / "checkpoints" / "best.ckpt"
    with pytest.raises(error):  # e.g. a callback's state that cannot be pickled, or Ctrl-C half-way
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(3), "state": Fails(error)}, target)
    assert not target.parent.exists() or not list(target.parent.iterdir())
    AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(3)}, target)
    with pytest.raises(error):
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(3), "state": Fails(error)}, target)
    assert [p.name for p in target.parent.iterdir()] == ["best.ckpt"]
    assert torch.equal(AtomicCheckpointIO().load_checkpoint(target)["weights"], torch.ones(3)), "the previous one"


class Fails:
    """Raises ``error`` when ``torch.save`` reaches it."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __reduce__(self) -> Any:
        raise self.error


def test_fmnist_debug_shows_the_traceback_of_a_full_disk(monkeypatch, capsys) -> None:
    full = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "runs/x/version_0/predictions.csv")

    def fail(*args: Any, **kwargs: Any) -> None:
        raise full

    monkeypatch.setattr("fmnist.main.FashionCLI", fail)
    hook = threading.excepthook
    with pytest.raises(SystemExit) as exit:
        main(["predict"])
    assert exit.value.code == 2
    assert error_line(capsys.readouterr().err) == (
        "fmnist: error: no space left on device writing runs/x/version_0/predictions.csv; "
        "free space there, then run the command again"
    )
    monkeypatch.setenv("FMNIST_DEBUG", "1")
    with pytest.raises(OSError) as raised:
        main(["predict"])
    assert raised.value is full
    assert threading.excepthook is hook, "each call puts back the hook it found"


def test_other_os_errors_are_no_full_disk() -> None:
    assert disk_full_message(OSError(errno.EACCES, "Permission denied", "x"), "fit") is None
    assert disk_full_message(ValueError("No space left on device"), "fit") is None
