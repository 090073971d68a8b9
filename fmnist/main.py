"""The entry point of ``python -m fmnist`` and of the ``fmnist`` console script.

``fit|validate|test|predict`` go to the fit CLI (:mod:`fmnist.cli`), ``sweep`` to the sweep
(:mod:`fmnist.sweep`), ``export`` to :mod:`fmnist.export`. What goes wrong ends the command through
:func:`fmnist.exits.end`: one ``fmnist: error:`` line and its exit status. Nothing in fmnist imports
this module.
"""

import gc
import sys

import torch

from fmnist.cli import FashionCLI
from fmnist.diskfull import StoppedRun, threads_quiet_when_disk_full
from fmnist.exits import end
from fmnist.quiet import quiet_lightning
from fmnist.stops import CommandStopped, StopOnSignal, StopSignals, stop_line


def main(args: list[str] | None = None) -> None:
    """Run one command; tests call ``main([...])`` in-process.

    Set ``FMNIST_DEBUG=1`` for the traceback behind an ``fmnist: error:`` line.
    """
    quiet_lightning()
    given = sys.argv[1:] if args is None else list(args)
    command = given[:1]
    stopped = StoppedRun()  # the run folder of a trainer an error stops, for a full disk's line
    signalled = StopOnSignal()  # where Ctrl-C or SIGTERM stopped a trainer, for the stop's line
    signals = StopSignals(signalled)
    try:
        with threads_quiet_when_disk_full(), signals:
            if command == ["sweep"]:
                from fmnist.sweep.command import sweep  # Optuna is imported only by the command that uses it

                sweep(given[1:])
            elif command == ["export"]:
                from fmnist.export.command import export  # onnx and onnxruntime: only the command that uses them

                export(given[1:])
            else:  # None: LightningCLI reads sys.argv
                FashionCLI(args, trainer_defaults={"callbacks": [stopped, signalled]})
        end_process_group()
    except Exception as err:
        end(err, command[0] if command else "fit", stopped.run_dir)
    except BaseException:  # Ctrl-C, SIGTERM: Lightning ends a stopped trainer with SystemExit (1, or 0 after SIGTERM)
        if signals.received is None:
            raise
        end(CommandStopped(stop_line(signalled.stop, signals.received, given), signals.received), "")


def end_process_group() -> None:
    """Destroy torch.distributed's process group, if a command made one (DDP), while Python is whole.

    Lightning destroys only NCCL groups, at exit; a gloo group (DDP on CPUs) is left to the
    interpreter's end. Its worker threads may then still be releasing the tensors of the last
    collective (``Trainer.log_dir`` is one, read by the summary just before the end); a thread
    that needs the GIL while Python finalizes aborts the process: "terminate called without an
    active exception", exit status -6 (pytorch/pytorch#190489). Destroying the group, and
    collecting the finished trainer that still refers to it, joins those threads first. Only
    after a command that succeeded: every process then ran the same collectives, so no thread
    waits for another process.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        gc.collect()  # the DDP wrapper, in the trainer's reference cycles, holds the group too
