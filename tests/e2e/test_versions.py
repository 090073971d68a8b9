"""``constraints.txt``, the versions CI passed with, against ``pyproject.toml``'s ranges and this environment.

``make fit``, ``make test`` and ``.ci/run`` install with ``pip install -c constraints.txt``; ``make lock``
writes it. A pin outside its range, or a requirement without a pin, would install something nobody tested.
"""

import importlib.metadata
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pins() -> dict[str, str]:
    """``constraints.txt``'s ``name==version`` lines, by canonical name."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    found = [re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip()) for line in lines if not line.startswith("#")]
    return {canonicalize_name(m[1]): m[2] for m in found if m}


def requirements() -> list[Requirement]:
    """Every requirement of fmnist: its dependencies and every extra's."""
    extras = [req for group in PYPROJECT["optional-dependencies"].values() for req in group]
    return [Requirement(req) for req in [*PYPROJECT["dependencies"], *extras]]


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_requirement_is_pinned_inside_its_range(requirement: Requirement) -> None:
    pinned = pins().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"constraints.txt has no pin for {requirement.name}: run make lock"
    assert requirement.specifier.contains(pinned, prereleases=True), (
        f"constraints.txt pins {requirement.name}=={pinned}, outside pyproject.toml's {requirement}: run make lock"
    )


def test_every_line_of_the_lock_is_a_pin_or_a_comment() -> None:
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert len(pins()) == len(lines) > 50, "pip install -c takes name==version lines; make lock writes them"


def test_the_installed_requirements_are_the_pinned_versions() -> None:
    """What ``make install`` installed is what the lock says (a venv made before the lock: ``rm -r .venv``)."""
    locked = pins()
    drift = {}
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an extra not installed here
        if installed != locked.get(name):
            drift[requirement.name] = (installed, locked.get(name))
    assert not drift, f"installed (left) is not constraints.txt's pin (right): {drift}; make install applies the lock"
