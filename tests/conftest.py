"""Shared fixtures: a hermetic folder per test, tiny synthetic Fashion-MNIST files and an in-process ``python -m fmnist``.

Plain helpers (data writers, event readers, the TensorBoard server) are in :mod:`tests.helpers`.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from fmnist import idx
from fmnist.main import main
from tests.helpers import QUIET, write_dataset


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
