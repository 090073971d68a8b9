"""Warnings and log lines a user cannot act on, dropped so that the ones that matter stand out.

Called by the entry point (:mod:`fmnist.main`) and by each sweep worker process, which starts
as a fresh interpreter.
"""

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Lightning's lines that fmnist's own first line and summary say better: the device, the end of fit.
SAID_BY_FMNIST = ("GPU available:", "TPU available:", "HPU available:", "`Trainer.fit` stopped:")


class _Dropping(logging.Filter):
    """Drops the records whose message contains one of ``texts`` (at its start, with ``start``)."""

    def __init__(self, *texts: str, start: bool = False) -> None:
        super().__init__()
        self.texts, self.start = texts, start

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.texts) if self.start else any(text in message for text in self.texts))


#: One filter object per logger, so that adding it again (every ``main()`` call) adds nothing:
#: ``Logger.addFilter`` keeps a filter once.
_FILTERS = {
    # fmnist's first line and summary say these better; "litlogger": an advertisement for a cloud service
    "lightning.pytorch.utilities.rank_zero": (
        _Dropping(*SAID_BY_FMNIST, start=True),
        _Dropping("litlogger", "Detected KeyboardInterrupt"),
    ),
    # a stop's own line (fmnist.stops) says what stopped the run, where, and how to go on
    "lightning.pytorch.trainer.connectors.signal_connector": (_Dropping("Received SIGTERM"),),
    # fmnist's first line names the seed, the device and the precision
    "lightning.fabric.utilities.seed": (_Dropping("Seed set to"),),
}


def quiet_lightning() -> None:
    """Drop Lightning's and torch's messages that say nothing about the user's run.

    Calling it again changes nothing: ``warnings.filterwarnings`` replaces an equal filter, and
    the logging filters are the same objects.
    """
    # fmnist's batches are slices of in-memory tensors, for which workers only add overhead
    warnings.filterwarnings("ignore", r".*does not have many workers.*")
    # test/validate/predict from a checkpoint: it holds the averaged weights already (Lightning saves the
    # average as the model's state); only resuming a fit needs the averaging state, and fit restores it
    warnings.filterwarnings("ignore", r".*The WeightAveraging state cannot be restored.*")
    # raised inside Lightning 2.6 by torch >= 2.10's pytree module, not by fmnist's code
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    for name, filters in _FILTERS.items():
        for dropping in filters:
            logging.getLogger(name).addFilter(dropping)


@contextmanager
def quiet_sweep_trials() -> Iterator[None]:
    """While a sweep's trials run: Lightning logs warnings only, and each warning is shown once (every
    trial would repeat its own; warnings' ``once`` action forgets what it showed whenever the filters
    change, which each trial's parse does). Both as they were when the block ends."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels, show, shown = [logger.level for logger in loggers], warnings.showwarning, set()

    def show_once(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if (str(message), category) not in shown:
            shown.add((str(message), category))
            show(message, category, *args, **kwargs)

    for logger in loggers:
        logger.setLevel(logging.WARNING)
    warnings.showwarning = show_once
    try:
        yield
    finally:
        warnings.showwarning = show
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
