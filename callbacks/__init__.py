"""Lightning callbacks that show fmnist's training in TensorBoard; each works on its own."""

from callbacks.divergence import DivergenceGuard, TrainingDivergedError
from callbacks.predictions import PredictionWriter
from callbacks.scalars import MultilineCharts
from callbacks.tensorboard import find_tensorboard

__all__ = ["DivergenceGuard", "MultilineCharts", "PredictionWriter", "TrainingDivergedError", "find_tensorboard"]
