"""Fixtures of the fmnist tests that several files share."""

from pathlib import Path

import pytest

from tests.helpers import fit_in, write_dataset


@pytest.fixture(scope="session")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``last.ckpt`` of a real one-epoch fit on synthetic data (its data in ``<root>/data``), made once;
    the checkpoint tests build their hostile ones from it."""
    root = tmp_path_factory.mktemp("trained")
    data = write_dataset(root / "data")
    options = ["--data.data_dir", str(data), "--data.val_size", "128", "--data.download", "false"]
    (run,) = fit_in(root, *options, "--trainer.max_epochs", "1", "--test_after_fit", "false")
    return run / "checkpoints" / "last.ckpt"
