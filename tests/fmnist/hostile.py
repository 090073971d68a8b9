"""Code a hostile checkpoint names in the tests: already imported, each leaves a marker file when called.

The marker is the file ``$FMNIST_HOSTILE_MARKER``; a test that finds it knows the checkpoint's code ran.
"""

import os
from pathlib import Path
from typing import Any


def leave_marker(*args: Any, **kwargs: Any) -> float:
    Path(os.environ["FMNIST_HOSTILE_MARKER"]).touch()
    return 1.0


class LeaveMarker:
    """A class whose instantiation leaves the marker (not an optimizer nor a scheduler)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        leave_marker()
