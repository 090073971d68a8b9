"""How a command ends when something goes wrong: one ``fmnist: error:`` line and an exit status.

The entry point (:mod:`fmnist.main`) and the sweep's worker processes (:mod:`fmnist.sweep.command`)
end through :func:`end`; :func:`explain` is the one mapping from an exception to its lines and
status. The statuses, as the README lists them: 0 done, 1 a diverged run, 2 one error line (a
mistake the user can fix, a full disk, a database away too long), 130 and 143 a stop by Ctrl-C or
SIGTERM (:mod:`fmnist.stops`). Any other exception shows its
traceback, as does every one when ``FMNIST_DEBUG=1`` (:func:`~fmnist.errors.debugging`).
"""

import sys
from pathlib import Path
from typing import NoReturn

from jsonargparse import ArgumentError
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks import TrainingDivergedError
from fmnist.diskfull import disk_full_message
from fmnist.errors import InputError, debugging
from fmnist.stops import CommandStopped

#: Exit statuses: a run that diverged; a command ended by one ``fmnist: error:`` line.
DIVERGED, ERROR_LINE = 1, 2
#: What ends with one line (a full disk too, whatever exception carries it).
USER_ERRORS = (InputError, ArgumentError, TrainingDivergedError, MisconfigurationException)
HELP = "fmnist: see the options with: python -m fmnist <fit|validate|test|predict> --help"


def explain(err: BaseException, command: str, run_dir: Path | None = None) -> tuple[list[str], int] | None:
    """The lines to print for ``err`` and the exit status; ``None``: it has none, show its traceback.

    ``command`` is the subcommand (``fit``, ``sweep``, ...); ``run_dir`` the run folder of the
    failed run, if known: a full disk's line says what it keeps and how to go on.

    >>> explain(InputError("--ckpt_path x.ckpt: no such file"), "test")
    (['fmnist: error: --ckpt_path x.ckpt: no such file'], 2)
    >>> explain(TrainingDivergedError("loss is nan; lower the learning rate"), "fit")[1]
    1
    >>> explain(KeyError("a bug"), "fit") is None
    True
    """
    if isinstance(err, CommandStopped):  # Ctrl-C, SIGTERM: its own line, 130 or 143
        return [str(err)], err.status
    full = disk_full_message(err, command, run_dir)
    if full is not None:
        return [f"fmnist: error: {full}"], ERROR_LINE
    if not isinstance(err, USER_ERRORS):
        return None
    if isinstance(err, ArgumentError):
        return [f"fmnist: error: {' '.join(str(err).split())}", HELP], ERROR_LINE
    if isinstance(err, TrainingDivergedError):  # the library's advice names no flag
        return [f"fmnist: error: {err} (fmnist's flag: --model.lr)"], DIVERGED
    return [f"fmnist: error: {err}"], ERROR_LINE


def end(err: BaseException, command: str, run_dir: Path | None = None) -> NoReturn:
    """End the command for ``err``: print its lines and exit with its status, or raise it again
    (its traceback) when it has none or ``FMNIST_DEBUG`` is set. Call it from an ``except`` block."""
    explained = None if debugging() else explain(err, command, run_dir)
    if explained is None:
        raise err
    lines, status = explained
    if sys.stderr.isatty():
        print(file=sys.stderr)  # not on the line of a progress bar
    print("\n".join(lines), file=sys.stderr, flush=True)
    raise SystemExit(status) from None
