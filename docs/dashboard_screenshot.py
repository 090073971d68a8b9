"""A fmnist study in Optuna Dashboard, photographed for ``docs/sweeps.md``: ``docs/optuna-dashboard.png``.

Runs a short real-data sweep of ``configs/sweep_cost.yaml`` (accuracy against size, two metrics),
serves its study with ``optuna-dashboard sqlite:///runs/sweep_cost/study.db`` on 127.0.0.1, and
photographs the study's page in headless Chromium once it shows the study's metric names. Needs what
``docs/screenshots.py`` needs (Debian's ``chromium``, ``playwright``) and ``optuna-dashboard``.

    python docs/dashboard_screenshot.py [--out docs/optuna-dashboard.png] [--root DIR] [--browser /usr/bin/chromium]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: the repository's tools
from tools.tensorboard_server import LoopbackServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import CHROMIUM_ARGS, settle

REPO = Path(__file__).resolve().parents[1]
STUDY = "sweep_cost"
METRICS = ["Accuracy/val_best", "Model/params"]
#: Wide enough for the Pareto front beside its selectors; tall enough for the history and importances.
VIEWPORT = {"width": 1400, "height": 1150}


class OptunaDashboard(LoopbackServer):
    """A real ``optuna-dashboard STORAGE`` process on a free loopback port, run from ``cwd``, and its HTTP API.

    Used as a context manager, it waits until the server lists a study and stops the process on the
    way out, whatever happens. Its output goes to ``log``.
    """

    name = "optuna-dashboard"

    def __init__(self, storage: str, cwd: Path, log: Path, timeout: float = 60) -> None:
        super().__init__(log, timeout, cwd)
        self.storage = storage

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("optuna-dashboard")), self.storage,
                "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip

    def ready(self) -> bool:
        return bool(self.json("/api/studies")["study_summaries"])

    def waited_for(self) -> str:
        return f"a study of {self.storage}"


def sweep(root: Path) -> None:
    """Eight short trials of ``configs/sweep_cost.yaml`` on the real data, into ``root/runs/sweep_cost/``."""
    command = [sys.executable, "-m", "fmnist", "sweep", "--space", str(REPO / "configs/sweep_cost.yaml"),
               "--n_trials", "8", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "0.1"]  # fmt: skip
    subprocess.run(command, cwd=root, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def photograph(url: str, study_id: int, metrics: list[str], out: Path, browser_path: str) -> Path:
    """The study's page, taken once it names every metric in ``metrics`` and its charts are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.goto(f"{url}/dashboard/studies/{study_id}")
        for name in metrics:
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        settle(page, page)  # charts drawn, animations over
        page.screenshot(path=str(out))
        browser.close()
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)  # a flat UI: 128 colours suffice
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("optuna-dashboard.png"))
    parser.add_argument("--root", type=Path, help="serve runs/sweep_cost/study.db of this folder instead of sweeping")
    parser.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fmnist-dashboard-") as tmp:
        root = args.root or Path(tmp)
        if args.root is None:
            sweep(root)
        with OptunaDashboard(f"sqlite:///runs/{STUDY}/study.db", root, Path(tmp) / "dashboard.log") as dashboard:
            (study,) = dashboard.json("/api/studies")["study_summaries"]
            print(f"wrote {photograph(dashboard.url, study['study_id'], METRICS, args.out, args.browser)}")


if __name__ == "__main__":
    main()
