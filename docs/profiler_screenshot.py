"""Where a training step's time goes, in a TensorBoard without the PyTorch Profiler plugin: ``docs/profiler.png``.

Trains one profiled epoch on the real data (``--config configs/profile.yaml``), serves it on
127.0.0.1 with a TensorBoard for which ``torch-tb-profiler`` is not installed (:func:`without_profiler_plugin`),
and photographs in headless Chromium the Images tab (the breakdown) above the Text tab (the top
operators), in one picture. Needs what ``docs/screenshots.py`` needs (Debian's ``chromium``, ``playwright``).

    python docs/profiler_screenshot.py [--out docs/profiler.png] [--logdir DIR] [--browser /usr/bin/chromium]
"""

import argparse
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: the repository's tools
from tools.tensorboard_server import TensorBoardServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import CHROMIUM_ARGS, filter_tags, settle

#: A ``sitecustomize`` that makes an interpreter see no torch-tb-profiler: its package cannot be
#: imported and its distribution, whose entry point is how TensorBoard finds plugins, is not listed.
_HIDE_PLUGIN = """
import importlib.metadata
import sys

sys.modules["torch_tb_profiler"] = None  # import torch_tb_profiler -> ImportError
_distributions = importlib.metadata.distributions


def _without_the_plugin(**kwargs):
    return (d for d in _distributions(**kwargs) if (d.metadata["Name"] or "").lower() != "torch-tb-profiler")


importlib.metadata.distributions = _without_the_plugin
"""
VIEWPORT = {"width": 1400, "height": 700}


def without_profiler_plugin(folder: Path) -> dict[str, str]:
    """Environment variables under which Python programs (``tensorboard``) run as if the plugin were not installed."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_HIDE_PLUGIN)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def train(logdir: Path, quick: bool) -> None:
    """One profiled epoch on the real data; ``quick`` makes it tiny."""
    from fmnist.main import main

    limits = ["--trainer.limit_train_batches", "30", "--trainer.limit_val_batches", "10"] if quick else []
    main(["fit", "--config", str(Path(__file__).resolve().parents[1] / "configs/profile.yaml"),
          "--trainer.max_epochs", "1", "--test_after_fit", "false", *limits,
          "--trainer.logger.init_args.save_dir", str(logdir), "--trainer.enable_progress_bar", "false"])  # fmt: skip


def photograph(url: str, out: Path, browser_path: str) -> Path:
    """The breakdown (Images tab) above the top operators (Text tab), as one PNG ``out``."""
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        filter_tags(page, url, "images", "Profiler")
        page.get_by_text("Show actual image size").click(timeout=60_000)
        page.get_by_text("Profiler/step_breakdown").filter(visible=True).first.wait_for(timeout=60_000)
        shots.append(_shot(page, height=440))  # the breakdown's card, not the other pictures below it
        filter_tags(page, url, "text", "operators")
        page.get_by_text("self CPU ms").filter(visible=True).first.wait_for(timeout=60_000)
        shots.append(_shot(page, height=VIEWPORT["height"]))
        browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(shots)).save(out, optimize=True)
    print(f"wrote {out}")
    return out


def _shot(page, height: int) -> np.ndarray:
    """The top ``height`` pixels of the page, once it has drawn."""
    page.wait_for_timeout(1000)
    settle(page, page)
    png = page.screenshot(clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "profiler.png")
    parser.add_argument("--logdir", type=Path, help="serve these runs instead of training a new one")
    parser.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--quick", action="store_true", help="a tiny run (to try the script)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fmnist-profiler-") as tmp:
        logdir = args.logdir or Path(tmp) / "runs"
        if args.logdir is None:
            train(logdir, args.quick)
        os.environ.update(without_profiler_plugin(Path(tmp) / "no-plugin"))  # for the tensorboard process
        with TensorBoardServer(logdir, Path(tmp) / "tensorboard.log") as server:
            plugins = server.json("/data/plugins_listing")
            assert "pytorch_profiler" not in plugins, "the plugin is still visible"
            photograph(server.url, args.out, args.browser)


if __name__ == "__main__":
    main()
