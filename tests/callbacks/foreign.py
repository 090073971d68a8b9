"""A classifier that is not fmnist's, for the callbacks' tests: RGB 32x32 images, four named classes.

Nothing here imports fmnist; ``test_foreign_model.py`` and ``test_callback_failures.py`` use it.
"""

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

NAMES = ("cat", "dog", "ship", "frog")
VAL_IMAGES = 40
HIDDEN = 24


class ColourShapes(pl.LightningDataModule):
    """RGB 32x32 images whose dominant colour channel (and brightness) gives one of four classes.

    Batches are ``(images, labels, index)``: a third element the callbacks must ignore. A fifth
    of the labels are random, so the model makes mistakes to show. No ``value_range``: the
    pictures stretch each image from its min to its max.
    """

    class_names = NAMES

    def __init__(self, train: int = 160, val: int = VAL_IMAGES) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)

        def make(count: int) -> TensorDataset:
            labels = torch.randint(0, 4, (count,), generator=generator)
            images = torch.rand(count, 3, 32, 32, generator=generator) * 3 - 1.5  # not in [-1, 1]
            images[torch.arange(count), labels % 3, 8:24, 8:24] += 2.0 + labels[:, None, None] // 3
            noisy = torch.rand(count, generator=generator) < 0.2
            labels[noisy] = torch.randint(0, 4, (int(noisy.sum()),), generator=generator)
            return TensorDataset(images, labels, torch.arange(count))

        self.train_set, self.val_set = make(train), make(val)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=16, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=16)


class TinyRGBNet(pl.LightningModule):
    """``features`` (conv, pool) and ``head`` (two linear layers); no ``net.fc1``, no ``example_input_array``."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8 * 16, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, len(NAMES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        images, labels, _ = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("Loss/train", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels, _ = batch
        logits = self(images)
        self.log("Loss/val", F.cross_entropy(logits, labels))
        return logits  # a bare tensor, where fmnist returns a dict

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def train(model: pl.LightningModule, extra: list[pl.Callback], epochs: int = 2) -> pl.Trainer:
    pl.seed_everything(3)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=pl.loggers.TensorBoardLogger("runs", name="foreign"), callbacks=extra,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
        log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, ColourShapes())
    return trainer
