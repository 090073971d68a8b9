"""What several test files share: the repository, synthetic data, event files, a subprocess's environment.

Fixtures live in ``conftest.py``; plain functions and classes live here, so that tests import
them like any module rather than from ``conftest``.
"""

import contextlib
import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import idx
from fmnist.main import main

REPO = Path(__file__).resolve().parents[1]
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


def fit_in(root: Path, *args: str) -> list[Path]:
    """``python -m fmnist fit ARGS`` (quiet) in this process, from the folder ``root``; the run folders it holds."""
    argv, sys.argv = sys.argv, ["fmnist"]  # LightningCLI reads sys.argv; pytest's own arguments are not fmnist's
    try:
        with contextlib.chdir(root):
            main(["fit", *args, *QUIET])
    finally:
        sys.argv = argv
    return run_dirs(root / "runs")


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


def environment(**extra: str) -> dict[str, str]:
    """The environment of a ``python -m fmnist`` (or tool) subprocess: this one's, the repository importable, and ``extra``."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}
