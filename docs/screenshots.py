"""Screenshots of every TensorBoard dashboard for the README: ``make screenshots``.

Trains two short runs on the real data (learning rates 0.001 and 0.003), serves them with
TensorBoard on 127.0.0.1, and photographs each dashboard in headless Chromium driven by
Playwright, waiting for what each page must show before taking the picture. Writes
``docs/<dashboard>.png``. Needs Debian's ``chromium`` (``/usr/bin/chromium``) and
``pip install playwright``; Playwright downloads no browser.

    python docs/screenshots.py [--out docs] [--logdir DIR] [--browser /usr/bin/chromium]
"""

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def train(logdir: Path, quick: bool) -> None:
    """Two short real-data runs side by side; ``quick`` makes them tiny (for the test)."""
    from fmnist.cli import main

    limits = ["--trainer.limit_train_batches", "30", "--trainer.limit_val_batches", "10"] if quick else []
    for lr in ("0.001", "0.003"):
        main(["fit", "--model.lr", lr, "--trainer.max_epochs", "2" if quick else "4", *limits,
              "--trainer.logger.init_args.save_dir", str(logdir), "--trainer.enable_progress_bar", "false"])  # fmt: skip


@contextlib.contextmanager
def tensorboard(logdir: Path) -> Iterator[str]:
    """TensorBoard serving ``logdir`` on a free loopback port; yields its address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(logdir / "tensorboard.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(logdir), "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false", "--reload_task", "blocking", "--reload_interval", "0"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/data/runs", timeout=5).read() not in (b"[]", b""):
                    break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def shoot(page, url: str, path: Path, ready: str, settle: float = 1.5, before=None) -> None:
    """Open ``url``, wait until ``ready`` (a CSS selector) is visible and drawing has settled."""
    page.goto(url)
    page.wait_for_selector(ready, state="visible", timeout=60_000)
    if before is not None:
        before(page)
    page.wait_for_timeout(settle * 1000)
    page.screenshot(path=str(path))
    print(f"wrote {path}")


def screenshots(url: str, out: Path, browser_path: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)

        def expand_all(page) -> None:  # open every collapsed card group so the pictures show
            for pane in page.locator("button.expand-button, .group-toggle").all():
                with contextlib.suppress(Exception):
                    pane.click(timeout=1000)

        def projector_colour_by_label(page) -> None:
            page.wait_for_selector("vz-projector .status", state="hidden", timeout=60_000)
            page.locator("#color-by .mat-select, #color-by").first.click(timeout=5000)
            page.get_by_text("label", exact=False).first.click(timeout=5000)
            canvas = page.locator("vz-projector canvas").first
            canvas.click(position={"x": 10, "y": 10})  # stop the 3-D view's endless rotation
            previous = None
            for _ in range(20):  # until two frames agree
                frame = canvas.screenshot()
                if frame == previous:
                    break
                previous = frame
                page.wait_for_timeout(500)

        dashboards = [
            ("time_series", "/?forceSVG=true&darkMode=false#timeseries", "svg path.line, .line-chart svg path", None),
            ("custom_scalars", "/?forceSVG=true#custom_scalars", "tf-custom-scalar-margin-chart-card, vz-line-chart2", None),
            ("images", "/#images", "tf-image-loader img, img.image", expand_all),
            ("graphs", "/#graphs", "tf-graph-scene svg .node, svg .node", None),
            ("histograms", "/#histograms", "tf-histogram-dashboard vz-histogram-timeseries svg path, vz-histogram-timeseries", expand_all),
            ("distributions", "/#distributions", "tf-distribution-dashboard vz-distribution-chart, vz-line-chart2", expand_all),
            ("projector", "/#projector", "vz-projector canvas", projector_colour_by_label),
            ("pr_curves", "/#pr_curves", "tf-pr-curve-card, vz-line-chart2", expand_all),
            ("hparams", "/#hparams", "tf-hparams-table-view, tf-hparams-session-group-values, table", None),
        ]
        for name, path, ready, before in dashboards:
            target = out / f"{name}.png"
            shoot(page, url + path, target, ready, before=before)
            shots.append(target)
        browser.close()
    return shots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent, help="where the PNGs go (default: docs/)")
    parser.add_argument("--logdir", type=Path, help="serve these runs instead of training new ones")
    parser.add_argument("--browser", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--quick", action="store_true", help="tiny runs (for the test)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fmnist-screenshots-") as tmp:
        logdir = args.logdir or Path(tmp) / "runs"
        if args.logdir is None:
            train(logdir, args.quick)
        with tensorboard(logdir) as url:
            screenshots(url, args.out, args.browser)


if __name__ == "__main__":
    main()
