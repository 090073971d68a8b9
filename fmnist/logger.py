"""A TensorBoardLogger that gives each run a folder of its own, even when runs start together.

It is the default ``--trainer.logger`` of ``python -m fmnist``; runs land in
``runs/<name>/version_<n>/``, which ``tensorboard --logdir runs`` shows side by side.
"""

import shutil
from pathlib import Path

from jsonargparse.typing import PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from fmnist.errors import InputError


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with a race-free run folder and a configurable flush interval.

    Lightning picks ``version_<max + 1>`` by listing the folder, so two runs started at the same
    moment pick the same folder and write over each other. This logger claims the folder with an
    atomic ``mkdir`` on global rank zero instead and takes the next number when it is taken.

    Args:
        save_dir: root of all runs (``tensorboard --logdir`` points here).
        name: run name, the folder under ``save_dir``. ``python -m fmnist`` fills placeholders
            such as ``{model.lr}`` and ``{data.batch_size}`` from the configuration.
        version: run folder under ``name``; ``None`` claims the next free ``version_<n>``.
        flush_secs: write pending events to disk at least this often, so that a killed run
            loses at most this many seconds; scalars are also flushed whenever they are logged.
        max_queue: pending events that force a flush before ``flush_secs`` is up.
        purge_step: when continuing a run, hide the events the killed run wrote from this
            step on, so TensorBoard shows one run with no duplicated steps.
        log_graph, default_hp_metric, prefix, sub_dir: as in ``TensorBoardLogger``; the
            graph and hyperparameters are written by callbacks, hence the defaults.

    Example::

        python -m fmnist fit --trainer.logger.init_args.flush_secs 10
    """

    def __init__(
        self,
        save_dir: str = "runs",
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        flush_secs: PositiveInt = 30,
        max_queue: PositiveInt = 10,
        purge_step: int | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = False,
        prefix: str = "",
        sub_dir: str | None = None,
    ) -> None:
        super().__init__(
            save_dir,
            name=name,
            version=version,
            log_graph=log_graph,
            default_hp_metric=default_hp_metric,
            prefix=prefix,
            sub_dir=sub_dir,
            flush_secs=flush_secs,
            max_queue=max_queue,
            purge_step=purge_step,
        )
        #: The run folder this logger created, and the topmost folder it had to create for it.
        self._created: tuple[Path, Path] | None = None

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:
            return version  # other ranks receive rank zero's folder through Trainer.log_dir
        while True:
            path = Path(self.root_dir, f"version_{version}")
            topmost = next((p for p in reversed(path.parents) if not p.exists()), path)
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                version += 1
                continue
            except OSError as err:
                raise InputError(f"cannot create the log folder {path}: {err.strerror or err}") from err
            self._created = (path, topmost)
            return version

    def discard(self) -> None:
        """Delete the run folder this logger created, for a run that failed before it began.

        Parent folders made for it go too, but only while they are empty: a run started at the
        same moment keeps its own folder.
        """
        if self._created is None:
            return
        path, topmost = self._created
        self.finalize("failed")
        shutil.rmtree(path, ignore_errors=True)
        for parent in path.parents:
            if parent == topmost.parent:
                break
            try:
                parent.rmdir()
            except OSError:
                break
        self._created = None
