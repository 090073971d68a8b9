"""Penultimate-layer embeddings of validation images in TensorBoard's Projector tab.

On by default in ``python -m fmnist fit``: 1000 validation images' 128-d ``fc1`` features, with
class names to colour by and the images themselves as thumbnails. On any other classifier it
shows, by default, the input of the model's last ``nn.Linear`` (the penultimate features).
"""

import math
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn
from typing_extensions import override

from callbacks.contract import check_every_n_epochs, class_names, is_due, validation_logits, value_range, warn_once
from callbacks.render import to_unit_range
from callbacks.sampling import evaluating, fixed_sample, validation_dataset
from callbacks.tensorboard import epoch_step, find_tensorboard

#: TensorBoard's Projector refuses sprite images larger than this many pixels a side.
MAX_SPRITE_SIDE = 8192


class EmbeddingProjector(Callback):
    """Write the features of a fixed, seeded sample of validation images for the Projector.

    The features are the output of ``layer`` when it is given, else the input of the model's
    last ``nn.Linear`` (the penultimate features of a classifier); a model without any
    ``nn.Linear`` and no ``layer`` gets a warning and no embedding, and trains on.

    Each point carries metadata columns ``label`` (the true class name) and ``predicted``, and
    its image as a sprite thumbnail, so "Color by: label" and the thumbnails work. Written once
    at the end of fit, and also every ``every_n_epochs`` epochs when that is set, each time under
    its own step. The sample comes from the whole validation set, also under DDP (it is drawn on
    global rank zero only).

    Args:
        num_images: how many validation images to embed (all of them when the validation set is
            smaller); few enough for the sprite of all thumbnails to fit TensorBoard's 8192 x 8192
            pixels, or the run stops with an error before training.
        layer: the submodule whose output is the embedding (fmnist names ``net.fc1``: the 128-d
            features); ``None``: the input of the last ``nn.Linear``.
        every_n_epochs: also write after every this many epochs; ``0``: only at the end of fit.
        seed: chooses the sample; independent of the training seed.
        value_range: the range of the model's input pixels, shown as black..white; ``None``: the
            datamodule's ``value_range``, else each thumbnail stretched from its min to its max.
        class_names: names of the classes, in label order; ``None``: the datamodule's
            ``class_names``, else ``"0"``, ``"1"``, ...
        tag: the embedding's name in the Projector (defaults to ``layer``, or ``<last linear>.input``).

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[EmbeddingProjector(num_images=500, every_n_epochs=1)], logger=False)
    """

    def __init__(
        self,
        num_images: int = 1000,
        layer: str | None = None,
        every_n_epochs: int = 0,
        seed: int = 0,
        value_range: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
        tag: str | None = None,
    ) -> None:
        if num_images < 1:
            raise MisconfigurationException(f"EmbeddingProjector: num_images must be at least 1, got {num_images}")
        self.every_n_epochs = check_every_n_epochs(self, every_n_epochs, minimum=0)
        self.num_images, self.layer, self.seed = num_images, layer, seed
        self.value_range, self.class_names, self.tag = value_range, class_names, tag
        self._sample: tuple[Tensor, Tensor] | None = None
        self._written_at: int | None = None

    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if self.layer is None:
            return
        try:
            pl_module.get_submodule(self.layer)
        except AttributeError as err:
            names = ", ".join(name for name, _ in pl_module.named_modules() if name)
            raise MisconfigurationException(
                f"EmbeddingProjector: no layer {self.layer!r}; the model has {names}"
            ) from err

    def _features_source(self, pl_module: "pl.LightningModule") -> tuple[str, nn.Module, bool] | None:
        """``(tag, module, capture its input?)``: ``layer``'s output, else the last ``nn.Linear``'s input."""
        if self.layer is not None:
            return self.tag or self.layer, pl_module.get_submodule(self.layer), False
        linears = [(name, module) for name, module in pl_module.named_modules() if isinstance(module, nn.Linear)]
        if not linears:
            warn_once(self, "found no nn.Linear in the model and no layer was named; it will write nothing.")
            return None
        name, module = linears[-1]
        return self.tag or f"{name}.input", module, True

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
                " embedding all of them"
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
        source = self._features_source(pl_module)
        if writer is None or source is None:
            return
        if self._sample is None:
            self._sample = self._draw_sample(trainer)
        images, labels = self._sample
        tag, module, use_input = source
        features, logits = self._embed(pl_module, module, use_input, images)
        if validation_logits(logits, self) is None:
            return
        names = class_names(self.class_names, trainer, logits.shape[1], self)
        predicted = logits.argmax(dim=1)
        metadata = [[names[t], names[p]] for t, p in zip(labels.tolist(), predicted.tolist())]
        writer.add_embedding(
            features,
            metadata=metadata,
            metadata_header=["label", "predicted"],
            label_img=to_unit_range(images, value_range(self.value_range, trainer)),
            global_step=epoch_step(trainer),
            tag=tag,
        )
        self._written_at = trainer.global_step

    @staticmethod
    def _embed(
        pl_module: "pl.LightningModule", module: nn.Module, use_input: bool, images: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        """The features ``module`` sees (its input) or makes (its output), and the logits, in batches of 500."""
        captured: list[Tensor] = []

        def capture(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            captured.append((inputs[0] if use_input else output).detach().flatten(1).float().cpu())

        hook = module.register_forward_hook(capture)
        logits = []
        try:
            with evaluating(pl_module):
                for chunk in images.split(500):
                    output = pl_module(chunk.to(pl_module.device))
                    logits.append(output.float().cpu() if isinstance(output, Tensor) else None)
        finally:
            hook.remove()
        return torch.cat(captured), torch.cat(logits) if all(isinstance(t, Tensor) for t in logits) else None
