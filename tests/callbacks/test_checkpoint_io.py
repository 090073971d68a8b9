"""``callbacks.AtomicCheckpointIO`` where Lightning's ``TorchCheckpointIO`` would write something else.

URLs go where fsspec says, long names fit, a killed writer's leftover goes with the next save of its
target (but never a live writer's), and the folder is synced after the rename. A full disk and a failed
``torch.save`` are in ``tests/fmnist/test_disk_full.py``; Lightning's own tests in
``test_checkpoint_io_lightning.py``.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
import torch

from callbacks import AtomicCheckpointIO
from callbacks.checkpoint_io import sync_folder
from tests.helpers import environment

ONES = {"weights": torch.ones(3)}
posix = pytest.mark.skipif(os.name == "nt", reason="POSIX only: flock, kill -9 and folders that can be synced")


def saved_weights(path: str | Path) -> torch.Tensor:
    return AtomicCheckpointIO().load_checkpoint(path)["weights"]


@pytest.mark.parametrize("url", ["simplecache::memory://bucket/x.ckpt", "memory://bucket/x.ckpt"])
def test_a_url_fsspec_reads_as_remote_is_written_there(url: str, tmp_path: Path) -> None:
    memory = fsspec.filesystem("memory")
    try:
        AtomicCheckpointIO().save_checkpoint(ONES, url)
        with fsspec.open("memory://bucket/x.ckpt", "rb") as file:
            assert torch.equal(torch.load(file)["weights"], ONES["weights"])
        assert torch.equal(saved_weights(url), ONES["weights"])
    finally:
        if memory.exists("/bucket"):
            memory.rm("/bucket", recursive=True)
    assert list(Path.cwd().iterdir()) == [], "no local folder named after the URL"


def test_a_file_url_is_written_to_its_local_path(tmp_path: Path) -> None:
    AtomicCheckpointIO().save_checkpoint(ONES, f"file://{tmp_path}/checkpoints/x.ckpt")
    assert os.listdir(tmp_path / "checkpoints") == ["x.ckpt"]
    assert torch.equal(saved_weights(tmp_path / "checkpoints" / "x.ckpt"), ONES["weights"])


@pytest.mark.parametrize(
    "name", ["x" * 237 + ".ckpt", "x" * 250 + ".ckpt", "é" * 125 + ".ckpt"], ids=["242", "255", "255-bytes-utf8"]
)
def test_a_name_as_long_as_the_folder_allows_is_saved(tmp_path: Path, name: str, monkeypatch) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    limit = getattr(os, "pathconf", lambda *_: 255)(folder, "PC_NAME_MAX")
    if limit < len(os.fsencode(name)):
        pytest.skip("this file system's names are shorter")
    renamed, replace = [], os.replace

    def recording_replace(source: str | Path, target: str | Path) -> None:
        renamed.append(Path(source).name)
        replace(source, target)

    monkeypatch.setattr(os, "replace", recording_replace)
    AtomicCheckpointIO().save_checkpoint(ONES, folder / name)
    assert torch.equal(saved_weights(folder / name), ONES["weights"])
    assert os.listdir(folder) == [name], "no temporary file left"
    [temporary] = renamed
    assert temporary.startswith(f".{name[:100]}") and temporary.endswith(".tmp"), "hidden, and named after its target"
    assert len(os.fsencode(temporary)) <= limit


#: A writer of a 200 MB checkpoint: long enough to be caught writing, in a process of its own.
WRITER = (
    "import sys, torch; from callbacks import AtomicCheckpointIO;"
    " AtomicCheckpointIO().save_checkpoint({'weights': torch.zeros(50_000_000)}, sys.argv[1])"
)


def kill_mid_write(target: Path) -> list[str]:
    """Start a writer of ``target``, ``kill -9`` it once its temporary file grows; the hidden files it left."""
    for _ in range(3):  # a writer that finishes before the poll sees its file is tried again
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=environment())
        try:
            deadline = time.monotonic() + 60
            while writer.poll() is None and time.monotonic() < deadline:
                if any(entry.stat().st_size for entry in os.scandir(target.parent) if entry.name.endswith(".tmp")):
                    os.kill(writer.pid, signal.SIGKILL)
                    assert writer.wait() == -signal.SIGKILL
                    return sorted(name for name in os.listdir(target.parent) if name.startswith("."))
                time.sleep(0.001)
        finally:
            writer.kill()
            writer.wait()
        target.unlink(missing_ok=True)
    pytest.fail("the writer finished three times before its temporary file was seen")


@pytest.mark.slow  # a process of its own that imports torch and Lightning (about 4 s)
@posix
def test_the_leftover_of_a_killed_writer_goes_with_the_next_save(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".best.ckpt.0123abcd.tmp").write_bytes(b"")  # another target's: not this save's to remove
    leftovers = kill_mid_write(folder / "last.ckpt")
    assert [name for name in leftovers if name.startswith(".last.ckpt.")], leftovers
    AtomicCheckpointIO().save_checkpoint(ONES, folder / "last.ckpt")
    assert sorted(os.listdir(folder)) == [".best.ckpt.0123abcd.tmp", "last.ckpt"]
    assert torch.equal(saved_weights(folder / "last.ckpt"), ONES["weights"])


#: A live writer, as far as a lock can tell: holds the file locked until its stdin closes.
HOLDER = (
    "import fcntl, sys; file = open(sys.argv[1], 'ab'); fcntl.flock(file, fcntl.LOCK_EX);"
    " print('locked', flush=True); sys.stdin.read()"
)


@posix
def test_a_temporary_file_a_live_writer_holds_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    live = folder / ".last.ckpt.0123abcd.tmp"
    live.write_bytes(b"half a checkpoint")
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, live], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as holder:
        assert holder.stdout.readline() == b"locked\n"
        AtomicCheckpointIO().save_checkpoint(ONES, folder / "last.ckpt")
        assert sorted(os.listdir(folder)) == [live.name, "last.ckpt"], "another process is still writing it"
        holder.stdin.close()
    assert holder.returncode == 0
    AtomicCheckpointIO().save_checkpoint(ONES, folder / "last.ckpt")
    assert os.listdir(folder) == ["last.ckpt"], "its writer gone, the next save removes it"


@posix
def test_the_folder_is_synced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[tuple[str, os.stat_result]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor: int) -> None:
        steps.append(("fsync", os.fstat(descriptor)))
        fsync(descriptor)

    def recording_replace(source: str | Path, target: str | Path) -> None:
        replace(source, target)
        steps.append(("replace", os.stat(target)))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(ONES, target)
    assert [step for step, _ in steps] == ["fsync", "replace", "fsync"]
    assert os.path.samestat(steps[0][1], os.stat(target)), "first the data"
    assert os.path.samestat(steps[2][1], os.stat(target.parent)), "then the folder that holds its new name"


@posix
def test_sync_folder_syncs_a_real_folder_and_closes_it(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    before = len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").is_dir() else None
    sync_folder(tmp_path)
    sync_folder(str(tmp_path))
    assert before is None or len(os.listdir("/proc/self/fd")) == before, "no descriptor left open"
    with pytest.raises(FileNotFoundError):
        sync_folder(tmp_path / "absent")
