"""Lightning callbacks that show fmnist's training in TensorBoard; each works on its own.

Listed in ``configs/default.yaml`` as ``class_path: callbacks.<Name>``; every one writes through
the trainer's TensorBoardLogger (found by :func:`find_tensorboard`) on global rank zero.
"""

from callbacks.averaging import WeightEMA
from callbacks.divergence import DivergenceGuard, TrainingDivergedError
from callbacks.evaluation import ConfusionMatrixImage, PRCurves
from callbacks.graph import ModelGraph
from callbacks.histograms import ParameterHistograms
from callbacks.hparams import HyperparameterTable
from callbacks.images import MisclassifiedImages, SampleImages
from callbacks.predictions import PredictionGrid, PredictionWriter
from callbacks.projector import EmbeddingProjector
from callbacks.scalars import MultilineCharts
from callbacks.tensorboard import find_tensorboard

__all__ = [
    "ConfusionMatrixImage",
    "DivergenceGuard",
    "EmbeddingProjector",
    "HyperparameterTable",
    "MisclassifiedImages",
    "ModelGraph",
    "MultilineCharts",
    "PRCurves",
    "ParameterHistograms",
    "PredictionGrid",
    "PredictionWriter",
    "SampleImages",
    "TrainingDivergedError",
    "WeightEMA",
    "find_tensorboard",
]
