"""Screenshots of every TensorBoard dashboard for the README: ``make screenshots``.

Trains two short runs on the real data (learning rates 0.001 and 0.003), serves them with
TensorBoard on 127.0.0.1, and photographs each dashboard in headless Chromium driven by
Playwright, waiting for what each page must show before taking the picture. Writes
``docs/<dashboard>.png``. Needs Debian's ``chromium`` (``/usr/bin/chromium``) and
``pip install playwright``; Playwright downloads no browser.

    python docs/screenshots.py [--out docs] [--logdir DIR] [--browser /usr/bin/chromium]
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a script: the repository's tools
from tools.tensorboard_server import TensorBoardServer

VIEWPORT = {"width": 1400, "height": 900}
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def train(logdir: Path, quick: bool) -> None:
    """Two short real-data runs side by side; ``quick`` makes them tiny (for the test)."""
    from fmnist.main import main

    limits = ["--trainer.limit_train_batches", "30", "--trainer.limit_val_batches", "10"] if quick else []
    for lr in ("0.001", "0.003"):
        main(["fit", "--model.lr", lr, "--trainer.max_epochs", "2" if quick else "4", *limits,
              "--trainer.logger.init_args.save_dir", str(logdir), "--trainer.enable_progress_bar", "false"])  # fmt: skip


def settle(page, locator, tries: int = 20) -> None:
    """Wait until two pictures of ``locator`` taken half a second apart agree (drawing is done)."""
    previous = None
    for _ in range(tries):
        frame = locator.screenshot()
        if frame == previous:
            return
        previous = frame
        page.wait_for_timeout(500)


def time_series(page, url: str) -> None:
    # SVG charts: the canvas renderer sometimes shows no lines in a headless screenshot
    page.goto(url + "/?forceSVG=true#timeseries")
    page.locator("input[placeholder='Filter tags (regex)']").fill("^(Loss|Accuracy)/(train|val)$")
    page.keyboard.press("Escape")  # close the tag suggestions
    page.get_by_role("button", name="Settings").first.click()  # the settings pane covers the charts at first
    page.locator("scalar-card svg path").first.wait_for(state="attached", timeout=60_000)


def custom_scalars(page, url: str) -> None:
    page.goto(url + "/?forceSVG=true#custom_scalars")
    page.get_by_text("Losses").filter(visible=True).first.wait_for(timeout=60_000)


def filter_tags(page, url: str, dashboard: str, regex: str) -> None:
    """Open a dashboard with only the tags matching ``regex``."""
    page.goto(f"{url}/#{dashboard}")
    box = page.get_by_label("Filter tags (regular expressions supported)").filter(visible=True).first
    box.wait_for(timeout=60_000)
    box.fill(regex)


def images(page, url: str) -> None:
    filter_tags(page, url, "images", "Sample|Misclassified")
    page.get_by_text("Show actual image size").click(timeout=60_000)
    page.get_by_text("step", exact=False).filter(visible=True).first.wait_for(timeout=60_000)


def confusion_matrix(page, url: str) -> None:
    filter_tags(page, url, "images", "Confusion")
    page.get_by_text("Show actual image size").click(timeout=60_000)
    page.get_by_text("step", exact=False).filter(visible=True).first.wait_for(timeout=60_000)


def graphs(page, url: str) -> None:
    page.goto(url + "/#graphs")
    for name in ("FashionMNISTClassifier", "FashionMNISTClassifier/FashionCNN[net]"):  # open the nested modules
        node = page.locator(f"g.node[data-name='{name}']")
        node.wait_for(timeout=60_000)
        node.dblclick()
        page.wait_for_timeout(1500)
    page.get_by_text("Fit to screen").click()


def histograms(page, url: str) -> None:
    filter_tags(page, url, "histograms", r"net\.(conv2|fc1)\.weight")
    page.get_by_text("weights/net.fc1.weight").filter(visible=True).first.wait_for(timeout=60_000)


def distributions(page, url: str) -> None:
    filter_tags(page, url, "distributions", r"net\.(conv2|fc1)\.weight")
    page.get_by_text("weights/net.fc1.weight").filter(visible=True).first.wait_for(timeout=60_000)


def projector(page, url: str) -> None:
    page.goto(url + "/#projector")
    frame = None
    for _ in range(120):
        frame = next((f for f in page.frames if "projector_binary" in f.url), None)
        if frame is not None and frame.locator("paper-dropdown-menu[label='Color by']").count():
            break
        page.wait_for_timeout(500)
    color_by = frame.locator("paper-dropdown-menu[label='Color by']")
    color_by.click(timeout=60_000)
    color_by.locator("paper-item", has_text="label").filter(visible=True).first.click()
    canvas = frame.locator("vz-projector canvas").first
    canvas.click(position={"x": 5, "y": 5})  # stops the 3-D view's endless rotation
    settle(page, canvas)


def pr_curves(page, url: str) -> None:
    filter_tags(page, url, "pr_curves", "Shirt|Coat|Pullover|Trouser")  # the hard classes, and an easy one
    page.get_by_text("PR/Trouser").filter(visible=True).first.wait_for(timeout=60_000)


def hparams(page, url: str) -> None:
    page.goto(url + "/#hparams")
    page.get_by_text("Accuracy/val_best").filter(visible=True).first.wait_for(timeout=60_000)
    same_in_every_run = {"channels_last", "conv1_channels", "conv2_channels", "conv3_channels", "data_dir", "download",
                         "dropout", "hidden_size", "num_workers", "padding", "scheduler", "split_seed"}  # fmt: skip
    compared = {"lr", "batch_size", "optimizer", "val_size"}
    for box in page.locator("paper-checkbox").all():  # the columns that differ, and the metrics, fit on the page
        name, checked = box.inner_text().strip(), box.get_attribute("aria-checked") == "true"
        if (name in same_in_every_run and checked) or (name in compared and not checked):
            box.click()


DASHBOARDS = {
    "time_series": time_series, "custom_scalars": custom_scalars, "images": images,
    "confusion_matrix": confusion_matrix, "graphs": graphs,
    "histograms": histograms, "distributions": distributions, "projector": projector, "pr_curves": pr_curves,
    "hparams": hparams,
}  # fmt: skip


def screenshots(url: str, out: Path, browser_path: str) -> list[Path]:
    """One PNG per dashboard in ``out``; each page is shown once it has drawn what matters."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        for name, show in DASHBOARDS.items():
            show(page, url)
            page.wait_for_timeout(1000)
            settle(page, page)  # charts drawn, animations over
            target = out / f"{name}.png"
            page.screenshot(path=str(target))
            print(f"wrote {target}")
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
        with TensorBoardServer(logdir, logdir / "tensorboard.log") as server:
            screenshots(server.url, args.out, args.browser)


if __name__ == "__main__":
    main()
