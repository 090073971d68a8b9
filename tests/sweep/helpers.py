"""What the sweep tests share: short trials, a small space, the study and HParams rows read back,
the command of a real ``python -m fmnist sweep`` process, and a throw-away PostgreSQL server.

Fixtures built on these (``fast``, ``postgres``) are in ``tests/sweep/conftest.py``.
"""

import functools
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import environment, events

#: Short trials: two epochs of 4 batches, a checkpoint and the HParams table, no other dashboards.
FAST = {
    "trainer": {
        "max_epochs": 2,
        "log_every_n_steps": 1,
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"monitor": "Accuracy/val", "mode": "max"},
            },
            {"class_path": "callbacks.HyperparameterTable"},
        ],
    }
}
SPACE = {
    "n_trials": 3,
    "space": {
        "model.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "data.batch_size": {"type": "categorical", "choices": [32, 64]},
    },
}
#: PostgreSQL's server programs (Debian's postgresql package); the tests that need them skip without.
POSTGRES = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
PASSWORD = "Pw-7q3zX9"  # distinctive: found anywhere, it is no accident


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///runs/{name}/study.db")


def session(run_dir: Path) -> tuple[dict, int]:
    """The HParams row of a run as TensorBoard reads it: hyperparameters and session status."""
    content = events(run_dir).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    values = {
        name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
        for name, value in start.hparams.items()
    }
    return values, end.status


def sweep_command(data_dir: Path, *args: str) -> list[str]:
    data = ["--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false"]
    return [sys.executable, "-m", "fmnist", "sweep", *data, *args]


def run_sweep(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A real ``python -m fmnist sweep`` process to its end; its output as text (Python's warnings off)."""
    return subprocess.run(
        command, env=environment(PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=timeout
    )


def finished(trials: list) -> list:
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


class Server:
    """A throw-away PostgreSQL server on a free loopback port, run as user postgres, that logs in with a password.

    ``url`` is the README's kind of URL: plain ``postgresql://`` (the driver SQLAlchemy picks), user
    and password in it; ``shown`` is how fmnist must print it.
    """

    def __init__(self, folder: Path) -> None:
        self.bin, self.data = POSTGRES[-1].parent, folder / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
        self.log = folder / "log"
        self.url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
        self.shown = f"postgresql://postgres:***@127.0.0.1:{port}/postgres"
        self.run = functools.partial(subprocess.run, check=True, user="postgres", capture_output=True, timeout=120)
        secret = folder / "password"
        secret.write_text(PASSWORD)
        shutil.chown(secret, "postgres", "postgres")
        self.run([self.bin / "initdb", "-D", self.data, "-U", "postgres", "-A", "scram-sha-256", "--pwfile", secret])
        secret.unlink()

    def start(self) -> None:
        self.run([self.bin / "pg_ctl", "-D", self.data, "-o", self.options, "-l", self.log, "-w", "start"])

    def stop(self, mode: str = "fast") -> None:
        """As a database restart does (``immediate``: as a crash does): the server is away until started again."""
        self.run([self.bin / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])


@contextmanager
def postgres_server() -> Iterator[Server]:
    """A started :class:`Server` in a fresh folder, stopped and deleted on the way out, whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix="fmnist-postgres-"))
    shutil.chown(folder, "postgres", "postgres")
    try:
        server = Server(folder)
        server.start()
        yield server
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            subprocess.run(
                [POSTGRES[-1].parent / "pg_ctl", "-D", folder / "data", "-m", "immediate", "stop"],
                user="postgres",
                capture_output=True,
            )
        shutil.rmtree(folder, ignore_errors=True)
