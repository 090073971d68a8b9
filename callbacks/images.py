"""Validation images in TensorBoard's Images tab: a fixed sample, and the misclassified ones.

Both are on by default in ``python -m fmnist fit`` (see ``configs/default.yaml``).
"""

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from callbacks.render import GREEN, RED, captioned_grid, to_unit_range
from callbacks.sampling import evaluating, fixed_sample, is_due, validation_dataset, validation_logits
from callbacks.tensorboard import epoch_step, find_tensorboard
from fmnist.data import CLASS_NAMES


def _check(name: str, num_images: int, every_n_epochs: int, nrow: int) -> None:
    if num_images < 1 or nrow < 1:
        raise MisconfigurationException(f"{name}: num_images and nrow must be at least 1, got {num_images}, {nrow}")
    if every_n_epochs < 1:
        raise MisconfigurationException(f"{name}: every_n_epochs must be at least 1, got {every_n_epochs}")


class SampleImages(Callback):
    """Each validation epoch, the same validation images with the predicted and the true class.

    The tutorial's ``add_image("Sample Images", make_grid(images))``, with a caption under each
    image: the prediction (green when right, red when wrong) and the true class. The images are
    a fixed, seeded sample of the whole validation set, so epochs compare image by image.

    Args:
        num_images: how many images the grid shows.
        nrow: images per grid row.
        every_n_epochs: write every this many epochs.
        seed: chooses the sample; independent of the training seed.
        value_range: the range of the model's input pixels, mapped back to black..white.
        class_names: names of the classes, in label order.
        tag: the image's tag in TensorBoard.

    Example::

        trainer = Trainer(callbacks=[SampleImages(num_images=32)])
    """

    def __init__(
        self,
        num_images: int = 16,
        nrow: int = 8,
        every_n_epochs: int = 1,
        seed: int = 0,
        value_range: tuple[float, float] = (-1.0, 1.0),
        class_names: Sequence[str] = CLASS_NAMES,
        tag: str = "Sample Images",
    ) -> None:
        _check(type(self).__name__, num_images, every_n_epochs, nrow)
        self.num_images, self.nrow, self.every_n_epochs, self.seed = num_images, nrow, every_n_epochs, seed
        self.value_range, self.class_names, self.tag = value_range, list(class_names), tag
        self._sample: tuple[Tensor, Tensor] | None = None

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking or not is_due(trainer.current_epoch, self.every_n_epochs):
            return
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        if self._sample is None:
            self._sample = fixed_sample(validation_dataset(trainer), self.num_images, self.seed)
        images, labels = self._sample
        with evaluating(pl_module):
            predicted = pl_module(images.to(pl_module.device)).argmax(dim=1).cpu()
        captions = [(self.class_names[p], f"true: {self.class_names[t]}") for p, t in zip(predicted, labels)]
        colors = [GREEN if p == t else RED for p, t in zip(predicted, labels)]
        grid = captioned_grid(to_unit_range(images, self.value_range), captions, colors, nrow=self.nrow)
        writer.add_image(self.tag, grid, global_step=epoch_step(trainer))


class MisclassifiedImages(Callback):
    """Each validation epoch, a grid of the validation images the model got wrong.

    Each image is captioned with the predicted class (red) and the true class. The images are
    the first ``num_images`` mistakes in validation order, which is fixed, so the grid shows
    which mistakes persist from epoch to epoch. It reuses the logits ``validation_step``
    returns (a tensor or a dict with ``"logits"``), so it costs no extra forward pass. Under DDP
    it shows the mistakes in global rank zero's shard of the validation set.

    Args:
        num_images: at most this many images.
        nrow: images per grid row.
        every_n_epochs: write every this many epochs.
        value_range: the range of the model's input pixels, mapped back to black..white.
        class_names: names of the classes, in label order.
        tag: the image's tag in TensorBoard.

    Example::

        trainer = Trainer(callbacks=[MisclassifiedImages(num_images=64)])
    """

    def __init__(
        self,
        num_images: int = 32,
        nrow: int = 8,
        every_n_epochs: int = 1,
        value_range: tuple[float, float] = (-1.0, 1.0),
        class_names: Sequence[str] = CLASS_NAMES,
        tag: str = "Misclassified Images",
    ) -> None:
        _check(type(self).__name__, num_images, every_n_epochs, nrow)
        self.num_images, self.nrow, self.every_n_epochs = num_images, nrow, every_n_epochs
        self.value_range, self.class_names, self.tag = value_range, list(class_names), tag
        self._found: list[tuple[Tensor, Tensor, Tensor]] = []
        self._count = 0

    def _collecting(self, trainer: "pl.Trainer") -> bool:
        return (
            not trainer.sanity_checking
            and trainer.is_global_zero
            and is_due(trainer.current_epoch, self.every_n_epochs)
        )

    @override
    def on_validation_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._found, self._count = [], 0

    @override
    def on_validation_batch_end(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._count >= self.num_images or not self._collecting(trainer):
            return
        logits = validation_logits(outputs, self)
        if logits is None:
            return
        images, labels = batch[0], batch[1]
        predicted = logits.argmax(dim=1)
        wrong = (predicted != labels).nonzero().flatten()[: self.num_images - self._count]
        if len(wrong):
            self._found.append((images[wrong].cpu(), predicted[wrong].cpu(), labels[wrong].cpu()))
            self._count += len(wrong)

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._found or not self._collecting(trainer):
            return
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        images, predicted, labels = (torch.cat(parts) for parts in zip(*self._found))
        captions = [(self.class_names[p], f"true: {self.class_names[t]}") for p, t in zip(predicted, labels)]
        grid = captioned_grid(to_unit_range(images, self.value_range), captions, [RED] * len(labels), nrow=self.nrow)
        writer.add_image(self.tag, grid, global_step=epoch_step(trainer))
        self._found = []
