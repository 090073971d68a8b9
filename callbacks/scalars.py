"""Charts that put several scalar tags on one plot (TensorBoard's Custom Scalars dashboard).

On by default in ``python -m fmnist fit``: the ``Losses`` chart shows ``Loss/train`` and
``Loss/val`` together.
"""

import re

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from typing_extensions import override

from callbacks.tensorboard import find_tensorboard


class MultilineCharts(Callback):
    """Write a Custom Scalars layout once per run: each chart draws the listed tags together.

    This is the tutorial's ``add_scalars("Losses", {"train": ..., "val": ...})`` chart without its
    side effect: ``add_scalars`` writes each line into an extra run (``Losses_train``,
    ``Losses_val``), while a layout only refers to tags the run already logs.

    Args:
        charts: chart title -> the scalar tags it draws (exact tag names).
        category: the heading the charts appear under in the Custom Scalars dashboard.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[MultilineCharts({"Losses": ["Loss/train", "Loss/val"]})], logger=False)
    """

    def __init__(
        self,
        charts: dict[str, list[str]] = {"Losses": ["Loss/train", "Loss/val"]},  # noqa: B006 (never mutated)
        category: str = "Training",
    ) -> None:
        if not charts or not all(charts.values()):
            raise MisconfigurationException(f"MultilineCharts needs at least one tag per chart, got {charts!r}")
        self.charts = {title: list(tags) for title, tags in charts.items()}
        self.category = category

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        # the layout's tags are regular expressions; anchor them so "Loss/val" does not match "Loss/val_x"
        layout = {
            self.category: {
                title: ["Multiline", [f"^{re.escape(tag)}$" for tag in tags]] for title, tags in self.charts.items()
            }
        }
        writer.add_custom_scalars(layout)
