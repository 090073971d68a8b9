"""What a callback may assume of a model and its data, in one place (see the package docstring).

Validation batches are ``(images, labels, ...)``; ``validation_step`` returns the logits (a tensor
or a dict with ``"logits"``). Class names and the images' display range come from the callback's
argument, else the datamodule's ``class_names`` / ``value_range`` attribute, else a default that
needs nothing: ``"0"``, ``"1"``, ... and per-image min-max. ``predict_step`` returns, for the
prediction callbacks (:func:`prediction_outputs`), a dict with ``"class_index"`` (a tensor of ints),
``"class_name"`` (a list of str) and ``"confidence"`` (a tensor of floats), one entry per image, and
optionally ``"file"`` (a list of str). A callback that cannot work on a model warns once
(:func:`warn_once`) and writes nothing; it never stops training. What a callback reuses between the
runs of one process (a graph, a FLOP count) assumes the model's modules decide its forward (:func:`structure`).
"""

import itertools
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import Tensor, nn

_warned: "weakref.WeakKeyDictionary[object, set[str]]" = weakref.WeakKeyDictionary()


def warn_once(callback: object, message: str) -> None:
    """Warn ``"<CallbackName> <message>"`` the first time ``callback`` says ``message``, on rank zero."""
    said = _warned.setdefault(callback, set())
    if message not in said:
        said.add(message)
        rank_zero_warn(f"{type(callback).__name__} {message}")


def check_every_n_epochs(callback: object, every_n_epochs: int, minimum: int = 1) -> int:
    """``every_n_epochs`` when it is at least ``minimum``; else the error a user reads at construction."""
    if every_n_epochs < minimum:
        allowed = "at least 1" if minimum == 1 else f"{minimum} or more"
        raise MisconfigurationException(
            f"{type(callback).__name__}: every_n_epochs must be {allowed}, got {every_n_epochs}"
        )
    return every_n_epochs


def is_due(epoch: int, every_n_epochs: int) -> bool:
    """Whether a per-epoch visual runs in ``epoch`` (0-based); ``0`` means never.

    >>> [epoch for epoch in range(6) if is_due(epoch, 2)]
    [1, 3, 5]
    >>> is_due(0, 0)
    False
    """
    return every_n_epochs > 0 and (epoch + 1) % every_n_epochs == 0


def validation_logits(outputs: Any, callback: object) -> Tensor | None:
    """The logits a ``validation_step`` returned, as a tensor or under the key ``"logits"``.

    Warns once per callback when there are none, and returns ``None``.
    """
    logits = outputs if isinstance(outputs, Tensor) else outputs.get("logits") if isinstance(outputs, dict) else None
    if logits is None or logits.ndim != 2:
        warn_once(
            callback,
            "needs the model's logits, a tensor of shape (N, classes): from forward, and from validation_step"
            " (the tensor or a dict with 'logits'); it will write nothing.",
        )
        return None
    return logits


def prediction_outputs(outputs: Any, callback: object, keys: Sequence[str]) -> Mapping[str, Any] | None:
    """What ``predict_step`` returned, when it is a dict with all of ``keys``.

    Otherwise warns once per callback, naming the missing keys, and returns ``None``: the callback
    writes nothing for that batch.

    >>> prediction_outputs({"class_name": ["cat"], "confidence": 0.9}, object(), ["class_name", "confidence"])
    {'class_name': ['cat'], 'confidence': 0.9}
    """
    missing = [key for key in keys if not isinstance(outputs, Mapping) or key not in outputs]
    if missing:
        warn_once(
            callback,
            f"needs predict_step to return a dict with {', '.join(map(repr, keys))}; missing"
            f" {', '.join(map(repr, missing))}, so it writes nothing for such batches.",
        )
        return None
    return outputs


def class_names(given: Sequence[str] | None, trainer: "pl.Trainer", num_classes: int, callback: object) -> list[str]:
    """Names for ``num_classes`` classes: ``given``, else the datamodule's ``class_names``, else ``"0"``, ``"1"``, ...

    A list of the wrong length is not used: the callback warns once and numbers the classes.

    >>> class_names(["cat", "dog"], None, 2, object())
    ['cat', 'dog']
    >>> class_names(None, None, 3, object())
    ['0', '1', '2']
    """
    names = given if given is not None else getattr(getattr(trainer, "datamodule", None), "class_names", None)
    if names is not None and len(names) != num_classes:
        warn_once(callback, f"has {len(names)} class names for {num_classes} logits; it numbers the classes instead.")
        names = None
    return [str(name) for name in names] if names is not None else [str(index) for index in range(num_classes)]


def value_range(given: tuple[float, float] | None, trainer: "pl.Trainer") -> tuple[float, float] | None:
    """The model inputs' range shown as black..white: ``given``, else the datamodule's ``value_range``.

    ``None`` when neither says: pictures then stretch each image from its own min to max.
    """
    found = given if given is not None else getattr(getattr(trainer, "datamodule", None), "value_range", None)
    return None if found is None else (float(found[0]), float(found[1]))


def structure(module: nn.Module, example: Any) -> tuple:
    """What a trace or a FLOP count of ``module`` on ``example`` depends on, when its modules decide its forward:
    its class, its modules with their settings (``repr``), the shapes, types, memory layouts and devices of its
    tensors and of the input's. Callbacks key what they reuse between the runs of one process (a sweep's trials) by it.
    """
    inputs = example if isinstance(example, tuple) else (example,)
    tensors = itertools.chain(module.parameters(), module.buffers(), (t for t in inputs if isinstance(t, Tensor)))
    return type(module), repr(module), tuple((t.shape, t.dtype, t.stride(), t.device) for t in tensors)
