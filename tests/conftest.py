"""Shared fixtures: tiny synthetic Fashion-MNIST files and an in-process ``python -m fmnist``."""

import gzip
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import idx
from fmnist.cli import main

REAL_DATA = idx.SYSTEM_DATA_DIR
#: Flags that keep in-process runs small and their output short.
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file, as the Fashion-MNIST files are laid out."""
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_dataset(folder: Path, train: int = 384, test: int = 128, compress: bool = False, seed: int = 0) -> Path:
    """Four IDX files of random images whose brightness depends on the label, so a CNN can learn."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        images = rng.integers(0, 60, (count, 28, 28), dtype=np.uint8)
        images[:, 4:24, 4:24] += (labels * 19)[:, None, None].astype(np.uint8)  # a learnable signal
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return folder


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder and never sees the system copy of the dataset."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", tmp_path / "no-system-dataset")
    monkeypatch.setattr("sys.argv", ["fmnist"])  # pytest's own arguments are not fmnist's


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "data")


@pytest.fixture
def fmnist(data_dir: Path) -> Callable[..., int]:
    """Run ``python -m fmnist`` in-process on the synthetic data; returns the exit status."""

    def run(subcommand: str, *args: str) -> int:
        argv = [subcommand, "--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false"]
        try:
            main([*argv, *QUIET, *args])
        except SystemExit as exit:
            return int(exit.code or 0)
        return 0

    return run


def events(run_dir: Path) -> EventAccumulator:
    """Everything TensorBoard would read from one run folder."""
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def run_dirs(root: Path = Path("runs")) -> list[Path]:
    """Run folders under ``root``: the folders that hold event files."""
    return sorted({path.parent for path in root.rglob("events.out.tfevents.*")})
