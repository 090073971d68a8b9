"""A TensorBoardLogger that gives each run a folder of its own, even when runs start together.

It is the default ``--trainer.logger`` of ``python -m fmnist``; runs land in
``runs/<name>/version_<n>/``, which ``tensorboard --logdir runs`` shows side by side.
"""

import os
import shutil
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fsspec.utils import get_protocol
from jsonargparse.typing import PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.hparams import chosen_hparams
from fmnist.errors import InputError


class RunLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger with a race-free run folder and fmnist's defaults.

    Lightning picks ``version_<max + 1>`` by listing the folder, so two runs started at the same
    moment pick the same folder and write over each other. This logger claims the folder with an
    atomic ``mkdir`` on global rank zero instead and takes the next number when it is taken.

    It takes ``TensorBoardLogger``'s arguments in the same order and with the same meaning,
    ``SummaryWriter`` keywords (``comment``, ``filename_suffix``, ...) included. What differs:

    - ``default_hp_metric`` is ``False``: the HParams table is written by callbacks, with real
      metrics instead of a ``hp_metric`` placeholder. ``save_dir`` may be left out (``runs``).
    - ``flush_secs`` defaults to 30 (``SummaryWriter``: 120); the three ``SummaryWriter``
      settings below are named keyword-only parameters so that the CLI shows and checks them.
    - Reading ``version`` when it is numbered automatically creates ``version_<n>`` empty, on
      a local file system: the number is handed out then (``ModelCheckpoint`` and
      ``Trainer.log_dir`` read it in ``setup``, before anything is written), so it must be
      claimed then. ``finalize``, or the end of the logger or of the process, removes the claim
      again, and the parent folders made for it, when nothing was written into it.

    Args:
        save_dir: root of all runs (``tensorboard --logdir`` points here).
        name: run name, the folder under ``save_dir``. ``python -m fmnist`` fills placeholders
            such as ``{model.lr}`` and ``{data.batch_size}`` from the configuration.
        version: run folder under ``name``; ``None`` claims the next free ``version_<n>``.
        log_graph, default_hp_metric, prefix, sub_dir: as in ``TensorBoardLogger``; the
            graph and hyperparameters are written by callbacks, hence the defaults.
        flush_secs: write pending events to disk at least this often, so that a killed run
            loses at most this many seconds; scalars are also flushed whenever they are logged.
        max_queue: pending events that force a flush before ``flush_secs`` is up.
        purge_step: when continuing a run, hide the events the killed run wrote from this
            step on, so TensorBoard shows one run with no duplicated steps.
        **kwargs: further ``SummaryWriter`` arguments, e.g. ``filename_suffix``.

    Example::

        python -m fmnist fit --trainer.logger.init_args.flush_secs 10
    """

    def __init__(
        self,
        save_dir: str | os.PathLike = "runs",
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = False,
        prefix: str = "",
        sub_dir: str | None = None,
        *,
        flush_secs: PositiveInt = 30,
        max_queue: PositiveInt = 10,
        purge_step: int | None = None,
        **kwargs: Any,
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
            **kwargs,
        )
        #: Numbered automatically (no ``version`` given): the number this logger claimed, once it has.
        self._numbered, self._version_claimed = version is None, None
        #: The writer ``experiment`` made, if it has made one (reading ``experiment`` would make one).
        self._writer: SummaryWriter | None = None
        #: The run folder this logger created, and the topmost folder it had to create for it.
        self._created: tuple[Path, Path] | None = None
        #: Removes that folder, if still empty, when this logger is collected or the process ends.
        self._release: weakref.finalize | None = None

    @property
    @override
    def version(self) -> int | str:
        if self._version_claimed is not None:
            return self._version_claimed
        version = super().version  # as given, or Lightning's pick: the highest version_<n> listed, plus one
        # other ranks receive rank zero's folder through Trainer.log_dir; remote file systems have no atomic
        # mkdir that fsspec promises, so they keep Lightning's listing
        if self._numbered and rank_zero_only.rank == 0 and get_protocol(self.root_dir) == "file":
            version = self._claim(version)
        self._version_claimed = version
        return version

    def _claim(self, version: int) -> int:
        """Create ``version_<version>``, or the next free number's folder; that number."""
        while True:
            # the folder log_dir names, with ``~`` and ``$VARS`` expanded as log_dir does
            path = Path(os.path.expanduser(os.path.expandvars(os.path.join(self.root_dir, f"version_{version}"))))
            topmost = next((p for p in reversed(path.parents) if not p.exists()), path)
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                version += 1
                continue
            except OSError as err:
                raise InputError(f"cannot create the log folder {path}: {err.strerror or err}") from err
            self._created = (path, topmost)
            self._release = weakref.finalize(self, _remove, path, topmost, only_if_empty=True)
            return version

    @property
    @override
    def experiment(self) -> SummaryWriter:
        writer = super().experiment
        self._writer = writer
        return writer

    @override
    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: dict[str, Any] | None = None, step: int | None = None) -> None:
        """As Lightning's, with ``hparams.yaml`` holding what the user chose: no ``_instantiator``, and a
        class's arguments only where they differ from its defaults (see ``callbacks.hparams.chosen_hparams``)."""
        if isinstance(params, Mapping):
            params = chosen_hparams(params)
        super().log_hyperparams(params, metrics, step)

    @override
    @rank_zero_only
    def finalize(self, status: str) -> None:
        # Lightning closes the writer at the end of every stage, so the test after fit would open a
        # second event file in the run folder. After a stage that succeeded the writer is flushed,
        # not closed: the next stage appends to the same file, and close() ends it.
        if status == "success" and self._writer is not None:
            self._writer.flush()
            self.save()
        else:
            super().finalize(status)
        if self._created is not None and _remove(*self._created, only_if_empty=True):
            self._forget()

    @rank_zero_only
    def close(self) -> None:
        """Close the run's event file, once its last stage is done; a later write opens a new file."""
        if self._writer is not None:
            self._writer.close()

    def discard(self) -> None:
        """Delete the run folder this logger created, for a run that failed before it began.

        Parent folders made for it go too, but only while they are empty: a run started at the
        same moment keeps its own folder.
        """
        if self._created is None:
            return
        created = self._created
        self._forget()
        self.finalize("failed")
        _remove(*created, only_if_empty=False)

    def _forget(self) -> None:
        # once removed, the number is free for another run: never remove that run's folder
        if self._release is not None:
            self._release.detach()
        self._created = self._release = None

    @override
    def __getstate__(self) -> dict[str, Any]:
        # a copy (a DDP spawn, a deepcopy) does not own the claim; the original removes it
        # and a SummaryWriter does not pickle (Lightning drops its own reference to it likewise)
        return {**super().__getstate__(), "_created": None, "_release": None, "_writer": None}


def _remove(path: Path, topmost: Path, *, only_if_empty: bool) -> bool:
    """Delete ``path`` and its parents up to ``topmost`` while they are empty; ``True`` if it went."""
    if not only_if_empty:
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            return False  # something was written into it: it is a run
    for parent in path.parents:
        if parent == topmost.parent:
            break
        try:
            parent.rmdir()
        except OSError:
            break
    return True
