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

from callbacks.contract import check_every_n_epochs, class_names, is_due, validation_logits, value_range
from callbacks.render import RED, captioned_grid, prediction_captions, to_unit_range
from callbacks.sampling import evaluating, fixed_sample, validation_dataset
from callbacks.tensorboard import epoch_step, find_tensorboard


def _check(callback: Callback, num_images: int, every_n_epochs: int, nrow: int) -> None:
    if num_images < 1 or nrow < 1:
        raise MisconfigurationException(
            f"{type(callback).__name__}: num_images and nrow must be at least 1, got {num_images}, {nrow}"
        )
    check_every_n_epochs(callback, every_n_epochs)


class SampleImages(Callback):
    """Each validation epoch, the same validation images with the predicted class, its probability and the true class.

    The tutorial's ``add_image("Sample Images", make_grid(images))``, with a caption under each
    image as the PyTorch tutorial "Visualizing Models, Data, and Training with TensorBoard" draws
    it: the prediction with its softmax probability (``Coat 87.3%``, green when right, red when
    wrong) and the true class. The images are a fixed, seeded sample of the whole validation set,
    so epochs compare image by image.

    Args:
        num_images: how many images the grid shows.
        nrow: images per grid row.
        every_n_epochs: write every this many epochs.
        seed: chooses the sample; independent of the training seed.
        value_range: the range of the model's input pixels, shown as black..white; ``None``: the
            datamodule's ``value_range``, else each image stretched from its min to its max.
        class_names: names of the classes, in label order; ``None``: the datamodule's
            ``class_names``, else ``"0"``, ``"1"``, ...
        tag: the image's tag in TensorBoard.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SampleImages(num_images=32)], logger=False)
    """

    def __init__(
        self,
        num_images: int = 16,
        nrow: int = 8,
        every_n_epochs: int = 1,
        seed: int = 0,
        value_range: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
        tag: str = "Sample Images",
    ) -> None:
        _check(self, num_images, every_n_epochs, nrow)
        self.num_images, self.nrow, self.every_n_epochs, self.seed = num_images, nrow, every_n_epochs, seed
        self.value_range, self.class_names, self.tag = value_range, class_names, tag
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
            logits = validation_logits(pl_module(images.to(pl_module.device)), self)
        if logits is None:
            return
        names = class_names(self.class_names, trainer, logits.shape[1], self)
        captions, colors = prediction_captions(logits.float().softmax(dim=1).cpu(), labels, names)
        grid = captioned_grid(
            to_unit_range(images, value_range(self.value_range, trainer)), captions, colors, self.nrow
        )
        writer.add_image(self.tag, grid, global_step=epoch_step(trainer))


class MisclassifiedImages(Callback):
    """Each validation epoch, a grid of the validation images the model got wrong.

    Each image is captioned with the predicted class and its probability (red) and the true
    class. The images are the first ``num_images`` mistakes in validation order, which is fixed,
    so the grid shows which mistakes persist from epoch to epoch. It reuses the logits
    ``validation_step`` returns (a tensor or a dict with ``"logits"``), so it costs no extra
    forward pass. Under DDP it shows the mistakes in global rank zero's shard of the validation set.

    Args:
        num_images: at most this many images.
        nrow: images per grid row.
        every_n_epochs: write every this many epochs.
        value_range: as for :class:`SampleImages`.
        class_names: as for :class:`SampleImages`.
        tag: the image's tag in TensorBoard.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[MisclassifiedImages(num_images=64)], logger=False)
    """

    def __init__(
        self,
        num_images: int = 32,
        nrow: int = 8,
        every_n_epochs: int = 1,
        value_range: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
        tag: str = "Misclassified Images",
    ) -> None:
        _check(self, num_images, every_n_epochs, nrow)
        self.num_images, self.nrow, self.every_n_epochs = num_images, nrow, every_n_epochs
        self.value_range, self.class_names, self.tag = value_range, class_names, tag
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
        probabilities = logits.detach().float().softmax(dim=1)
        wrong = (probabilities.argmax(dim=1) != labels).nonzero().flatten()[: self.num_images - self._count]
        if len(wrong):
            self._found.append((images[wrong].cpu(), probabilities[wrong].cpu(), labels[wrong].cpu()))
            self._count += len(wrong)

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not self._found or not self._collecting(trainer):
            return
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        images, probabilities, labels = (torch.cat(parts) for parts in zip(*self._found))
        names = class_names(self.class_names, trainer, probabilities.shape[1], self)
        captions, _ = prediction_captions(probabilities, labels, names)
        pictures = to_unit_range(images, value_range(self.value_range, trainer))
        grid = captioned_grid(pictures, captions, [RED] * len(labels), nrow=self.nrow)
        writer.add_image(self.tag, grid, global_step=epoch_step(trainer))
        self._found = []
