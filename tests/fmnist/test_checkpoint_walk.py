"""The whole space a checkpoint's hyperparameters reach: every argument that takes code is tried with a hostile name.

The walk starts at the options of ``FashionMNISTClassifier`` and ``FashionMNISTDataModule`` and goes into
the arguments of every optimizer of ``torch.optim`` and every scheduler of ``torch.optim.lr_scheduler``
(what ``--model.optimizer`` and ``--model.scheduler`` take). Each argument whose type admits a function, a
class (or an instance given by ``class_path``) or a module gets a real checkpoint naming, there, an already
imported function or class that would leave a marker file when called (:mod:`tests.fmnist.hostile`), or a
module not yet imported that would leave one when imported. fit, validate and ``load_from_checkpoint``
must refuse every one: exit 2 or :class:`UnsafeCheckpointError`, the name in the one line, no marker, the
module not in ``sys.modules``.
"""

import collections.abc
import inspect
import os
import re
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.cli import ReduceLROnPlateau as LightningReduceLROnPlateau

from fmnist.checkpoints import UnsafeCheckpointError
from fmnist.data import FashionMNISTDataModule
from fmnist.module import FashionMNISTClassifier
from tests.fmnist import hostile

HOSTILE_MODULE = "fmnist_walk_payload"  # written per test, imported by nothing but an attack
#: torch's annotations name these under ``TYPE_CHECKING`` only; jsonargparse resolves them the same way
TYPE_NAMES = {**vars(typing), **vars(collections.abc)}


def _public_classes(module: types.ModuleType, *bases: type) -> list[type]:
    found = {item for name, item in vars(module).items() if not name.startswith("_") and isinstance(item, type)}
    return sorted((item for item in found if issubclass(item, bases)), key=lambda item: item.__name__)


#: What each option of the model and the data takes by ``class_path``: ``OptimizerCallable``, ``LRSchedulerCallable``
OPTION_CLASSES = {
    ("hyper_parameters", "optimizer"): _public_classes(torch.optim, torch.optim.Optimizer),
    ("hyper_parameters", "scheduler"): [
        *_public_classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau),
        LightningReduceLROnPlateau,
    ],
}  # fmt: skip


def _hints(function: Any) -> dict[str, Any]:
    return typing.get_type_hints(function, globalns={**TYPE_NAMES, **function.__globals__})


def _takes_code(annotation: Any) -> bool:
    """Whether a value of ``annotation`` may be a function, a class, an instance by ``class_path``, or a module."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (Any, inspect.Parameter.empty, type, types.ModuleType, collections.abc.Callable):
        return True
    if origin in (collections.abc.Callable, type):
        return True
    if origin is not None:  # a union, a list, a tuple, a dict: what it holds
        return any(_takes_code(arg) for arg in args if arg is not Ellipsis)
    # a class other than a scalar's (jsonargparse's PositiveFloat is a float): an instance given by class_path
    return isinstance(annotation, type) and not issubclass(
        annotation, (int, float, str, bytes, os.PathLike, type(None))
    )


def _hostile_values(annotation: Any, function: str, cls: str, module: str) -> Iterator[Any]:
    """The values that put code there, in each form the annotation admits."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (Any, inspect.Parameter.empty):  # a string there stays a string: only a class_path is built
        yield {"class_path": cls}
    elif annotation is types.ModuleType:
        yield module
    elif annotation is type or origin is type:
        yield cls
    elif annotation is collections.abc.Callable or origin is collections.abc.Callable:
        yield from (function, {"class_path": cls})
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _hostile_values(arg, function, cls, module)
    elif origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable):
        for arg in args:
            if arg is not Ellipsis and _takes_code(arg):
                yield from ([value] for value in _hostile_values(arg, function, cls, module))
    elif origin in (dict, collections.abc.Mapping):
        yield from ({"key": value} for value in _hostile_values(args[1], function, cls, module))
    elif isinstance(annotation, type) and _takes_code(annotation):
        yield {"class_path": cls}


def reachable_arguments() -> list[tuple[tuple[str, ...], Any]]:
    """``(where in the checkpoint, annotation)`` of every argument that takes code, and the classes' own slots."""
    found = []
    for key, cls in (
        ("hyper_parameters", FashionMNISTClassifier),
        ("datamodule_hyper_parameters", FashionMNISTDataModule),
    ):
        hints = _hints(cls.__init__)
        for name in list(inspect.signature(cls.__init__).parameters)[1:]:
            if _takes_code(hints.get(name, inspect.Parameter.empty)):
                found.append(((key, name), hints[name]))
    for (key, option), classes in OPTION_CLASSES.items():
        for owner in classes:
            parameters = list(inspect.signature(owner.__init__).parameters.values())[
                2:
            ]  # self and what the callable gives
            hints = _hints(owner.__init__)
            for parameter in parameters:
                if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                    continue
                annotation = hints.get(parameter.name, inspect.Parameter.empty)
                if _takes_code(annotation):
                    path = f"{owner.__module__}.{owner.__qualname__}"
                    found.append(((key, option, path, parameter.name), annotation))
    return found


def _cases() -> list[Any]:
    cases = []
    for where, annotation in reachable_arguments():
        for payload in ("imported", "not imported"):
            names = (
                (f"{hostile.__name__}.leave_marker", f"{hostile.__name__}.LeaveMarker", hostile.__name__)
                if payload == "imported"
                else (f"{HOSTILE_MODULE}.leave_marker", f"{HOSTILE_MODULE}.LeaveMarker", HOSTILE_MODULE)
            )
            for value in {repr(value): value for value in _hostile_values(annotation, *names)}.values():
                form = "class_path" if "class_path" in repr(value) else "name"
                slot = ".".join(where[-2:]).rsplit(".", 2)[-2:] if len(where) == 4 else where[1:]
                cases.append(pytest.param(where, value, id=f"{'.'.join(slot)}-{payload}-{form}"))
    return cases


CASES = _cases()


def _place(checkpoint: dict, where: tuple[str, ...], value: Any) -> None:
    if len(where) == 2:  # the option itself: the model's optimizer or scheduler, a datamodule argument
        checkpoint[where[0]][where[1]] = value if isinstance(value, dict) else {"class_path": value}
    else:
        key, option, owner, argument = where
        checkpoint[key][option] = {"class_path": owner, "init_args": {argument: value}}


def _hostile_name(value: Any) -> str:
    return re.search(rf"({hostile.__name__}|{HOSTILE_MODULE})[\w.]*", repr(value))[0]


@pytest.fixture
def attack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_checkpoint: Path) -> Any:
    """Builds the hostile checkpoint for a case; after the test, asserts that nothing it names ran or was imported."""
    marker = tmp_path / "code-ran.marker"
    (tmp_path / f"{HOSTILE_MODULE}.py").write_text(
        f"open({str(tmp_path / 'imported.marker')!r}, 'w').close()\n"
        "def leave_marker(*args, **kwargs): pass\nclass LeaveMarker: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FMNIST_HOSTILE_MARKER", str(marker))

    def build(where: tuple[str, ...], value: Any) -> Path:
        checkpoint = torch.load(real_checkpoint, map_location="cpu", weights_only=True)
        _place(checkpoint, where, value)
        torch.save(checkpoint, tmp_path / "shared.ckpt")
        return tmp_path / "shared.ckpt"

    yield build
    assert not marker.exists(), "the checkpoint's code was called"
    assert not (tmp_path / "imported.marker").exists(), "the checkpoint's module was imported"
    assert HOSTILE_MODULE not in sys.modules


def test_the_walk_covers_the_space() -> None:
    """The walk reaches the arguments the issue names, through both options, and finds no new kind of slot."""
    where = {item for item, _ in reachable_arguments()}
    assert ("hyper_parameters", "optimizer") in where and ("hyper_parameters", "scheduler") in where
    lambdas = {item[2].rsplit(".", 1)[-1] for item in where if len(item) == 4 and item[3] == "lr_lambda"}
    assert lambdas == {"LambdaLR", "MultiplicativeLR"}
    assert any(item[3] == "scale_fn" for item in where if len(item) == 4), "CyclicLR's scale_fn"
    assert any(item[3] == "schedulers" for item in where if len(item) == 4), "SequentialLR's schedulers"
    for item, annotation in reachable_arguments():
        assert list(_hostile_values(annotation, "a.f", "a.C", "a")), f"no hostile value built for {item}"
    print(f"\n{len(where)} arguments that take code, {len(CASES)} hostile checkpoints")


@pytest.mark.parametrize(("where", "value"), CASES)
def test_load_from_checkpoint_refuses_every_hostile_argument(attack: Any, where: tuple[str, ...], value: Any) -> None:
    hostile_path = attack(where, value)
    cls = FashionMNISTDataModule if where[0].startswith("datamodule") else FashionMNISTClassifier
    with pytest.raises(UnsafeCheckpointError) as refused:
        cls.load_from_checkpoint(hostile_path)
    assert str(hostile_path) in str(refused.value) and _hostile_name(value) in str(refused.value)


@pytest.mark.slow
@pytest.mark.parametrize(("where", "value"), CASES)
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_every_command_refuses_every_hostile_argument(
    fmnist, attack: Any, capsys: pytest.CaptureFixture[str], subcommand: str, where: tuple[str, ...], value: Any
) -> None:
    hostile_path = attack(where, value)
    assert fmnist(subcommand, "--ckpt_path", str(hostile_path)) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("fmnist: error:")]
    assert str(hostile_path) in line and _hostile_name(value) in line and "Traceback" not in err
    assert not Path("runs").exists()
