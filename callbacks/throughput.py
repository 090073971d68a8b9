"""Training speed and model cost as scalars: images per second, seconds per epoch, FLOPs utilisation, parameters.

On by default in ``python -m fmnist fit``; ``--config configs/profile.yaml`` adds where a step's
time goes (``fmnist.profiler``).
"""

import time
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.throughput import Throughput, get_available_flops, measure_flops
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor
from typing_extensions import override

from callbacks.contract import structure, warn_once

#: FLOPs per image of the networks counted in this process, by :func:`~callbacks.contract.structure`: a
#: sweep's trials count once per network (a tenth of a second each); a few networks' worth.
_FLOPS_PER_IMAGE: dict[tuple, float] = {}
MAX_COUNTED = 64


def count_images(batch: Any) -> int:
    """The images in a batch: a tensor of them, ``(images, labels, ...)``, or a mapping whose first value
    is the images (``{"image": ..., "file": ...}``); 0 when it holds none of these.

    >>> count_images((torch.zeros(8, 1, 28, 28), torch.zeros(8)))
    8
    >>> count_images({"image": torch.zeros(3, 1, 28, 28), "file": ["a", "b", "c"]}), count_images("?")
    (3, 0)
    """
    if isinstance(batch, Tensor):
        return len(batch)
    if isinstance(batch, (tuple, list)) and batch:
        return count_images(batch[0])
    if isinstance(batch, Mapping) and batch:
        return count_images(next(iter(batch.values())))
    return 0


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype a Trainer's ``precision`` multiplies in, the one whose peak ``get_available_flops`` looks up.

    Lightning's ThroughputMonitor maps the precision plugin with a private function; the public
    ``trainer.precision`` string says the same for every precision the Trainer accepts.

    >>> [compute_dtype(p) for p in ("32-true", "bf16-mixed", "16-mixed", "64-true", "transformer-engine")]
    [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int8]
    """
    precision = str(precision)
    if precision.startswith("transformer-engine"):
        return torch.int8  # FP8 matrix products, counted at int8's peak as Lightning does
    for prefix, dtype in (("bf16", torch.bfloat16), ("16", torch.float16), ("64", torch.float64)):
        if precision.startswith(prefix):
            return dtype
    return torch.float32


class EpochThroughput(Callback):
    """Log each training epoch's speed and the model's cost, as the module's own epoch scalars are.

    - ``Time/epoch_s``: wall-clock seconds of the epoch, its validation included;
    - ``Throughput/images_per_s``: training images per second, all processes together, validation
      time excluded;
    - ``Throughput/flops_per_s``: the model's training FLOPs per second, all processes together;
    - ``Throughput/mfu``: model FLOPs utilisation, the share of the devices' peak those FLOPs are,
      when the peak is known: ``peak_flops``, else Lightning's table of GPUs for the run's precision
      (``get_available_flops``; it has no CPUs);
    - ``Model/params``: the trainable parameters; ``Model/flops_per_image``: a training step's
      FLOPs per image (forward and backward) — costs that, unlike time, do not vary with the machine.

    Every logger receives them (TensorBoard's Scalars, a CSV file, ...), and so does
    ``trainer.callback_metrics``: a sweep can trade accuracy against them.

    Built on the parts of Lightning's ``ThroughputMonitor``: ``Throughput`` turns the counts into
    rates (rank zero's counts times the world size, as ``ThroughputMonitor`` sums over ranks);
    ``measure_flops`` counts a training step's FLOPs (forward and backward) per image, once (once per
    network in a process: a sweep's later trials reuse it), at the end of the first epoch (outside the steps a profiler records) on a few images of its first
    batch, in eval mode and with ``torch.autograd.grad``, so that no ``.grad``, no batch-norm
    statistic and no random number changes. ``ThroughputMonitor`` itself was not used: it
    synchronises CUDA after every batch (this callback: four times an epoch), logs rolling
    100-batch windows at every logging step rather than one value per epoch, and needs a
    ``flops_per_batch`` attribute on the model.

    Args:
        peak_flops: peak FLOP/s of one device, for ``Throughput/mfu``; ``None``: Lightning's figure
            for the GPU, if it knows one.
        batch_size_fn: the number of images in a training batch; the default reads the contract's
            ``(images, labels, ...)``.

    Example::

        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[EpochThroughput(peak_flops=1e12)], logger=False)
    """

    def __init__(self, peak_flops: float | None = None, batch_size_fn: Callable[[Any], int] = count_images) -> None:
        if peak_flops is not None and not peak_flops > 0:
            raise MisconfigurationException(
                f"EpochThroughput: peak_flops must be positive (FLOP/s of one device), got {peak_flops}"
            )
        self.peak_flops, self.batch_size_fn = peak_flops, batch_size_fn
        self._throughput: Throughput | None = None
        self._flops_per_image: float | None = None
        self._example: Any = None  # a few training images, for the FLOP count
        self._flops_counted = False
        self._epoch_start = self._validation_start = self._validation_s = self._train_s = 0.0
        self._batches = self._images = self._epoch_batches = self._epoch_images = 0

    @override
    @rank_zero_only
    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        peak = self.peak_flops or get_available_flops(trainer.strategy.root_device, compute_dtype(trainer.precision))
        # one value per epoch: a window of two cumulative updates, the previous epoch's end and this one's
        self._throughput = Throughput(available_flops=peak, world_size=trainer.world_size, window_size=2)
        self._throughput.update(time=0.0, batches=0, samples=0, flops=0)
        self._flops_per_image, self._example, self._flops_counted = None, None, False
        self._batches, self._images, self._train_s = 0, 0, 0.0

    @override
    @rank_zero_only
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        self._epoch_start, self._validation_s, self._epoch_batches, self._epoch_images = _now(trainer), 0.0, 0, 0

    @override
    @rank_zero_only
    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._epoch_batches += 1
        images = self.batch_size_fn(batch)
        self._images, self._epoch_images = self._images + images, self._epoch_images + images
        if not self._flops_counted and self._example is None:
            first = batch[0] if isinstance(batch, (tuple, list)) else batch
            # a copy: a slice would keep the whole batch's memory
            self._example = first[:4].clone() if isinstance(first, Tensor) else first

    @override
    @rank_zero_only
    def on_validation_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._validation_start = _now(trainer)

    @override
    @rank_zero_only
    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._validation_s += _now(trainer) - self._validation_start

    @override
    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero or self._throughput is None or self._epoch_batches == 0:
            return
        epoch_s = _now(trainer) - self._epoch_start
        if not self._flops_counted and self._example is not None:
            self._flops_per_image, self._example = self._flops(pl_module, self._example), None
            self._flops_counted = True
        self._batches += self._epoch_batches
        self._train_s += max(epoch_s - self._validation_s, 1e-9)  # strictly increasing, as Throughput checks
        flops = None if self._flops_per_image is None else self._flops_per_image * self._epoch_images
        self._throughput.update(time=self._train_s, batches=self._batches, samples=self._images, flops=flops)
        rates = self._throughput.compute()  # "device/...": per process; unprefixed: all processes, when several
        values = {
            "Time/epoch_s": epoch_s,
            "Throughput/images_per_s": rates.get("samples_per_sec", rates["device/samples_per_sec"]),
            "Model/params": sum(p.numel() for p in pl_module.parameters() if p.requires_grad),
        }
        if "device/flops_per_sec" in rates:
            values["Throughput/flops_per_s"] = rates.get("flops_per_sec", rates["device/flops_per_sec"])
            values["Model/flops_per_image"] = self._flops_per_image
        if "device/mfu" in rates:  # the same share per device as for all of them
            values["Throughput/mfu"] = rates["device/mfu"]
        # logged as the module's own epoch scalars are: by every logger, at their step, and into
        # trainer.callback_metrics, where a sweep reads them (rank zero alone measures: no monitor in DDP)
        for name, value in values.items():
            pl_module.log(name, float(value), on_step=False, on_epoch=True, batch_size=1, rank_zero_only=True)

    def _flops(self, pl_module: "pl.LightningModule", images: Any) -> float | None:
        """:meth:`_count_flops`, once per network in this process."""
        key = structure(pl_module, images[:1] if isinstance(images, Tensor) else images)
        if key not in _FLOPS_PER_IMAGE:
            flops = self._count_flops(pl_module, images)
            if flops is None:
                return None  # not kept: the next run's callback says why too
            if len(_FLOPS_PER_IMAGE) >= MAX_COUNTED:
                del _FLOPS_PER_IMAGE[next(iter(_FLOPS_PER_IMAGE))]
            _FLOPS_PER_IMAGE[key] = flops
        return _FLOPS_PER_IMAGE[key]

    def _count_flops(self, pl_module: "pl.LightningModule", images: Any) -> float | None:
        """A training step's FLOPs (forward and backward) per image, leaving the module as it was."""
        parameters = [parameter for parameter in pl_module.parameters() if parameter.requires_grad]

        def step() -> tuple[Tensor | None, ...]:
            logits = pl_module(images)
            logits = logits["logits"] if isinstance(logits, dict) else logits
            # gradients returned, not accumulated into .grad: the training step's own are untouched
            return torch.autograd.grad(logits.float().sum(), parameters, allow_unused=True)

        was_training = pl_module.training
        pl_module.eval()  # no dropout (random numbers) and no batch-norm statistics updated
        try:
            with torch.enable_grad():
                return measure_flops(pl_module, step) / len(images)
        except Exception as err:  # a forward that does not take the images, no trainable parameters...
            warn_once(self, f"could not count the model's FLOPs ({type(err).__name__}: {err}); no flops_per_s, no mfu.")
            return None
        finally:
            pl_module.train(was_training)


def _now(trainer: "pl.Trainer") -> float:
    """The time once the device's queued work is done, so that CUDA's asynchronous work is counted."""
    if trainer.strategy.root_device.type == "cuda":
        torch.cuda.synchronize(trainer.strategy.root_device)
    return time.perf_counter()
