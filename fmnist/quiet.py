"""Warnings and log lines a user cannot act on, dropped so that the ones that matter stand out.

Called by the entry point (:mod:`fmnist.main`) and by each sweep worker process, which starts
as a fresh interpreter.
"""

import logging
import warnings


def quiet_lightning() -> None:
    """Drop Lightning's and torch's messages that say nothing about the user's run."""
    # fmnist's batches are slices of in-memory tensors, for which workers only add overhead
    warnings.filterwarnings("ignore", r".*does not have many workers.*")
    # test/validate/predict from a checkpoint: it holds the averaged weights already (Lightning saves the
    # average as the model's state); only resuming a fit needs the averaging state, and fit restores it
    warnings.filterwarnings("ignore", r".*The WeightAveraging state cannot be restored.*")
    # raised inside Lightning 2.6 by torch >= 2.10's pytree module, not by fmnist's code
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()  # an advertisement for a cloud service
    )
