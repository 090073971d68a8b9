"""The worker processes of a sweep (``--workers N``): started, started again, stopped, and what their ends mean.

Processes of multiprocessing's ``spawn``; each says how it ended on a pipe of its own (nothing: it
finished, or it was killed). A worker killed by a signal the sweep did not send (``kill -9``, the
OOM killer) has its trials failed and queued again and is started again; a stop of the sweep ends
them all with SIGTERM and fails the trials they held. A worker whose sweep is gone notices it
(:func:`watch_parent`).
"""

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from fmnist.sweep.study import Sweep, fail_held, worker_id

#: A worker killed (not stopped by the sweep) is started again this many times at most.
RESTARTS = 3
#: Seconds stopped workers get to fail their trials and end before they are killed.
STOP_GRACE = 8


@dataclass
class Processes:
    """The worker processes of a sweep: started, started again, and stopped with their trials failed."""

    config: Sweep
    target: Callable[..., None]
    recover: Callable[[float, list[int | None]], None]  # after a worker lost the database: wait, fail its trial
    running: dict[int, tuple[multiprocessing.process.BaseProcess, Connection, float]] = field(default_factory=dict)
    restarts: dict[int, int] = field(default_factory=dict)  # worker number: times started again after a kill
    codes: list[int] = field(default_factory=list)
    said: bool = False  # a worker's error line was printed: the others' (the same full disk) are not

    def run(self) -> list[int]:
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no copied torch threads or locks
        threads = max(1, _cores() // self.config.settings.workers)
        try:
            for number in range(1, self.config.settings.workers + 1):
                self._start(context, threads, number)
            while self.running:
                multiprocessing.connection.wait([process.sentinel for process, _, _ in self.running.values()])
                for number, (process, pipe, started) in list(self.running.items()):
                    if process.exitcode is not None:
                        del self.running[number]
                        if self._ended(number, process, _message(pipe), started):
                            self._start(context, threads, number)
        except BaseException:
            self.stop()
            raise
        return self.codes

    def stop(self) -> None:
        """End every worker (SIGTERM, then SIGKILL after STOP_GRACE seconds), and fail the trials they held."""
        for process, _, _ in self.running.values():
            if process.exitcode is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for process, _, _ in self.running.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()
        self._fail_held([process.pid for process, _, _ in self.running.values()])

    def _start(self, context: Any, threads: int, number: int) -> None:
        receive, send = context.Pipe(duplex=False)
        process = context.Process(target=self.target, args=(self.config, threads, number, send))
        process.start()
        send.close()
        self.running[number] = process, receive, time.monotonic()

    def _ended(self, number: int, process: multiprocessing.process.BaseProcess, message: Any, started: float) -> bool:
        """What the end of worker ``number`` means; ``True``: start it again."""
        kind = message[0] if message else None
        if kind == "lost":  # ("lost", trial): wait for the database, fail that trial
            self.recover(started, [message[1]])
            return True
        if kind == "error":  # ("error", lines, status)
            if not self.said:
                print("\n".join(message[1]), file=sys.stderr, flush=True)
                self.said = True
            self.codes.append(message[2])
            return False
        if process.exitcode < 0 and self.restarts.get(number, 0) < RESTARTS:  # killed by a signal
            self._fail_held([process.pid])
            self.restarts[number] = self.restarts.get(number, 0) + 1
            return True
        self.codes.append(process.exitcode)
        return False

    def _fail_held(self, pids: list[int | None]) -> None:
        """Fail the trials the worker processes ``pids`` held, and queue them again."""
        with contextlib.suppress(Exception):  # away: Optuna's heartbeat fails them when a later sweep runs
            storage, study = self.config.connect()
            for pid in pids:
                fail_held(study, storage, worker_id(pid))
            storage.engine.dispose()


def _message(pipe: Connection) -> Any:
    """What an ended worker said on its pipe, ``None`` if nothing (it was killed, or it ended well)."""
    try:
        return pipe.recv() if pipe.poll() else None
    except EOFError:  # closed with nothing in it
        return None
    finally:
        pipe.close()


def watch_parent() -> None:
    """In a worker process: when the sweep that started it is gone (``kill -9``), stop as if told to (SIGTERM).

    multiprocessing gives a child its parent's sentinel, ready when the parent ends; a worker that
    has not ended :data:`STOP_GRACE` seconds later leaves at once.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE)
        os.kill(os.getpid(), signal.SIGKILL)  # it could not end itself in time

    threading.Thread(target=watch, name="fmnist-parent-watch", daemon=True).start()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
