"""The model graph in TensorBoard's Graphs tab. On by default in ``python -m fmnist fit``."""

import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.contract import structure, warn_once
from callbacks.sampling import evaluating
from callbacks.tensorboard import event_file, find_tensorboard

#: Graphs traced in this process, as the event records ``SummaryWriter.add_graph`` wrote, by what their trace
#: depends on (:func:`~callbacks.contract.structure`), the latest last. Each trace takes a fraction of a second and
#: keeps some TorchScript memory for the rest of the process (pytorch/pytorch#35600; ``add_graph`` traces three
#: times, its check included), which a sweep's worker paid for every trial of the same network (fmnist's
#: docs/results.md, "A worker's memory").
_TRACED: "OrderedDict[tuple, list[bytes]]" = OrderedDict()
#: Networks whose graphs are kept; a few kilobytes each.
MAX_TRACED = 16


class ModelGraph(Callback):
    """Trace the LightningModule once and write its graph.

    The input is the module's ``example_input_array`` (a tensor or a tuple of tensors), as for
    Lightning's model summary, traced at the start of fit; without one, the images of the first
    validation batch (its first element), traced when that batch arrives. The trace runs in eval
    mode without gradients, on global rank zero, and does not touch the random number
    generators, so training is unchanged. A model that cannot be traced gets a warning and no graph.
    A model traced before in the same process (a sweep's earlier trial) with the same modules, tensor
    shapes and input (:func:`~callbacks.contract.structure`) gets that graph again without a new trace.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[ModelGraph()], logger=False)
    """

    def __init__(self) -> None:
        self._written = False

    @override
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._written = False
        example = pl_module.example_input_array
        if isinstance(example, (Tensor, tuple)):
            self._write(trainer, pl_module, example)

    @override
    def on_validation_batch_start(
        self,
        trainer: "pl.Trainer",
        pl_module: "pl.LightningModule",
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._written or trainer.state.fn != "fit":
            return
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if isinstance(images, Tensor):
            self._write(trainer, pl_module, images[:1])
        else:
            self._written = True
            warn_once(self, "found no example_input_array and no tensor of images in the validation batch; no graph.")

    def _write(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", example: Any) -> None:
        self._written = True
        writer = find_tensorboard(trainer, self)
        if writer is None:
            return
        try:
            with evaluating(pl_module), warnings.catch_warnings():
                # add_graph traces with TorchScript, deprecated in torch >= 2.9 but still what the
                # Graphs dashboard reads; the warning is about torch, not about this model
                warnings.filterwarnings("ignore", ".*torch.jit.*deprecated")  # Future- or DeprecationWarning
                example = move_data_to_device(example, pl_module.device)
                key = structure(pl_module, example)
                records = _TRACED.pop(key, None) or trace(pl_module, example)
            _TRACED[key] = records
            while len(_TRACED) > MAX_TRACED:
                _TRACED.popitem(last=False)
            with event_file(writer) as file_writer:
                for record in records:
                    file_writer.add_event(Event.FromString(record))
        except Exception as err:  # tracing fails in many ways (data-dependent control flow, dict outputs...)
            warn_once(self, f"could not trace the model ({type(err).__name__}: {err}); no graph is written.")


def trace(model: Any, example: Any) -> list[bytes]:
    """The event records of ``model``'s graph traced on ``example``: the graph and its run metadata, as
    ``SummaryWriter.add_graph`` writes them, to be written into any run as often as wanted.

    ``add_graph`` traces at every call and writes straight into its writer's event file; here it writes into a
    throwaway one, read back with TensorBoard's own loader (torch's tracing function is private).
    """
    with tempfile.TemporaryDirectory(prefix="fmnist-graph-") as folder:
        with SummaryWriter(folder) as scratch:
            scratch.add_graph(model, example)
        files = sorted(Path(folder).glob("events.out.tfevents.*"))
        records = [record for file in files for record in RawEventFileLoader(str(file)).Load()]
    # the first record of a file is its version stamp; keep the graph and its step metadata
    return [record for record in records if Event.FromString(record).WhichOneof("what") in GRAPH_RECORDS]


#: What ``add_graph`` writes: the graph, and the run metadata TensorBoard shows beside it.
GRAPH_RECORDS = ("graph_def", "tagged_run_metadata")
