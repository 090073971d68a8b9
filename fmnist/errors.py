"""The one exception type for mistakes a user can make and fix, and the switch that shows their tracebacks."""

import os


class InputError(Exception):
    """A flag, file or folder the user gave cannot be used; the message says which and why.

    ``python -m fmnist`` prints the message without a traceback, exits with status 2 and removes
    the run folder it had just created for the failed run.
    """


def debugging() -> bool:
    """``FMNIST_DEBUG=1``: show the traceback behind an ``fmnist: error:`` line (the one place it is read)."""
    return bool(os.environ.get("FMNIST_DEBUG"))
