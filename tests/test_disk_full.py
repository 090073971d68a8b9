"""A full disk: one ``fmnist: error:`` line naming the file, what was kept and how to go on; no cut checkpoint.

The real thing needs a small file system: a tmpfs, which only root may mount (CI runs the tests
as root). Without one, the same failure is injected where Lightning saves a checkpoint.
"""

import errno
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fmnist.diskfull import disk_full_message
from fmnist.main import main
from tests.helpers import events

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
    """No checkpoint a resume could read is cut short; returns their names."""
    names = sorted(p.name for p in folder.glob("*.ckpt"))
    assert all(zipfile.is_zipfile(folder / name) for name in names), names
    return names


@pytest.mark.slow  # mounts a file system
def test_a_full_disk_ends_fit_with_one_line_and_it_resumes_after(fmnist, small_disk, capsys) -> None:
    disk = small_disk("9m")  # two checkpoints of 3.5 MB and the events fit, a third does not
    save_dir = ("--trainer.logger.init_args.save_dir", str(disk / "runs"))
    assert fmnist("fit", *save_dir, "--trainer.max_epochs", "3") == 2
    line = error_line(capsys.readouterr().err)
    run = disk / "runs" / RUN
    assert line.startswith(f"fmnist: error: no space left on device writing {run}/checkpoints/best-epoch01-")
    assert "the incomplete file was deleted" in line and "a checkpoint takes 3." in line
    assert f"the run folder {run} keeps" in line and line.endswith("then resume with --ckpt_path last")
    assert assert_whole_checkpoints(run / "checkpoints") == ["best-epoch00-acc0.1719.ckpt", "last.ckpt"]
    assert [p.step for p in events(run).Scalars("Loss/train")] == [3], "epoch 0 reads back (epoch 1 ends on the save)"

    subprocess.run(["mount", "-o", "remount,size=32m", str(disk)], check=True)  # "free space there"
    assert fmnist("fit", *save_dir, "--trainer.max_epochs", "3", "--ckpt_path", "last") == 0
    assert [p.step for p in events(run).Scalars("Loss/train")] == [3, 7, 11]
    assert "last.ckpt" in assert_whole_checkpoints(run / "checkpoints")


@pytest.mark.slow  # mounts a file system
def test_a_full_disk_under_the_event_file_names_it(fmnist, small_disk, capsys) -> None:
    disk = small_disk("100k")  # full before the first epoch ends: TensorBoard's writer thread fails
    assert fmnist("fit", "--trainer.logger.init_args.save_dir", str(disk / "runs")) == 2
    line = error_line(capsys.readouterr().err)  # no traceback from the writer thread either
    run = disk / "runs" / RUN
    event_file = next(run.glob("events.out.tfevents.*"))
    assert line.startswith(f"fmnist: error: no space left on device writing {event_file};")
    assert "and no checkpoint; nothing to resume from" in line and "then run the command again" in line
    assert events(run).Scalars("lr-Adam"), "what was written before reads back"


@pytest.mark.slow  # mounts a file system
def test_a_full_temporary_folder_is_named(fmnist, small_disk, monkeypatch, capsys) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk("1m")))  # fsspec stages each checkpoint there
    assert fmnist("fit", "--trainer.max_epochs", "1") == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"fmnist: error: no space left on device in the temporary folder {tempfile.tempdir},")
    assert line.endswith(
        f"free space in {tempfile.tempdir} or set TMPDIR to a folder with room, then run the command again"
    )
    assert not list(Path("runs").rglob("*.ckpt"))


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
    assert all(zipfile.is_zipfile(p) for p in disk.rglob("*.ckpt"))


def cut_checkpoint(monkeypatch: pytest.MonkeyPatch, number: int) -> None:
    """Checkpoint save ``number`` fails as a move across file systems does on a full disk: cut short."""
    save, calls = TorchCheckpointIO.save_checkpoint, []

    def save_until_full(self: TorchCheckpointIO, checkpoint: dict, path: str | Path, storage_options=None) -> None:
        save(self, checkpoint, path, storage_options)
        calls.append(path)
        if len(calls) == number:
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/tmpcut", None, str(path))  # None: winerror

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", save_until_full)


def test_a_cut_checkpoint_is_deleted_and_fit_says_how_to_resume(fmnist, monkeypatch, capsys) -> None:
    cut_checkpoint(monkeypatch, 3)  # epoch 0's best and last are saved, epoch 1's better best is cut
    assert fmnist("fit", "--trainer.max_epochs", "2") == 2
    line = error_line(capsys.readouterr().err)
    run = Path("runs") / RUN
    assert line.startswith(f"fmnist: error: no space left on device writing {run}/checkpoints/best-epoch01-")
    assert line.endswith(f"the run folder {run} keeps the event files written so far and the checkpoints "
                         "best-epoch00-acc0.1719.ckpt, last.ckpt; free space there (or move runs to a disk with room "
                         "and pass its new place as --trainer.logger.init_args.save_dir), then resume with "
                         "--ckpt_path last")  # fmt: skip
    assert assert_whole_checkpoints(run / "checkpoints") == ["best-epoch00-acc0.1719.ckpt", "last.ckpt"]
    assert [p.step for p in events(run).Scalars("Loss/train")] == [3], "epoch 0 reads back (epoch 1 ends on the save)"


def test_fmnist_debug_shows_the_traceback_of_a_full_disk(monkeypatch, capsys) -> None:
    full = OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "runs/x/version_0/predictions.csv")

    def fail(args: list[str]) -> None:
        raise full

    monkeypatch.setattr("fmnist.main.FashionCLI", fail)
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


def test_other_os_errors_are_no_full_disk() -> None:
    assert disk_full_message(OSError(errno.EACCES, "Permission denied", "x"), "fit") is None
    assert disk_full_message(ValueError("No space left on device"), "fit") is None
