"""``python -m fmnist predict``'s output: ``predictions.csv`` in the run folder, and a picture grid.

Both are on by default (``configs/default.yaml``).
"""

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from callbacks import contract
from callbacks.render import WHITE, captioned_grid, to_unit_range
from callbacks.tensorboard import find_tensorboard


class PredictionWriter(BasePredictionWriter):
    """Save each predicted image's file, class index, class name and confidence as CSV rows.

    Reads ``predict_step``'s dict of ``"class_index"``, ``"class_name"`` and ``"confidence"`` (see
    :mod:`callbacks.contract`); a batch without them is left out, with one warning. ``index`` is the
    image's position in the prediction dataset (the official test split for fmnist, or the pictures
    of ``--data.predict_path`` in file-name order); ``file`` is the picture's path when the
    predictions carry a ``"file"`` list, empty otherwise. Rows are written batch by batch, so
    nothing accumulates in memory. Each rank writes the images it predicted; with several ranks the
    file name carries the rank.

    Args:
        filename: CSV file name, written into ``trainer.log_dir``.

    Example::

        python -m fmnist predict --ckpt_path runs/<run>/version_0/checkpoints/last.ckpt
    """

    COLUMNS = ("index", "file", "class_index", "class_name", "confidence")
    #: What it reads from ``predict_step``'s output; ``"file"`` is optional.
    KEYS = ("class_index", "class_name", "confidence")

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
        prediction = contract.prediction_outputs(prediction, self, self.KEYS)
        if prediction is None:
            return
        classes = prediction["class_index"].tolist()
        indices = batch_indices or range(self._rows, self._rows + len(classes))
        files = prediction.get("file") or [""] * len(classes)
        for index, file, class_index, name, confidence in zip(
            indices, files, classes, prediction["class_name"], prediction["confidence"].tolist()
        ):
            self._writer.writerow([index, file, class_index, name, f"{confidence:.4f}"])
        self._rows += len(classes)

    @override
    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class PredictionGrid(Callback):
    """The first predicted images in TensorBoard's Images tab, captioned with class, confidence and file.

    Shows the images as the model saw them (for your own pictures: after the grayscale, fit and
    inversion), so a wrong prediction can be told apart from a badly prepared picture. Batches
    are ``(images, ...)`` or ``{"image": ...}``; predictions are ``predict_step``'s
    ``{"class_name", "confidence"}`` and, optionally, ``"file"`` (see :mod:`callbacks.contract`);
    a batch without them is left out, with one warning.

    Args:
        num_images: how many images the grid shows at most.
        nrow: images per grid row.
        value_range: the range of the model's input pixels shown as black..white; ``None``: the
            datamodule's ``value_range``, else each image's own min..max.
        tag: the image's tag in TensorBoard.

    Example::

        python -m fmnist predict --ckpt_path best --data.predict_path photos/
    """

    #: What it reads from ``predict_step``'s output; ``"file"`` is optional.
    KEYS = ("class_name", "confidence")

    def __init__(
        self,
        num_images: int = 64,
        nrow: int = 8,
        value_range: tuple[float, float] | None = None,
        tag: str = "Predictions",
    ) -> None:
        if num_images < 1 or nrow < 1:
            raise MisconfigurationException(
                f"PredictionGrid: num_images and nrow must be at least 1, got {num_images}, {nrow}"
            )
        self.num_images, self.nrow, self.value_range, self.tag = num_images, nrow, value_range, tag
        self._images: list[Tensor] = []
        self._captions: list[tuple[str, str]] = []

    @override
    def on_predict_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._images, self._captions = [], []

    @override
    def on_predict_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        room = self.num_images - len(self._captions)
        if room <= 0 or not trainer.is_global_zero:
            return
        outputs = contract.prediction_outputs(outputs, self, self.KEYS)
        if outputs is None:
            return
        images = batch["image"] if isinstance(batch, Mapping) else batch[0]
        files = outputs.get("file") or [""] * len(images)
        names, confidences = outputs["class_name"][:room], outputs["confidence"][:room].tolist()
        self._images.append(images[:room].detach().float().cpu())
        self._captions += [(f"{n} {c:.1%}", _short(os.path.basename(f))) for n, c, f in zip(names, confidences, files)]

    @override
    def on_predict_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        writer = find_tensorboard(trainer, self)
        if writer is None or not self._images:
            return
        images = to_unit_range(torch.cat(self._images), contract.value_range(self.value_range, trainer))
        grid = captioned_grid(images, self._captions, [WHITE] * len(self._captions), nrow=self.nrow)
        writer.add_image(self.tag, grid, global_step=trainer.global_step)
        writer.flush()
        self._images, self._captions = [], []


def _short(name: str, width: int = 17) -> str:
    """A file name that fits under a grid tile: long names keep their start and their extension."""
    return name if len(name) <= width else name[: width - 7] + "..." + name[-4:]
