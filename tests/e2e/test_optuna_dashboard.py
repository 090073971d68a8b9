"""A fmnist study in a real ``optuna-dashboard`` server, as ``docs/sweeps.md`` opens it: its trials,
their values and the study's metric names through the dashboard's HTTP API, and the metric names on
the study's page in a real Chromium (the launcher and the browser are ``docs/dashboard_screenshot.py``'s).
"""

import contextlib
import csv
import io
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from tests.helpers import REPO, write_dataset
from tests.sweep.helpers import FAST, run_sweep, sweep_command, write

sys.path.insert(0, str(REPO / "docs"))  # docs/dashboard_screenshot.py is a script, not a package
from dashboard_screenshot import OptunaDashboard, photograph

pytestmark = pytest.mark.slow  # a real sweep process, a real server and a browser

METRICS = ["Accuracy/val_best", "Loss/val"]
SPACE = {
    "n_trials": 3,
    "sampler": "random",
    "sampler_seed": 0,
    "metric": METRICS,
    "direction": ["maximize", "minimize"],
    "space": {"model.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
}
STORAGE = "sqlite:///runs/dash/study.db"  # the default storage, as docs/sweeps.md opens it
BROWSER = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where ``python -m fmnist sweep --space dash.yaml`` ran: runs/dash/study.db."""
    root = tmp_path_factory.mktemp("dash")
    data = write_dataset(root / "data")
    space, fast = write(root / "dash.yaml", SPACE), write(root / "fast.yaml", FAST)
    command = sweep_command(data, "--space", str(space), "--config", str(fast))
    with contextlib.chdir(root):
        done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return root


@pytest.fixture(scope="module")
def dashboard(root: Path) -> Iterator[OptunaDashboard]:
    with OptunaDashboard(STORAGE, root, root / "dashboard.log") as server:
        yield server


def test_the_dashboard_reads_every_trial_and_names_the_metrics(root: Path, dashboard: OptunaDashboard) -> None:
    with contextlib.chdir(root):
        study = optuna.load_study(study_name="dash", storage=STORAGE)
    assert study.metric_names == METRICS
    (summary,) = dashboard.json("/api/studies")["study_summaries"]
    assert summary["study_name"] == "dash" and summary["directions"] == ["maximize", "minimize"]
    detail = dashboard.json(f"/api/studies/{summary['study_id']}")
    assert detail.get("objective_names") == METRICS, "the dashboard would show Objective 0, Objective 1"
    shown = [
        (t["number"], t["state"], t["values"], {p["name"]: float(p["param_external_value"]) for p in t["params"]})
        for t in detail["trials"]
    ]
    assert shown == [(t.number, "Complete", pytest.approx(t.values), pytest.approx(t.params)) for t in study.trials]
    assert len(shown) == 3 and all(0 < accuracy <= 1 and loss > 0 for _, _, (accuracy, loss), _ in shown)
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)
    # the table a user downloads names the value columns too
    header, *rows = csv.reader(io.StringIO(dashboard.get(f"/csv/{summary['study_id']}").decode()))
    assert header[:4] == ["Number", "State", *METRICS] and len(rows) == 3


@pytest.mark.skipif(not Path(BROWSER).exists(), reason="no Chromium: apt-get install chromium")
def test_the_study_page_shows_the_metric_names(dashboard: OptunaDashboard, tmp_path: Path) -> None:
    pytest.importorskip("playwright", reason="pip install playwright (the test extra)")
    (summary,) = dashboard.json("/api/studies")["study_summaries"]
    # waits for each name on the page: without them it shows "Objective 0" and times out
    shot = photograph(dashboard.url, summary["study_id"], METRICS, tmp_path / "dashboard.png", BROWSER)
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.std() > 20 and len(np.unique(image)) > 20, "a page with charts, not a blank one"
