"""``docs/screenshots.py`` renders every dashboard in a real headless Chromium (slow; CI has Chromium)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO
from tools.tensorboard_server import TensorBoardServer

pytest.importorskip("playwright", reason="pip install playwright (the test extra)")
BROWSER = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(BROWSER).exists(), reason="no Chromium: apt-get install chromium"),
]


def test_every_dashboard_renders(tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "docs"))  # docs/screenshots.py is a script, not a package
    import screenshots

    from fmnist.main import main

    for lr in ("0.001", "0.003"):
        main(["fit", "--model.lr", lr, "--trainer.max_epochs", "2", "--data.data_dir", str(data_dir),
              "--data.val_size", "128", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
              "--trainer.enable_progress_bar", "false"])  # fmt: skip
    with TensorBoardServer(tmp_path / "runs", tmp_path / "tensorboard.log") as server:
        shots = screenshots.screenshots(server.url, tmp_path / "shots", BROWSER)
    assert {shot.stem for shot in shots} >= {"time_series", "images", "graphs", "histograms", "projector", "pr_curves"}
    for shot in shots:
        image = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert image.shape == (900, 1400), shot.name
        assert image.std() > 20, f"{shot.name} is blank"
        assert len(np.unique(image)) > 50, f"{shot.name} shows next to nothing"
