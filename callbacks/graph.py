"""The model graph in TensorBoard's Graphs tab. On by default in ``python -m fmnist fit``."""

import warnings

import lightning.pytorch as pl
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from callbacks.sampling import evaluating
from callbacks.tensorboard import find_tensorboard


class ModelGraph(Callback):
    """Trace the LightningModule once at the start of fit and write its graph.

    The input is the module's ``example_input_array`` (a tensor or a tuple of tensors), as for
    Lightning's model summary. The trace runs in eval mode without gradients, on global rank
    zero, and does not touch the random number generators, so training is unchanged.

    Example::

        trainer = Trainer(callbacks=[ModelGraph()])
    """

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        example = pl_module.example_input_array
        if not isinstance(example, (Tensor, tuple)):
            rank_zero_warn("ModelGraph needs the LightningModule's example_input_array; no graph is written.")
            return
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        with evaluating(pl_module), warnings.catch_warnings():
            # add_graph traces with TorchScript, deprecated in torch >= 2.9 but still what the
            # Graphs dashboard reads; the warning is about torch, not about this model
            warnings.filterwarnings("ignore", ".*torch.jit.*deprecated", FutureWarning)
            writer.add_graph(pl_module, move_data_to_device(example, pl_module.device))
