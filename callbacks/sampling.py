"""What the visual callbacks share besides the writer: fixed samples and side-effect-free forwards."""

from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate


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
