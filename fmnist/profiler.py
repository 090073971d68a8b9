"""Lightning's PyTorchProfiler with a bounded schedule, and its summary table in TensorBoard's Text tab.

Switched on with ``python -m fmnist fit --config configs/profile.yaml``.
"""

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.profilers import PyTorchProfiler
from torch.utils.tensorboard import SummaryWriter


class TensorBoardProfiler(PyTorchProfiler):
    """Profile a few steps of each stage; traces and the summary go into the run's folder.

    Each stage (training, validation, ...) is profiled once for ``wait`` + ``warmup`` + ``active``
    steps, recording only the ``active`` ones, so traces stay a few MB however long the run. CPU
    activity is always recorded, CUDA activity when a GPU is used. The traces
    (``*.pt.trace.json``) open in TensorBoard's PyTorch Profiler tab (with the
    ``torch-tb-profiler`` plugin), in https://ui.perfetto.dev and in chrome://tracing. The table of
    the most expensive operations is written to ``<filename>-<stage>.txt`` and, on global rank
    zero, as text under the tag ``Profiler/<stage>`` for TensorBoard's Text tab.

    Args:
        dirpath: where traces and the summary go; ``None``: the run's folder (``trainer.log_dir``).
        filename: prefix of the trace and summary files.
        wait: steps skipped before profiling starts.
        warmup: steps profiled but discarded, while the profiler settles.
        active: steps recorded.
        row_limit: rows of the summary table.
        sort_by_key: the summary's sort column, e.g. ``self_cpu_time_total``; ``None``: CUDA
            time with a GPU, CPU time otherwise.
        record_shapes: record operator input shapes (larger traces).
        profile_memory: record memory allocations (larger traces).
        with_stack: record Python call stacks (much larger traces).

    Example::

        python -m fmnist fit --trainer.profiler fmnist.profiler.TensorBoardProfiler --trainer.profiler.active 5
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "profile",
        wait: NonNegativeInt = 1,
        warmup: NonNegativeInt = 1,
        active: PositiveInt = 3,
        row_limit: PositiveInt = 20,
        sort_by_key: str | None = None,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
    ) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            row_limit=row_limit,
            sort_by_key=sort_by_key,
            schedule=torch.profiler.schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            record_shapes=record_shapes,
            profile_memory=profile_memory,
            with_stack=with_stack,
            # per-module ranges hook objects onto every layer that cannot be deep-copied, and weight
            # averaging (callbacks.WeightEMA) deep-copies the model
            record_module_names=False,
            # keep the training steps' events when validation is profiled: the summary covers both
            acc_events=True,
        )

    def summary(self) -> str:
        table = super().summary()
        # Private: Lightning's Profiler is given the module (and so the trainer) and the stage only as
        # these attributes; summary() has no arguments and setup() no trainer.
        trainer = self._lightning_module.trainer if self._lightning_module is not None else None
        if table and trainer is not None and trainer.is_global_zero:
            logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
            if logger is not None:
                # the run's own writer is closed by now; a second event file in the run folder is
                # still the same run for TensorBoard
                with SummaryWriter(logger.log_dir, filename_suffix=".profiler") as writer:
                    indented = "\n".join("    " + line for line in table.splitlines())  # a Markdown code block
                    stage = getattr(self._stage, "value", self._stage)  # "fit", not "TrainerFn.FITTING"
                    writer.add_text(f"Profiler/{stage}", indented, global_step=trainer.global_step)
        return table
