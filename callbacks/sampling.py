"""What the visual callbacks share besides the writer: fixed samples and side-effect-free forwards."""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

_warned: "weakref.WeakSet[object]" = weakref.WeakSet()


def fixed_sample(dataset: Dataset, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """The same ``count`` (image, label) pairs of ``dataset`` every time, chosen with ``seed``.

    Uses its own generator, so the training run's random numbers are untouched.
    """
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(dataset), generator=generator)[:count].sort().values
    images, labels = default_collate([dataset[int(i)] for i in indices])[:2]
    return images, labels


def validation_dataset(trainer: "pl.Trainer") -> Dataset:
    """The full validation dataset (not a rank's shard) of the running fit."""
    loaders = trainer.val_dataloaders
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    if loader is None:
        raise RuntimeError("the trainer has no validation dataloader")
    return loader.dataset


def validation_logits(outputs: Any, callback: object) -> Tensor | None:
    """The logits a ``validation_step`` returned, as a tensor or under the key ``"logits"``.

    Warns once per callback when there are none, and returns ``None``.
    """
    logits = outputs if isinstance(outputs, Tensor) else outputs.get("logits") if isinstance(outputs, dict) else None
    if logits is None and callback not in _warned:
        _warned.add(callback)
        rank_zero_warn(
            f"{type(callback).__name__} needs validation_step to return the logits (a tensor, or a dict"
            " with 'logits'); it will write nothing."
        )
    return logits


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode without gradients, then restore its train/eval mode."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def is_due(epoch: int, every_n_epochs: int) -> bool:
    """Whether a per-epoch visual runs in ``epoch`` (0-based); ``0`` means never."""
    return every_n_epochs > 0 and (epoch + 1) % every_n_epochs == 0
