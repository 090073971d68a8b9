"""The LightningModule: the tutorial's CNN with its loss, metrics, optimizer and logging.

Used by ``python -m fmnist fit|validate|test|predict``; every ``__init__`` argument is a
``--model.*`` flag (``--model.lr 0.01``, ``--model.optimizer SGD``).
"""

import copy
import functools
import inspect
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveFloat, PositiveInt
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from fmnist.augment import tta_views
from fmnist.checkpoints import CheckedLoading
from fmnist.data import VALUE_RANGE
from fmnist.errors import InputError
from fmnist.idx import CLASS_NAMES, IMAGE_SIDE
from fmnist.model import FashionCNN

#: Scheduler arguments that say how long the schedule is; left open (None, or 0 for a required one)
#: they are filled with the run's length (OneCycleLR's ``total_steps``, CosineAnnealingLR's ``T_max``).
SCHEDULE_LENGTH_ARGUMENTS = ("total_steps", "T_max")


class FashionMNISTClassifier(CheckedLoading, LightningModule):
    """Trains :class:`~fmnist.model.FashionCNN` with cross-entropy and logs the tutorial's scalars.

    Logged once per epoch, under the tutorial's tags: ``Loss/train``, ``Accuracy/train``,
    ``Loss/val``, ``Accuracy/val``, ``Accuracy/val_best`` and, for ``test``, ``Loss/test`` and
    ``Accuracy/test``. Losses are the exact mean over the epoch's images; accuracies are
    torchmetrics objects, so Lightning reduces them at epoch end and syncs them across DDP ranks.

    ``validation_step`` returns ``{"loss", "logits"}`` so that visual callbacks can reuse the
    logits instead of running the network again.

    ``FashionMNISTClassifier.load_from_checkpoint(path)`` loads a trained model; a checkpoint whose
    hyperparameters name anything but an imported optimizer or scheduler class is refused
    (:class:`~fmnist.checkpoints.UnsafeCheckpointError`) before anything it names is imported.

    Args:
        lr: learning rate handed to the optimizer.
        optimizer: optimizer class or partial, called as ``optimizer(params, lr=lr)``.
        scheduler: optional learning-rate scheduler, stepped every ``scheduler_interval``; a
            ``ReduceLROnPlateau`` watches ``Loss/val``. Its length, when left open (OneCycleLR's
            ``total_steps`` unset, CosineAnnealingLR's ``T_max: 0``), is filled with the run's:
            ``trainer.estimated_stepping_batches`` per step, ``trainer.max_epochs`` per epoch.
        scheduler_interval: step the scheduler after every ``epoch`` or every optimizer ``step``.
        conv1_channels: output channels of the first convolution.
        conv2_channels: output channels of the second convolution.
        hidden_size: width of the penultimate layer ``fc1``.
        dropout: dropout probability after ``fc1``.
        batch_norm: batch normalisation after each convolution.
        padding: zero-padding of each 3x3 convolution: ``0`` (the tutorial's) or ``1``, which keeps the
            maps' size.
        conv3_channels: output channels of a third conv/pool block; ``0`` (the tutorial's): none.
        label_smoothing: label smoothing of the training loss (``F.cross_entropy``'s); validation
            and test losses stay the plain cross-entropy, comparable between runs.
        channels_last: keep convolution weights and inputs in channels-last memory order, which
            makes the CPU step faster (``docs/results.md``) and helps mixed precision on GPUs.
        tta: test-time augmentation for validation, test and predict: the softmax is averaged over
            the image and these views of it (``shift``: moved by one pixel in each of the four
            directions; ``flip``: mirrored left-right). The plain accuracy is logged as always;
            the averaged one beside it as ``Accuracy/val_tta`` and ``Accuracy/test_tta``, and
            predict's confidence is the averaged probability. Choose the views on validation.
    """

    def __init__(
        self,
        lr: PositiveFloat = 1e-3,
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        conv1_channels: PositiveInt = 32,
        conv2_channels: PositiveInt = 64,
        hidden_size: PositiveInt = 128,
        dropout: ClosedUnitInterval = 0.0,
        batch_norm: bool = False,
        padding: Literal[0, 1] = 0,
        conv3_channels: NonNegativeInt = 0,
        label_smoothing: ClosedUnitInterval = 0.0,
        channels_last: bool = True,
        tta: list[Literal["shift", "flip"]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        # kept as attributes: under LightningCLI, ``hparams`` holds their config, not the callables
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.net = FashionCNN(
            conv1_channels, conv2_channels, hidden_size, dropout, len(CLASS_NAMES), batch_norm, padding, conv3_channels
        )
        self.example_input_array = torch.zeros(1, 1, IMAGE_SIDE, IMAGE_SIDE)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)

        num_classes = len(CLASS_NAMES)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        if tta:  # only then: a run without TTA keeps its modules, and so its seeded numbers
            self.val_acc_tta = MulticlassAccuracy(num_classes, average="micro")
            self.test_acc_tta = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc_best = MaxMetric()
        # saved in checkpoints, so the best accuracy survives a resume
        self.val_acc_best.persistent(True)

    def __deepcopy__(self, memo: dict[int, Any]) -> "FashionMNISTClassifier":
        # Copies (weight averaging makes one) share the optimizer and scheduler factories: they
        # are functions, and LightningCLI's keep the whole CLI alive (trainer, data and all)
        # through their instantiator, which deepcopy would otherwise copy too.
        for factory in (self.optimizer, self.scheduler):
            memo[id(factory)] = factory
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        copied.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return copied

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.contiguous(memory_format=self.memory_format))

    def tta_probabilities(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The plain logits of a batch and the softmax averaged over it and its ``tta`` views.

        The batch runs alone, as without ``tta``, so the plain logits and metrics are exactly those of
        a run without it (a larger batch could round differently); the views run together in a second
        pass. Without ``tta`` the average is the plain softmax.
        """
        logits = self(x)
        if not self.hparams.tta:
            return logits, logits.softmax(dim=1)
        views = self(tta_views(x, self.hparams.tta, fill=VALUE_RANGE[0]))
        probabilities = torch.cat([logits, views]).softmax(dim=1).view(-1, *logits.shape).mean(dim=0)
        return logits, probabilities

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> dict[str, Tensor]:
        x, y = batch
        if self._averages_views(stage):
            logits, probabilities = self.tta_probabilities(x)
            tta = getattr(self, f"{stage}_acc_tta")
            tta.update(probabilities.argmax(dim=1), y)
            self.log(f"Accuracy/{stage}_tta", tta, on_step=False, on_epoch=True, batch_size=y.shape[0])
        else:
            logits = self(x)
        smoothing = self.hparams.label_smoothing if stage == "train" else 0.0
        loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
        accuracy = getattr(self, f"{stage}_acc")
        accuracy.update(logits.argmax(dim=1), y)
        # on_step=False: values stay on the device and are reduced once per epoch, no per-step sync
        log = dict(on_step=False, on_epoch=True, batch_size=y.shape[0], prog_bar=stage != "train")
        self.log(f"Loss/{stage}", loss, sync_dist=True, **log)
        self.log(f"Accuracy/{stage}", accuracy, **log)
        return {"loss": loss, "logits": logits.detach()}

    def _averages_views(self, stage: str) -> bool:
        """Whether this evaluation step averages the ``tta`` views.

        In validate, test and predict, yes. In fit's validation only at its last planned epoch, where
        it tells which views to keep: at every epoch its five or six more passes over the validation
        split would take time from training.
        """
        if stage == "train" or not self.hparams.tta:
            return False
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a trainer (the module used on its own): as in any epoch
            return False
        if stage != "val" or trainer.state.fn != "fit":
            return True
        return not trainer.sanity_checking and trainer.current_epoch + 1 >= (trainer.max_epochs or 0)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return  # two batches of an untrained network are not a "best" accuracy
        self.val_acc_best.update(self.val_acc.compute())
        self.log("Accuracy/val_best", self.val_acc_best.compute(), prog_bar=True)

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Class, name and confidence per image (averaged over the ``tta`` views when set); batches are
        ``(images, labels)`` of the test split, or ``{"image", "file"}`` of
        :class:`~fmnist.pictures.PictureDataset`, whose files are passed on."""
        x = batch["image"] if isinstance(batch, dict) else batch[0] if isinstance(batch, (tuple, list)) else batch
        _, probabilities = self.tta_probabilities(x)
        confidence, classes = probabilities.max(dim=1)
        prediction = {
            "class_index": classes,
            "class_name": [CLASS_NAMES[i] for i in classes.tolist()],
            "confidence": confidence,
        }
        if isinstance(batch, dict) and "file" in batch:
            prediction["file"] = list(batch["file"])
        return prediction

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters(), lr=self.hparams.lr)
        if self.scheduler is None:
            return optimizer
        scheduler = self.scheduler(optimizer, **self._schedule_length())
        interval = self.hparams.scheduler_interval
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "monitor": "Loss/val"},
        }

    def _schedule_length(self) -> dict[str, int]:
        """The scheduler's length arguments that were left open, filled with the run's length."""
        if isinstance(self.scheduler, functools.partial):  # what LightningCLI's callables are
            given = self.scheduler.keywords
        else:  # a scheduler class passed in Python
            given = {name: p.default for name, p in inspect.signature(self.scheduler).parameters.items()}
        open_ = [name for name in SCHEDULE_LENGTH_ARGUMENTS if given.get(name, 1) in (None, 0, inspect.Parameter.empty)]
        if not open_ or given.get("epochs") is not None:  # OneCycleLR given epochs and steps_per_epoch
            return {}
        per_step = self.hparams.scheduler_interval == "step"
        length = self.trainer.estimated_stepping_batches if per_step else self.trainer.max_epochs
        if length is None or length < 0 or math.isinf(length):
            raise InputError(
                f"model.scheduler: {open_[0]} is filled with the length of the run, which is unbounded;"
                " give trainer.max_epochs (or trainer.max_steps), or the scheduler's own length"
            )
        return {name: int(length) for name in open_}
