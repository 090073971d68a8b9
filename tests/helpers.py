"""What several test files (and ``docs/screenshots.py``) share: synthetic data, event files, a TensorBoard server.

Fixtures live in ``conftest.py``; plain functions and classes live here, so that tests import
them like any module rather than from ``conftest``.
"""

import contextlib
import gzip
import json
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fmnist import idx

REAL_DATA = idx.SYSTEM_DATA_DIR
#: Flags that keep in-process runs small and their output short.
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """Write ``array`` (uint8) as an IDX file, as the Fashion-MNIST files are laid out."""
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_dataset(folder: Path, train: int = 384, test: int = 128, compress: bool = False, seed: int = 0) -> Path:
    """Four IDX files of random images whose brightness depends on the label, so a CNN can learn."""
    rng = np.random.default_rng(seed)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        images = rng.integers(0, 60, (count, 28, 28), dtype=np.uint8)
        images[:, 4:24, 4:24] += (labels * 19)[:, None, None].astype(np.uint8)  # a learnable signal
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return folder


def fit_in(root: Path, *args: str) -> list[Path]:
    """``python -m fmnist fit ARGS`` (quiet) in this process, from the folder ``root``; the run folders it holds."""
    from fmnist.main import main  # here, not at the top: docs/screenshots.py imports this module without it

    argv, sys.argv = sys.argv, ["fmnist"]  # LightningCLI reads sys.argv; pytest's own arguments are not fmnist's
    try:
        with contextlib.chdir(root):
            main(["fit", *args, *QUIET])
    finally:
        sys.argv = argv
    return run_dirs(root / "runs")


def events(run_dir: Path) -> EventAccumulator:
    """Everything TensorBoard would read from one run folder."""
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def run_dirs(root: Path = Path("runs")) -> list[Path]:
    """Run folders under ``root``: the folders that hold event files."""
    return sorted({path.parent for path in root.rglob("events.out.tfevents.*")})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TensorBoardServer:
    """A real ``tensorboard`` process serving ``logdir`` on a free loopback port, and its HTTP data API.

    Used as a context manager, it waits until the server lists some runs (or exactly ``runs``)
    and stops the process on the way out, whatever happens. Its output goes to ``log`` (a file,
    not a pipe: nobody reads TensorBoard's chatter while it runs).
    """

    def __init__(self, logdir: Path, log: Path, runs: list[str] | None = None, timeout: float = 90) -> None:
        self.logdir, self.log, self.runs, self.timeout = logdir, log, runs, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "TensorBoardServer":
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(self.logdir), "--host",
                 "127.0.0.1", "--port", str(self.port), "--load_fast", "false", "--reload_task", "blocking",
                 "--reload_interval", "0"],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            self.wait_until_loaded()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def get(self, path: str, **query: str) -> bytes:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.read()

    def json(self, path: str, **query: str) -> Any:
        return json.loads(self.get(path, **query))

    def post(self, path: str, body: dict) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_until_loaded(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {self.log.read_text()[-2000:]}")
            try:
                runs = self.json("/data/runs")
                if (self.runs is None and runs) or (self.runs is not None and sorted(runs) == sorted(self.runs)):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"tensorboard did not list {self.runs or 'any run'} within {self.timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
