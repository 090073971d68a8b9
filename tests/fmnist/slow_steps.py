"""A callback for tests that stop a real fit: each batch of the stage named takes ``seconds`` longer.

So a signal sent a moment after an epoch ends lands where the test means it to: ``python -m fmnist fit
--trainer.callbacks+ tests.fmnist.slow_steps.SlowSteps --trainer.callbacks.stage validation``.
"""

import time
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer


class SlowSteps(Callback):
    def __init__(self, stage: Literal["train", "validation"] = "train", seconds: float = 0.05) -> None:
        self.stage, self.seconds = stage, seconds

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.stage == "train":
            time.sleep(self.seconds)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        if self.stage == "validation" and not trainer.sanity_checking:
            time.sleep(self.seconds)
