"""Lightning callbacks that show an image classifier's training in TensorBoard; each works on its own.

fmnist lists them in ``configs/default.yaml`` as ``class_path: callbacks.<Name>``, but they know
nothing of fmnist: any image classification LightningModule can use them with default arguments.
Every one that draws writes through the trainer's TensorBoardLogger (found by :func:`find_tensorboard`)
on global rank zero; ``EpochThroughput``'s scalars go through ``self.log``, to every logger. The contract:

- Dependencies: torch, torchvision, lightning, torchmetrics, tensorboard, numpy and Pillow only;
  the fmnist application depends on this library, never the reverse.
- Validation batches are ``(images, labels, ...)``; images are float ``(N, C, H, W)`` with 1 or 3
  channels and any size; ``validation_step`` returns the logits (a tensor, or a dict with
  ``"logits"``), and ``forward`` returns them too.
- Predictions (``PredictionWriter``, ``PredictionGrid``): ``predict_step`` returns a dict with
  ``"class_index"`` (a tensor of ints; the writer), ``"class_name"`` (a list of str) and
  ``"confidence"`` (a tensor of floats), one entry per image, and optionally ``"file"`` (a list of
  str); prediction batches are ``(images, ...)`` or ``{"image": ...}`` (the grid).
- Class names: the callback's ``class_names`` argument; else the datamodule's ``class_names``
  attribute; else ``"0"``, ``"1"``, ... The number of classes comes from the logits' width.
- Display range of the images: the ``value_range`` argument; else the datamodule's
  ``value_range`` attribute; else each image stretched from its min to its max, as
  ``make_grid(normalize=True, scale_each=True)`` does.
- Projector: ``layer`` names a submodule; without it, the input of the model's last ``nn.Linear``.
- Graph: the module's ``example_input_array``, else the first validation batch's images.
- A callback that cannot work on a model (no logits, no prediction dict, no linear layer, an
  untraceable model, no TensorBoardLogger) warns once and writes nothing; it never stops training.

Besides the callbacks, one Trainer plugin: :class:`AtomicCheckpointIO` writes checkpoints that are
whole or absent, never cut short by a full disk.

Example, for any classifier ``model`` and datamodule ``data``::

    trainer = Trainer(logger=TensorBoardLogger("runs"), callbacks=[SampleImages(), ConfusionMatrixImage()])
    trainer.fit(model, data)
"""

from callbacks.averaging import WeightEMA
from callbacks.budget import TimeBudget
from callbacks.checkpoint_io import AtomicCheckpointIO, CheckpointWriteError
from callbacks.divergence import DivergenceGuard, TrainingDivergedError
from callbacks.evaluation import ConfusionMatrixImage, PRCurves
from callbacks.graph import ModelGraph
from callbacks.histograms import ParameterHistograms
from callbacks.hparams import HyperparameterTable
from callbacks.images import MisclassifiedImages, SampleImages
from callbacks.predictions import PredictionGrid, PredictionWriter
from callbacks.projector import EmbeddingProjector
from callbacks.scalars import MultilineCharts
from callbacks.schedule import OneCycleProgressLR, ProgressLR
from callbacks.tensorboard import find_tensorboard
from callbacks.throughput import EpochThroughput

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "ConfusionMatrixImage",
    "DivergenceGuard",
    "EmbeddingProjector",
    "EpochThroughput",
    "HyperparameterTable",
    "MisclassifiedImages",
    "ModelGraph",
    "MultilineCharts",
    "OneCycleProgressLR",
    "PRCurves",
    "ParameterHistograms",
    "PredictionGrid",
    "PredictionWriter",
    "ProgressLR",
    "SampleImages",
    "TimeBudget",
    "TrainingDivergedError",
    "WeightEMA",
    "find_tensorboard",
]
