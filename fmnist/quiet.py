"""Warnings and log lines a user cannot act on, dropped so that the ones that matter stand out.

Called by the entry point (:mod:`fmnist.main`) and by each sweep worker process, which starts
as a fresh interpreter.
"""

import logging
import warnings

#: Lightning's lines that fmnist's own first line and summary say better: the device, the end of fit.
SAID_BY_FMNIST = ("GPU available:", "TPU available:", "HPU available:", "`Trainer.fit` stopped:")


def quiet_lightning() -> None:
    """Drop Lightning's and torch's messages that say nothing about the user's run."""
    # fmnist's batches are slices of in-memory tensors, for which workers only add overhead
    warnings.filterwarnings("ignore", r".*does not have many workers.*")
    # test/validate/predict from a checkpoint: it holds the averaged weights already (Lightning saves the
    # average as the model's state); only resuming a fit needs the averaging state, and fit restores it
    warnings.filterwarnings("ignore", r".*The WeightAveraging state cannot be restored.*")
    # raised inside Lightning 2.6 by torch >= 2.10's pytree module, not by fmnist's code
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    lightning = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    lightning.addFilter(lambda record: not record.getMessage().startswith(SAID_BY_FMNIST))
    lightning.addFilter(lambda record: "litlogger" not in record.getMessage())  # an advertisement for a cloud service
    # fmnist's first line names the seed, the device and the precision
    logging.getLogger("lightning.fabric.utilities.seed").addFilter(
        lambda record: "Seed set to" not in record.getMessage()
    )


def quiet_sweep_trials() -> None:
    """A sweep's trials print nothing of their own: the sweep prints a line per finished trial."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
