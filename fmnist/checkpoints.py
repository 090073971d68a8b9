"""Checkpoints as fmnist reads them: as data, never as code.

A checkpoint names classes: its ``hyper_parameters`` hold the optimizer's and the scheduler's
``class_path``, and Lightning's ``_instantiator``. LightningCLI's ``--ckpt_path`` puts them over the
configuration, where jsonargparse imports and calls whatever they name, and ``load_from_checkpoint``
hands them to the same instantiation. :func:`check_classes` is run first, on every way fmnist loads
a checkpoint: each name must be a class that is already imported and that the option's type allows.
"""

import collections.abc
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from jsonargparse import Namespace

from fmnist.errors import InputError

#: The checkpoint keys that hold ``__init__`` arguments: the LightningModule's and the DataModule's.
HYPERPARAMETER_KEYS = ("hyper_parameters", "datamodule_hyper_parameters")
#: The instantiator LightningCLI writes into the checkpoints it trains; no other is called.
#: (Lightning keeps an allow-list of its own, but private: ``core.saving._ALLOWED_INSTANTIATORS``.)
TRUSTED_INSTANTIATORS = frozenset({"lightning.pytorch.cli.instantiate_module"})
_CLASS_KEYS = ("class_path", "_class_path")


class UnsafeCheckpointError(InputError):
    """A checkpoint names code that fmnist will not import or call; the message names the key and the name."""


class CheckedLoading:
    """A ``load_from_checkpoint`` that refuses a checkpoint naming code, for a LightningModule or a DataModule.

    Put first among the bases: ``class FashionMNISTClassifier(CheckedLoading, LightningModule)``.
    The checkpoint's hyperparameters (``cls.CHECKPOINT_HYPER_PARAMS_KEY``) are checked with
    :func:`check_classes` before Lightning reads them; the keyword arguments given replace theirs
    and are the caller's own, so they are not checked.
    """

    CHECKPOINT_HYPER_PARAMS_KEY: str

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO[bytes], *args: Any, **kwargs: Any) -> Any:
        checkpoint = read_checkpoint(checkpoint_path, "checkpoint")
        key = cls.CHECKPOINT_HYPER_PARAMS_KEY
        given = dict(checkpoint.get(key) or {})
        for name in kwargs:
            given.pop(name, None)
        check_classes({key: given}, checkpoint_path, {key: cls}, what="checkpoint")
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)  # type: ignore[misc]


def read_checkpoint(source: str | Path | IO[bytes], what: str = "--ckpt_path") -> dict[str, Any]:
    """A Lightning checkpoint loaded as data (``weights_only``: no pickled object is rebuilt).

    A clear :class:`InputError` when ``source`` is no file, not a PyTorch checkpoint, or not a
    Lightning one. A file object is read from where it stands and put back there.
    """
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise InputError(f"{what} {source}: {'is a folder' if Path(source).is_dir() else 'no such file'}")
    start = None if isinstance(source, (str, Path)) else source.tell()
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise InputError(f"{what} {_name(source)} is not a PyTorch checkpoint ({type(err).__name__})") from err
    finally:
        if start is not None:
            source.seek(start)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"{what} {_name(source)} is not a Lightning checkpoint: it has no state_dict")
    return checkpoint


def check_classes(
    checkpoint: Mapping[str, Any],
    source: str | Path | IO[bytes],
    classes: Mapping[str, type],
    trusted: Mapping[tuple[str, str], set[str]] | None = None,
    what: str = "--ckpt_path",
) -> None:
    """Refuse a checkpoint whose hyperparameters name anything but the classes their options allow.

    Every ``class_path``, ``_class_path`` and ``_instantiator``, at any depth of the model's and the
    datamodule's hyperparameters, is checked without importing anything: a top-level
    ``_class_path`` must be ``classes[key]`` or a subclass of it; an option's ``class_path`` must
    be a class already imported that the option's annotation allows (an ``OptimizerCallable``: an
    optimizer; an ``LRSchedulerCallable``: a scheduler), or a name the user gave for that option
    (``trusted[option]``: what the command line or a config file names is theirs to run);
    ``_instantiator`` must be Lightning's own.

    Args:
        checkpoint: the checkpoint, read as data (:func:`read_checkpoint`).
        source: its file, for the message.
        classes: the class each hyperparameter key builds, e.g. ``{"hyper_parameters": FashionMNISTClassifier}``.
        trusted: per ``(hyperparameter key, option)``, the class paths the user named for it (:func:`trusted_classes`).
        what: how the message names the file.

    Raises:
        UnsafeCheckpointError: naming the file, the key and the name found.
    """
    for key, cls in classes.items():
        hparams = checkpoint.get(key)
        if not isinstance(hparams, Mapping):
            continue
        for path, name in _named(hparams, (key,)):
            problem = _problem(path, name, cls, (trusted or {}).get(path[:2], set()))
            if problem:
                raise UnsafeCheckpointError(
                    f"{what} {_name(source)}: {'.'.join(path)} names {name!r}, {problem}; a checkpoint is data,"
                    " so it may only name classes already imported for what the option takes (a class you name"
                    " on the command line or in a config file is trusted)"
                )


def trusted_classes(options: Any, key: str) -> dict[tuple[str, str], set[str]]:
    """The class paths the user named, per option of ``options`` (the parsed ``model`` or ``data`` config).

    ``key`` is the checkpoint key those options are saved under (``hyper_parameters`` for the model).
    """
    plain = (options.as_dict() if isinstance(options, Namespace) else options) or {}
    return {(key, option): {str(name) for _, name in _named(value, (option,))} for option, value in plain.items()}


def _named(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every ``(key path, value)`` of a class or instantiator key, at any depth."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in (*_CLASS_KEYS, "_instantiator"):
                yield (*path, str(key)), item
            else:
                yield from _named(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _named(item, (*path, str(index)))


def _problem(path: tuple[str, ...], name: Any, cls: type, trusted: set[str]) -> str | None:
    """Why ``name`` at ``path`` (``(checkpoint key, option, ..., class key)``) may not be loaded; ``None``: it may."""
    if not isinstance(name, str):
        return "which is not a class name"
    if path[-1] == "_instantiator":
        return None if len(path) == 2 and name in TRUSTED_INSTANTIATORS else "which is not Lightning's instantiator"
    if name in trusted:
        return None
    found = _imported(name)
    if not isinstance(found, type):
        return "which is no class already imported" if found is None else "which is not a class"
    allowed = (cls,) if len(path) == 2 else _allowed(cls, path[1]) if len(path) == 3 else ()
    if not allowed:
        return "where no class is expected"
    if not issubclass(found, allowed):
        return f"which is not a {' or '.join(kind.__name__ for kind in allowed)}"
    return None


def _allowed(cls: type, option: str) -> tuple[type, ...]:
    """The classes the option ``option`` of ``cls.__init__`` may be given by ``class_path``."""
    try:
        annotation = typing.get_type_hints(cls.__init__).get(option)
    except (NameError, TypeError):
        return ()
    return _made_by(annotation)


def _made_by(annotation: Any) -> tuple[type, ...]:
    """The classes a value of ``annotation`` is or returns: ``Callable[..., Optimizer] | None`` gives ``(Optimizer,)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(kind for arg in typing.get_args(annotation) for kind in _made_by(arg))
    if origin is collections.abc.Callable:
        return _made_by(typing.get_args(annotation)[-1])
    if isinstance(annotation, type) and annotation.__module__ not in ("builtins", "typing"):
        return (annotation,)
    return ()


def _imported(name: str) -> Any:
    """What the dotted ``name`` is, looked up among modules already imported, importing nothing; ``None``: unknown."""
    module, _, rest = name.partition(".")
    attributes: list[str] = rest.split(".") if rest else []
    found, remaining = None, []
    while True:  # the longest prefix that is an imported module
        if module in sys.modules:
            found, remaining = sys.modules[module], list(attributes)
        if not attributes:
            break
        module = f"{module}.{attributes.pop(0)}"
    if found is None:
        return None
    for attribute in remaining:
        # vars(), not getattr: a module's __getattr__ may import lazily
        found = vars(found).get(attribute) if hasattr(found, "__dict__") else None
        if found is None:
            return None
    return found


def _name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else str(getattr(source, "name", "the checkpoint"))
