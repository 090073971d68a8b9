"""Checkpoints as fmnist reads them: as data, never as code.

jsonargparse parses a checkpoint's hyperparameters (``--ckpt_path``, ``load_from_checkpoint``) and
imports each name a value gives where a class, a function or a module goes: an optimizer's
``class_path``, a ``LambdaLR``'s ``lr_lambda``. Every such parse runs inside :func:`imports_only`,
jsonargparse's import-path policy, allowing the classes the options take (:func:`allowed_imports`)
and the names of the user's own config (:func:`user_imports`: a config is code).
:func:`check_checkpoint` parses first, so that a refusal names the file, the key and the name.
"""

import contextlib
import re
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import torch
from jsonargparse import ArgumentParser, Namespace, set_parsing_settings
from lightning.pytorch.core.saving import load_hparams_from_yaml
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from fmnist.errors import InputError

#: The instantiator LightningCLI writes into its checkpoints; no other is called. Lightning imports it
#: itself, where no jsonargparse policy sees it (2.6.6 checks a private allowlist of its own).
TRUSTED_INSTANTIATORS = frozenset({"lightning.pytorch.cli.instantiate_module"})
#: What the model's ``optimizer`` and ``scheduler`` options take (Lightning's ReduceLROnPlateau subclasses torch's).
OPTION_CLASSES = (Optimizer, LRScheduler, ReduceLROnPlateau)
#: How jsonargparse names the import it refused and the option a value failed (tests pin the wording)
_DENIED = re.compile(r"Importing '([\w.]+)' is not allowed")
_OPTION = re.compile(r'Parser key "module\.([^"]+)"')


class UnsafeCheckpointError(InputError):
    """A checkpoint names code that fmnist will not import or call; the message names the key and the name."""


class CheckedLoading:
    """A ``load_from_checkpoint`` that imports nothing a checkpoint names but what its options take.

    Put first among the bases: ``class FashionMNISTClassifier(CheckedLoading, LightningModule)``.
    The hyperparameters (with ``hparams_file`` over them, as Lightning reads them) are checked with
    :func:`check_checkpoint`, and Lightning's own parse runs under :func:`imports_only`; the keyword
    arguments given replace theirs and are the caller's own, trusted.
    """

    CHECKPOINT_HYPER_PARAMS_KEY: str

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: str | Path | IO[bytes], *args: Any, **kwargs: Any) -> Any:
        checkpoint = read_checkpoint(checkpoint_path, "checkpoint")
        key = cls.CHECKPOINT_HYPER_PARAMS_KEY
        hparams = dict(checkpoint.get(key) or {})
        if kwargs.get("hparams_file") is not None:  # Lightning reads these over the checkpoint's
            hparams.update(load_hparams_from_yaml(str(kwargs["hparams_file"])) or {})
        for name in kwargs:
            hparams.pop(name, None)
        allowed = allowed_imports([cls], user_imports(kwargs))
        check_checkpoint({key: hparams}, checkpoint_path, {key: cls}, allowed, what="checkpoint")
        with imports_only(allowed):
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


def check_checkpoint(
    checkpoint: Mapping[str, Any],
    source: str | Path | IO[bytes],
    classes: Mapping[str, type],
    allowed: Iterable[str],
    what: str = "--ckpt_path",
) -> None:
    """Parse the hyperparameters of each key for its class (``classes``), importing only ``allowed``.

    The parse is the one Lightning's instantiator makes, without building anything; an
    ``_instantiator`` must be Lightning's own. ``source`` and ``what`` name the file in the message.

    Raises:
        UnsafeCheckpointError: naming the file, the key and the name refused; or, for a value the
            class does not take, the file, the key and jsonargparse's reason.
    """
    allowed = list(allowed)
    for key, cls in classes.items():
        hparams = dict(checkpoint.get(key) or {})
        for name, trusted in (("_instantiator", TRUSTED_INSTANTIATORS), ("_class_path", _import_paths(cls))):
            if hparams.get(name, next(iter(trusted))) not in trusted:  # imported by Lightning, not by a parse
                raise UnsafeCheckpointError(_refusal(what, source, f"{key}.{name}", hparams[name]))
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "module", fail_untyped=False)
        try:
            with imports_only(allowed):
                parser.parse_object({"module": {name: item for name, item in hparams.items() if name[0] != "_"}})
        except Exception as err:  # jsonargparse's ArgumentError, or what a type's check raised
            denied = _DENIED.search(str(err))
            if denied is None:  # no import refused: a value of the wrong type, or an option the class lacks
                option = _OPTION.search(str(err))
                at, reason = f"{key}.{option[1]}" if option else key, str(err).strip().splitlines()[-1].strip()
                raise UnsafeCheckpointError(
                    f"{what} {_name(source)}: {at} does not fit {cls.__name__}: {reason}"
                ) from None
            at = next((path for path, value in _strings(hparams, (key,)) if value == denied[1]), (key,))
            raise UnsafeCheckpointError(_refusal(what, source, ".".join(at), denied[1])) from None


@contextlib.contextmanager
def imports_only(allowed: Iterable[str]) -> Iterator[None]:
    """Inside the block, jsonargparse imports no name a parsed value gives but ``allowed`` and what is under them.

    jsonargparse's policy (``set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=...)``)
    covers every import path that comes from a value: a ``class_path``, a callable, a type, a module,
    and the canonical path of what they resolve to. A ``class_path`` in a value typed ``Any`` (an
    optimizer's ``defaults``) is resolved while parsing too (``validate_subclass_spec_in_any``):
    otherwise it is imported only when the value is built, long after the parse (when the optimizer
    is made). The settings in force before are put back after.
    """
    # Private, to put the settings back: set_parsing_settings only adds import-path entries (a '*' denial
    # cannot be allowed again) and jsonargparse has no getter for them; its settings dict is saved and restored.
    from jsonargparse import _common as jsonargparse_settings

    keys = ("import_path_verdicts", "import_paths_enforced", "validate_subclass_spec_in_any")
    saved = {key: jsonargparse_settings.parsing_settings[key] for key in keys}
    set_parsing_settings(
        validate_subclass_spec_in_any=True, import_path_denylist=["*"], import_path_allowlist=sorted(set(allowed))
    )
    try:
        yield
    finally:
        jsonargparse_settings.parsing_settings.update(saved)


def allowed_imports(classes: Iterable[type], trusted: Iterable[str] = ()) -> set[str]:
    """What a checkpoint of ``classes`` may name: those classes, the classes fmnist's options take, and ``trusted``.

    The options take an optimizer (``OptimizerCallable``) and a scheduler (``LRSchedulerCallable``):
    every subclass of :data:`OPTION_CLASSES` imported so far (all of ``torch.optim``), each by the path
    it is defined at and by the packages above that export it (``torch.optim.adam.Adam``, ``torch.optim.Adam``).
    """
    kinds: set[type] = set()
    stack = [*classes, *OPTION_CLASSES]
    while stack:
        kind = stack.pop()
        if kind not in kinds:
            kinds.add(kind)
            stack.extend(kind.__subclasses__())
    return {path for kind in kinds for path in _import_paths(kind)} | {name for name in trusted if _allowable(name)}


def user_imports(config: Any) -> set[str]:
    """The import paths a parsed config (a ``Namespace``, a dict of keyword arguments) names, at any depth.

    Every ``class_path`` string and where its class is defined (jsonargparse checks both), and the
    defining path of each class, function or module a value already is (jsonargparse resolves
    ``lr_lambda: mymodule.warmup`` to the function while parsing).
    """
    if isinstance(config, Namespace):
        config = config.as_dict()
    if isinstance(config, Mapping):
        found = set()
        if isinstance(config.get("class_path"), str):  # parsed, so imported: looked up, not imported again
            module, _, name = config["class_path"].rpartition(".")
            found = {config["class_path"], *user_imports(vars(sys.modules.get(module, types)).get(name))}
        return found.union(*(user_imports(value) for value in config.values()))
    if isinstance(config, (list, tuple)):
        return set().union(*(user_imports(value) for value in config))
    if isinstance(config, types.ModuleType):
        return {config.__name__}
    if isinstance(config, (type, types.FunctionType, types.BuiltinFunctionType)):
        return {f"{config.__module__}.{config.__qualname__}"}
    return set()


def _import_paths(kind: type) -> set[str]:
    """Where ``kind`` is defined, and each package above that module that exports it under its name."""
    defined = f"{kind.__module__}.{kind.__qualname__}"
    packages = kind.__module__.split(".")
    exported = {
        f"{package}.{kind.__name__}"
        for package in (".".join(packages[:end]) for end in range(1, len(packages)))
        if vars(sys.modules.get(package, types)).get(kind.__name__) is kind
    }
    return {path for path in (defined, *exported) if _allowable(path)}


def _allowable(name: str) -> bool:
    """A dotted import path that jsonargparse's allowlist takes (none under ``jsonargparse`` itself)."""
    parts = name.split(".") if isinstance(name, str) else [""]
    return all(part.isidentifier() for part in parts) and parts[0] != "jsonargparse"


def _strings(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every ``(key path, string)`` in nested hyperparameters."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, str(index)))
    elif isinstance(value, str):
        yield path, value


def _refusal(what: str, source: Any, key: str, name: Any) -> str:
    return (
        f"{what} {_name(source)}: {key} names {name!r}, which fmnist will not import or call; a checkpoint is data,"
        " so it may only name the classes its options take (an optimizer, a scheduler) or what you name yourself"
        " on the command line or in a config file"
    )


def _name(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else str(getattr(source, "name", "the checkpoint"))
