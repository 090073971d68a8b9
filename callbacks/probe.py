"""Time a module's own training and validation steps on a copy of it, as ``fit`` would run them.

:class:`~callbacks.budget.TimeBudget` forecasts an epoch from these timings: real batches through the
batch hooks (augmentation included), the run's precision and device, the module's own optimizer;
the copy and the random numbers it draws are thrown away.
"""

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.model_helpers import is_overridden

#: Untimed steps before the timed ones: the first calls build kernels and caches.
WARMUP_STEPS = 2
#: The batch hooks Lightning runs between the loader and the step, in its order.
BATCH_HOOKS = ("on_before_batch_transfer", "transfer_batch_to_device", "on_after_batch_transfer")


def time_steps(
    trainer: "pl.Trainer", pl_module: "pl.LightningModule", steps: int, val_steps: int
) -> tuple[float, float]:
    """Seconds of a training step and of a validation step (0 for none), timed on a copy of the module."""
    device, precision = trainer.strategy.root_device, trainer.precision_plugin
    model = precision.convert_module(copy.deepcopy(pl_module)).to(device)
    model.trainer = trainer  # configure_optimizers may read the run's length
    try:
        optimizer = _first_optimizer(model.configure_optimizers())
    finally:
        model.trainer = None  # the copy's self.log calls then do nothing (with a warning, silenced below)
    several_val_loaders = val_steps and len(CombinedLoader(trainer.val_dataloaders).flattened) > 1

    def train_step(batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        with precision.train_step_context():
            output = model.training_step(_transfer(trainer, model, batch, dataloader_idx), batch_idx)
        loss = output["loss"] if isinstance(output, Mapping) else output
        if loss is not None:
            loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def val_step(batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        kwargs = {"dataloader_idx": dataloader_idx} if several_val_loaders else {}
        with precision.val_step_context(), torch.no_grad():
            model.validation_step(_transfer(trainer, model, batch, dataloader_idx), batch_idx, **kwargs)

    stage = trainer.state.stage
    with _random_state_kept(device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
        try:
            trainer.training = True  # the batch hooks see training batches, so augmentation runs
            model.train()
            step_s = _seconds_per_call(train_step, trainer.train_dataloader, "max_size_cycle", steps, device)
            if not val_steps or not is_overridden("validation_step", pl_module):
                return step_s, 0.0
            trainer.validating = True
            model.eval()
            return step_s, _seconds_per_call(val_step, trainer.val_dataloaders, "sequential", val_steps, device)
        finally:
            trainer.state.stage = stage


def validations_per_epoch(trainer: "pl.Trainer", batches: int) -> float:
    """How many times validation runs in an epoch (``val_check_interval``, ``check_val_every_n_epoch``)."""
    every = trainer.val_check_batch
    runs = batches / every if isinstance(every, (int, float)) and 0 < every < math.inf else 1.0
    if trainer.check_val_every_n_epoch is None:  # validation every n steps, across epochs
        return runs
    return max(1, math.floor(runs)) / trainer.check_val_every_n_epoch


def _first_optimizer(config: Any) -> torch.optim.Optimizer | None:
    """The optimizer of whatever ``configure_optimizers`` returned (an optimizer, a list, a dict, ...)."""
    if isinstance(config, torch.optim.Optimizer):
        return config
    if isinstance(config, Mapping):
        return _first_optimizer(config.get("optimizer"))
    if isinstance(config, (list, tuple)) and config:
        return _first_optimizer(config[0])
    return None


def _transfer(trainer: "pl.Trainer", model: "pl.LightningModule", batch: Any, dataloader_idx: int) -> Any:
    """A batch through the batch hooks, the datamodule's where it overrides them, as Lightning runs them."""
    for hook in BATCH_HOOKS:
        owner = trainer.datamodule if is_overridden(hook, trainer.datamodule) else model
        extra = (trainer.strategy.root_device,) if hook == "transfer_batch_to_device" else ()
        batch = getattr(owner, hook)(batch, *extra, dataloader_idx)
    return trainer.precision_plugin.convert_input(batch)


def _seconds_per_call(step: Callable[..., None], loaders: Any, mode: str, count: int, device: torch.device) -> float:
    """Mean seconds of ``step`` over ``count`` batches of ``loaders`` (started again when they run out), after warm-up."""
    batches = _endless(loaders, mode)
    for _ in range(WARMUP_STEPS):
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(count):
        step(*next(batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / count


def _endless(loaders: Any, mode: str) -> Iterator[tuple[Any, int, int]]:
    while True:
        empty = True
        for batch, batch_idx, dataloader_idx in CombinedLoader(loaders, mode):
            empty = False
            yield batch, batch_idx, dataloader_idx
        if empty:
            raise ValueError("the loader gave no batch")


@contextmanager
def _random_state_kept(device: torch.device) -> Iterator[None]:
    """Python's, NumPy's and torch's random numbers (CPU and the device) as they were, afterwards.

    Lightning's own helpers for this are private (``_collect_rng_states``); torch's ``fork_rng``
    covers torch alone.
    """
    python, numpy = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
