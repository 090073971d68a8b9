"""Shared fixtures: a hermetic folder per test, tiny synthetic Fashion-MNIST files and an in-process ``python -m fmnist``.

Plain helpers (data writers, event readers, the TensorBoard server) are in :mod:`tests.helpers`.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from fmnist import idx
from fmnist.main import main
from tests.helpers import QUIET, write_dataset


@pytest.fixture(autouse=True)
def hermetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test runs in its own folder, never sees the system copy of the dataset, and leaves no global state.

    What a test's code sets for the process (ddp leaves ``MASTER_ADDR`` and the like in ``os.environ``;
    ``Trainer(deterministic=True)`` switches torch's deterministic algorithms on, a sweep worker sets
    torch's threads) is undone after it,
    as Lightning's own conftest does, so no test sees another's leftovers.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", tmp_path / "no-system-dataset")
    monkeypatch.setattr("sys.argv", ["fmnist"])  # pytest's own arguments are not fmnist's
    environ = dict(os.environ)
    deterministic, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    os.environ.clear()
    os.environ.update(environ)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


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
