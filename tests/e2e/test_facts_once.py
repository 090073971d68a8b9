"""Facts the docs say again, checked against where they are declared: the sweep's flags and the exit statuses.

``docs/sweeps.md``'s flag table against :class:`~fmnist.sweep.settings.Settings` (every setting has its row,
with its default), and the exit statuses of the README and ``docs/troubleshooting.md`` against
:mod:`fmnist.exits` and :mod:`fmnist.stops`.
"""

import re
import tomllib
from dataclasses import fields
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from fmnist.exits import DIVERGED, ERROR_LINE
from fmnist.stops import STATUS
from fmnist.sweep.settings import DEFAULT_TRIALS, Settings, default_storage
from tests.helpers import REPO

ROW = re.compile(r"^\| (`--[^|]+) \| ([^|]*) \|", re.MULTILINE)


def _flag_table() -> dict[str, str]:
    """``docs/sweeps.md``'s flags: each flag's name and its default cell."""
    text = (REPO / "docs" / "sweeps.md").read_text().split("\n## Flags\n", 1)[1].split("\n## ", 1)[0]
    table = {}
    for flags, default in ROW.findall(text):
        for flag in re.findall(r"`--(\w+)", flags):
            table[flag] = default.strip()
    return table


def test_every_sweep_setting_has_its_row_with_its_default() -> None:
    table = _flag_table()
    # the defaults derived when the setting is left out (None in Settings), as the table shows them
    derived = {"n_trials": f"`{DEFAULT_TRIALS}`", "storage": f"`{default_storage(Path('runs/<study>'))}`"}
    assert {spec.name for spec in fields(Settings)} <= set(table), "a setting without its row in docs/sweeps.md"
    for spec in fields(Settings):
        cell = table[spec.name]
        if spec.default is None:
            expected = derived.get(spec.name)
            assert (expected in cell) if expected else "`" not in cell, f"--{spec.name}: the table says {cell!r}"
        elif isinstance(spec.default, bool):
            assert cell == ("on" if spec.default else "off"), f"--{spec.name}: the table says {cell!r}"
        else:
            assert f"`{spec.default}`" in cell, f"--{spec.name}: the table says {cell!r}, Settings {spec.default!r}"


def test_the_exit_statuses_are_the_codes() -> None:
    readme = (REPO / "README.md").read_text().split("| exit status | when |", 1)[1].split("\n\n", 1)[0]
    statuses = {int(code) for cell in re.findall(r"^\| ([\d, ]+) \|", readme, re.MULTILINE) for code in cell.split(",")}
    assert statuses == {0, DIVERGED, ERROR_LINE, *STATUS.values()}
    troubleshooting = (REPO / "docs" / "troubleshooting.md").read_text()
    for status in (DIVERGED, ERROR_LINE, *STATUS.values()):
        assert f"exit status {status}" in troubleshooting or f"with {status}" in troubleshooting, status


def test_the_floors_ci_installs_are_the_floors_pyproject_declares() -> None:
    """``.ci/floors.txt`` pins every dependency at its ``>=`` floor in ``pyproject.toml`` (``make floors``)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for line in (REPO / ".ci" / "floors.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = re.fullmatch(r"([\w.-]+)===?(\S+)", line.strip()).groups()
            floors[name.lower()] = Version(version)
    for requirement in map(Requirement, declared):
        (floor,) = (Version(spec.version) for spec in requirement.specifier if spec.operator == ">=")
        pinned = floors.get(requirement.name.lower())
        assert pinned is not None, f"{requirement.name}: no line in .ci/floors.txt"
        # the same release, zeros added (2.13 == 2.13.0; 1.3 == 1.3.0.post0, which stands in for the yanked 1.3.0)
        assert (pinned.release + (0,) * 4)[:4] == (floor.release + (0,) * 4)[:4], (
            f"{requirement.name}: pyproject.toml says >={floor}, .ci/floors.txt tests {pinned}"
        )
