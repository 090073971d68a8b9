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
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackServer(ABC):
    """A real server process on a free loopback port, and its HTTP API: the part every such server shares.

    Used as a context manager, it starts :meth:`command` (from ``cwd``), waits until :meth:`ready` says so
    and stops the process on the way out, whatever happens. Its output goes to ``log`` (a file, not a
    pipe: nobody reads a server's chatter while it runs).
    """

    name = "server"

    def __init__(self, log: Path, timeout: float, cwd: Path | None = None) -> None:
        self.log, self.timeout, self.cwd = log, timeout, cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line, on ``self.port``."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the server answers as wanted yet; an ``OSError`` counts as not yet."""

    def waited_for(self) -> str:
        return "an answer"

    def __enter__(self) -> "LoopbackServer":
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(self.command(), cwd=self.cwd, stdout=output, stderr=subprocess.STDOUT)
        try:
            self.wait_until_ready()
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

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.name} did not list {self.waited_for()} within {self.timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class TensorBoardServer(LoopbackServer):
    """A real ``tensorboard`` process serving ``logdir`` on a free loopback port, and its HTTP data API.

    Used as a context manager, it waits until the server lists some runs (or exactly ``runs``)
    and stops the process on the way out, whatever happens.
    """

    name = "tensorboard"

    def __init__(self, logdir: Path, log: Path, runs: list[str] | None = None, timeout: float = 90) -> None:
        super().__init__(log, timeout)
        self.logdir, self.runs = logdir, runs

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(self.logdir), "--host",
                "127.0.0.1", "--port", str(self.port), "--load_fast", "false", "--reload_task", "blocking",
                "--reload_interval", "0"]  # fmt: skip

    def ready(self) -> bool:
        runs = self.json("/data/runs")
        return bool(runs) if self.runs is None else sorted(runs) == sorted(self.runs)

    def waited_for(self) -> str:
        return str(self.runs or "any run")

    def post(self, path: str, body: dict) -> Any:
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
