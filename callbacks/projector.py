"""Penultimate-layer embeddings of validation images in TensorBoard's Projector tab.

On by default in ``python -m fmnist fit``: 1000 validation images' 128-d ``fc1`` features, with
class names to colour by and the images themselves as thumbnails.
"""

import math
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from callbacks.render import to_unit_range
from callbacks.sampling import evaluating, fixed_sample, is_due, validation_dataset
from callbacks.tensorboard import epoch_step, find_tensorboard
from fmnist.data import CLASS_NAMES

#: TensorBoard's Projector refuses sprite images larger than this many pixels a side.
MAX_SPRITE_SIDE = 8192


class EmbeddingProjector(Callback):
    """Write the output of ``layer`` for a fixed, seeded sample of validation images.

    Each point carries metadata columns ``label`` (the true class name) and ``predicted``, and
    its image as a sprite thumbnail, so "Color by: label" and the thumbnails work. Written once
    at the end of fit, and also every ``every_n_epochs`` epochs when that is set, each time under
    its own step. The sample comes from the whole validation set, also under DDP (it is drawn on
    global rank zero only).

    Args:
        num_images: how many validation images to embed (all of them when the validation set is
            smaller); few enough for the sprite of all thumbnails to fit TensorBoard's 8192 x 8192
            pixels, or the run stops with an error before training.
        layer: the submodule whose output is the embedding (``net.fc1``: the 128-d features).
        every_n_epochs: also write after every this many epochs; ``0``: only at the end of fit.
        seed: chooses the sample; independent of the training seed.
        value_range: the range of the model's input pixels, mapped back to black..white.
        class_names: names of the classes, in label order.
        tag: the embedding's name in the Projector (defaults to ``layer``).

    Example::

        trainer = Trainer(callbacks=[EmbeddingProjector(num_images=10_000, every_n_epochs=1)])
    """

    def __init__(
        self,
        num_images: int = 1000,
        layer: str = "net.fc1",
        every_n_epochs: int = 0,
        seed: int = 0,
        value_range: tuple[float, float] = (-1.0, 1.0),
        class_names: Sequence[str] = CLASS_NAMES,
        tag: str | None = None,
    ) -> None:
        if num_images < 1:
            raise MisconfigurationException(f"EmbeddingProjector: num_images must be at least 1, got {num_images}")
        if every_n_epochs < 0:
            raise MisconfigurationException(
                f"EmbeddingProjector: every_n_epochs must be 0 or more, got {every_n_epochs}"
            )
        self.num_images, self.layer, self.every_n_epochs, self.seed = num_images, layer, every_n_epochs, seed
        self.value_range, self.class_names, self.tag = value_range, list(class_names), tag or layer
        self._sample: tuple[Tensor, Tensor] | None = None
        self._written_at: int | None = None

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        try:
            pl_module.get_submodule(self.layer)
        except AttributeError as err:
            names = ", ".join(name for name, _ in pl_module.named_modules() if name)
            raise MisconfigurationException(
                f"EmbeddingProjector: no layer {self.layer!r}; the model has {names}"
            ) from err

    @override
    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._sample is None and trainer.is_global_zero and trainer.state.fn == "fit":
            self._sample = self._draw_sample(trainer)  # checks the size before any epoch is spent

    def _draw_sample(self, trainer: "pl.Trainer") -> tuple[Tensor, Tensor]:
        dataset = validation_dataset(trainer)
        count = self.num_images
        if count > len(dataset):
            rank_zero_warn(
                f"EmbeddingProjector: num_images={count} but the validation set holds {len(dataset)} images;"
                " embedding all of them (--data.val_size 0 validates on the 10k test images)"
            )
            count = len(dataset)
        side = math.ceil(math.sqrt(count)) * max(dataset[0][0].shape[-2:])
        if side > MAX_SPRITE_SIDE:
            raise MisconfigurationException(
                f"EmbeddingProjector: num_images={count} makes a {side}x{side} px sprite of thumbnails;"
                f" TensorBoard shows at most {MAX_SPRITE_SIDE}x{MAX_SPRITE_SIDE}: embed fewer images"
            )
        return fixed_sample(dataset, count, self.seed)

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.sanity_checking and is_due(trainer.current_epoch, self.every_n_epochs):
            self._write(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._write(trainer, pl_module)

    def _write(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self._written_at == trainer.global_step:
            return  # the end of fit right after an epoch that was written: same weights
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        if self._sample is None:
            self._sample = self._draw_sample(trainer)
        images, labels = self._sample
        features, predicted = self._embed(pl_module, images)
        metadata = [[self.class_names[t], self.class_names[p]] for t, p in zip(labels.tolist(), predicted.tolist())]
        writer.add_embedding(
            features,
            metadata=metadata,
            metadata_header=["label", "predicted"],
            label_img=to_unit_range(images, self.value_range),
            global_step=epoch_step(trainer),
            tag=self.tag,
        )
        self._written_at = trainer.global_step

    def _embed(self, pl_module: "pl.LightningModule", images: Tensor) -> tuple[Tensor, Tensor]:
        """The layer's output and the predicted class for ``images``, in batches of 500."""
        captured: list[Tensor] = []
        hook = pl_module.get_submodule(self.layer).register_forward_hook(
            lambda module, inputs, output: captured.append(output.detach().flatten(1).float().cpu())
        )
        predicted = []
        try:
            with evaluating(pl_module):
                for chunk in images.split(500):
                    predicted.append(pl_module(chunk.to(pl_module.device)).argmax(dim=1).cpu())
        finally:
            hook.remove()
        return torch.cat(captured), torch.cat(predicted)
