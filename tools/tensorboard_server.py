"""A real ``tensorboard`` server on loopback and its HTTP data API, for tests and ``docs/`` tools.

with TensorBoardServer(Path("runs"), Path("tensorboard.log")) as server:
    server.json("/data/runs")
"""

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


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
