"""The real Fashion-MNIST, from the system copy that CI installs (Debian's dataset-fashion-mnist)."""

from pathlib import Path

import pytest

from fmnist import idx
from tests.helpers import QUIET, REAL_DATA, events, run_dirs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} missing: apt-get install dataset-fashion-mnist"),
]


def test_a_few_hundred_batches_learn_far_above_chance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fmnist.cli import main

    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", REAL_DATA)
    common = ["--data.data_dir", str(tmp_path / "empty"), "--data.download", "false", *QUIET]
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "300"])
    (run,) = run_dirs()
    assert run.name == "version_0" and run.parent.name == "fashion_mnist_lr_0.001_bs_64"
    main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    board = events(run)
    (accuracy,) = board.Scalars("Accuracy/test")
    assert accuracy.value > 0.75, "10 classes: chance is 0.10"
    (val,) = board.Scalars("Accuracy/val")
    assert val.value > 0.75
    # the full splits: 55000 training and 5000 validation images held out of 60000, 10000 test images
    projector = next(run.glob("*/net.fc1/metadata.tsv"))
    assert len(projector.read_text().splitlines()) == 1 + 1000
