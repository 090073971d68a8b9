"""Fixtures of the sweep tests: the short-trial config file and a real PostgreSQL server."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep.helpers import FAST, POSTGRES, Server, postgres_server, write


@pytest.fixture
def fast(tmp_path: Path) -> Path:
    """``fast.yaml``: short trials (:data:`~tests.sweep.helpers.FAST`), for ``--config``."""
    return write(tmp_path / "fast.yaml", FAST)


@pytest.fixture
def postgres() -> Iterator[Server]:
    """A throw-away PostgreSQL server with a password on loopback (needs its binaries and root)."""
    if not POSTGRES:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb); apt-get install postgresql")
    if os.geteuid() != 0:
        pytest.skip("the test starts PostgreSQL as user postgres, which needs root")
    with postgres_server() as server:
        yield server
