"""Write ``python -m fmnist predict``'s output to ``predictions.csv`` in the run folder."""

import csv
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from typing_extensions import override


class PredictionWriter(BasePredictionWriter):
    """Save each predicted image's class index, class name and confidence as CSV rows.

    ``index`` is the image's position in the prediction dataset (the official test split for
    fmnist). Rows are written batch by batch, so nothing accumulates in memory. Each rank writes
    the images it predicted; with several ranks the file name carries the rank.

    Args:
        filename: CSV file name, written into ``trainer.log_dir``.

    Example::

        python -m fmnist predict --ckpt_path runs/<run>/version_0/checkpoints/last.ckpt
    """

    COLUMNS = ("index", "class_index", "class_name", "confidence")

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.path: str | None = None
        self._file: Any | None = None

    @override
    def on_predict_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        name, ext = os.path.splitext(self.filename)
        filename = self.filename if trainer.world_size == 1 else f"{name}.rank{trainer.global_rank}{ext}"
        self.path = os.path.join(trainer.log_dir or ".", filename)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._file = open(self.path, "w", newline="")  # noqa: SIM115 (closed in on_predict_end)
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)
        self._rows = 0

    @override
    def write_on_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        classes = prediction["class_index"].tolist()
        indices = batch_indices or range(self._rows, self._rows + len(classes))
        for index, class_index, name, confidence in zip(
            indices, classes, prediction["class_name"], prediction["confidence"].tolist()
        ):
            self._writer.writerow([index, class_index, name, f"{confidence:.4f}"])
        self._rows += len(classes)

    @override
    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
