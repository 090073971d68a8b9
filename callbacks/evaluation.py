"""Whole-validation-set pictures: the confusion matrix (Images tab) and per-class PR curves.

Both are on by default in ``python -m fmnist fit``. They accumulate torchmetrics states from the
logits ``validation_step`` returns, so they cost no extra forward pass, and torchmetrics sums
the states over DDP ranks: the pictures cover the whole validation set, not one rank's shard.
The metric is made at the first validation batch, once the logits tell the number of classes.
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassPrecisionRecallCurve
from typing_extensions import override

from callbacks.contract import check_every_n_epochs, class_names, is_due, validation_logits
from callbacks.render import confusion_matrix_image
from callbacks.tensorboard import epoch_step, find_tensorboard


class _ValidationMetricPicture(Callback, ABC):
    """Update a metric on every validation batch of a due epoch, then draw it on rank zero."""

    def __init__(self, every_n_epochs: int, class_names: Sequence[str] | None) -> None:
        self.every_n_epochs = check_every_n_epochs(self, every_n_epochs)
        self.class_names = class_names
        self.metric: Metric | None = None

    def _due(self, trainer: "pl.Trainer") -> bool:
        return not trainer.sanity_checking and is_due(trainer.current_epoch, self.every_n_epochs)

    @override
    def on_validation_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.metric is not None:
            self.metric.to(pl_module.device)
            self.metric.reset()

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
        if not self._due(trainer):
            return
        logits = validation_logits(outputs, self)
        if logits is None:
            return
        if self.metric is None:
            self.metric = self.make_metric(logits.shape[1]).to(logits.device)
        self.update(logits.detach(), batch[1])

    @override
    def on_validation_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if self.metric is None or not self._due(trainer) or not self.metric.update_count:
            return
        with self.metric.sync_context():  # a collective under DDP: every rank takes part
            state = self.synced_state()
        self.metric.reset()
        if (writer := find_tensorboard(trainer, self)) is not None:
            names = class_names(self.class_names, trainer, self.metric.num_classes, self)
            self.write(writer, state, names, epoch_step(trainer))

    @abstractmethod
    def make_metric(self, num_classes: int) -> Metric:
        """The metric for ``num_classes`` classes."""

    @abstractmethod
    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add one validation batch to ``self.metric``."""

    @abstractmethod
    def synced_state(self) -> Tensor:
        """The metric's state, read inside its sync context (whole validation set)."""

    @abstractmethod
    def write(self, writer: Any, state: Tensor, names: list[str], step: int) -> None:
        """Draw ``state`` into TensorBoard; runs on global rank zero only."""


class ConfusionMatrixImage(_ValidationMetricPicture):
    """Each validation epoch, the confusion matrix of the whole validation set, as an image.

    Rows are the true classes, columns the predicted ones, both labelled with class names; each
    cell shows its count and is shaded by its share of the row.

    Args:
        every_n_epochs: write every this many epochs.
        class_names: names of the classes, in label order; ``None``: the datamodule's
            ``class_names``, else ``"0"``, ``"1"``, ...
        tag: the image's tag in TensorBoard.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[ConfusionMatrixImage()], logger=False)
    """

    def __init__(
        self, every_n_epochs: int = 1, class_names: Sequence[str] | None = None, tag: str = "Confusion Matrix"
    ) -> None:
        super().__init__(every_n_epochs, class_names)
        self.tag = tag

    def make_metric(self, num_classes: int) -> Metric:
        return MulticlassConfusionMatrix(num_classes)

    def update(self, logits: Tensor, labels: Tensor) -> None:
        self.metric.update(logits.argmax(dim=1), labels)

    def synced_state(self) -> Tensor:
        return self.metric.confmat.clone()

    def write(self, writer: Any, state: Tensor, names: list[str], step: int) -> None:
        writer.add_image(self.tag, confusion_matrix_image(state, names), global_step=step)


class PRCurves(_ValidationMetricPicture):
    """Each validation epoch, one precision-recall curve per class (one class against the rest).

    The curves use ``num_thresholds`` thresholds on the softmax probability, like TensorBoard's
    own ``add_pr_curve``, but the counts come from a binned torchmetrics state: constant memory,
    and summed over DDP ranks.

    Args:
        num_thresholds: thresholds between 0 and 1 (TensorBoard's default is 127).
        every_n_epochs: write every this many epochs.
        class_names: names of the classes, in label order; tags are ``<prefix>/<name>``.
            ``None``: the datamodule's ``class_names``, else ``"0"``, ``"1"``, ...
        prefix: the tags' common prefix in TensorBoard.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[PRCurves(num_thresholds=201)], logger=False)
    """

    def __init__(
        self,
        num_thresholds: int = 127,
        every_n_epochs: int = 1,
        class_names: Sequence[str] | None = None,
        prefix: str = "PR",
    ) -> None:
        if num_thresholds < 2:
            raise MisconfigurationException(f"PRCurves: num_thresholds must be at least 2, got {num_thresholds}")
        super().__init__(every_n_epochs, class_names)
        self.num_thresholds, self.prefix = num_thresholds, prefix

    def make_metric(self, num_classes: int) -> Metric:
        return MulticlassPrecisionRecallCurve(num_classes, thresholds=self.num_thresholds)

    def update(self, logits: Tensor, labels: Tensor) -> None:
        self.metric.update(logits.float().softmax(dim=1), labels)

    def synced_state(self) -> Tensor:
        # counts per (threshold, class, true label, predicted label), summed over ranks
        return self.metric.confmat.clone()

    def write(self, writer: Any, state: Tensor, names: list[str], step: int) -> None:
        counts = state.cpu().double()
        for index, name in enumerate(names):
            tn, fp = counts[:, index, 0, 0], counts[:, index, 0, 1]
            fn, tp = counts[:, index, 1, 0], counts[:, index, 1, 1]
            precision = tp / (tp + fp).clamp(min=1e-7)  # as TensorBoard's own pr_curve summary does
            recall = tp / (tp + fn).clamp(min=1e-7)
            writer.add_pr_curve_raw(
                f"{self.prefix}/{name}",
                tp,
                fp,
                tn,
                fn,
                precision,
                recall,
                global_step=step,
                num_thresholds=self.num_thresholds,
            )
