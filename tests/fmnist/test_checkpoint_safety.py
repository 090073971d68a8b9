"""A checkpoint is data: hostile class names in one are refused before anything they name is imported or called.

Each hostile checkpoint is a real one with one entry changed, as an attacker would hand it round;
the code it names would write a marker file, on import (``hostile.py``) or when called
(``os.system``). fit, validate, test, predict and ``load_from_checkpoint`` must refuse it with one
line, leaving no marker, no imported module and no run folder.
"""

import math
import subprocess
import sys
from argparse import ArgumentError
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonargparse
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from fmnist.checkpoints import UnsafeCheckpointError, imports_only
from fmnist.data import FashionMNISTDataModule
from fmnist.module import FashionMNISTClassifier
from tests.helpers import events, run_dirs

HOSTILE_MODULE = "fmnist_hostile_payload"  # never imported by anything but an attack


def _optimizer_is_a_function(hparams: dict, marker: Path) -> None:
    hparams["hyper_parameters"]["optimizer"] = {"class_path": "os.system", "init_args": {"command": f"touch {marker}"}}


def _scheduler_from_a_module_not_imported(hparams: dict, marker: Path) -> None:
    hparams["hyper_parameters"]["scheduler"] = {"class_path": f"{HOSTILE_MODULE}.Scheduler", "init_args": {}}


def _foreign_class_path(hparams: dict, marker: Path) -> None:
    hparams["hyper_parameters"]["_class_path"] = f"{HOSTILE_MODULE}.Model"


def _foreign_instantiator(hparams: dict, marker: Path) -> None:
    hparams["hyper_parameters"]["_instantiator"] = f"{HOSTILE_MODULE}.instantiate"


def _nested_in_the_datamodule(hparams: dict, marker: Path) -> None:
    hparams["datamodule_hyper_parameters"]["data_dir"] = {"class_path": f"{HOSTILE_MODULE}.Folder"}


def _scheduler_function_called(hparams: dict, marker: Path) -> None:
    """The second route: an allowed class whose argument takes a function (issue: ``os._exit``, ``print``)."""
    scheduler = {"class_path": "torch.optim.lr_scheduler.LambdaLR", "init_args": {"lr_lambda": "builtins.print"}}
    hparams["hyper_parameters"]["scheduler"] = scheduler


def _scheduler_function_from_a_module_not_imported(hparams: dict, marker: Path) -> None:
    scheduler = {"class_path": "torch.optim.lr_scheduler.LambdaLR", "init_args": {"lr_lambda": f"{HOSTILE_MODULE}.Zen"}}
    hparams["hyper_parameters"]["scheduler"] = scheduler


#: (what is changed, the key the message must name, the name it must quote)
ATTACKS: list[tuple[Callable[[dict, Path], None], str, str]] = [
    (_optimizer_is_a_function, "hyper_parameters.optimizer.class_path", "os.system"),
    (_scheduler_from_a_module_not_imported, "hyper_parameters.scheduler.class_path", f"{HOSTILE_MODULE}.Scheduler"),
    (_foreign_class_path, "hyper_parameters._class_path", f"{HOSTILE_MODULE}.Model"),
    (_foreign_instantiator, "hyper_parameters._instantiator", f"{HOSTILE_MODULE}.instantiate"),
    # a str option given a class: nothing is imported (data_dir takes no class); refused as not the DataModule's
    (_nested_in_the_datamodule, "datamodule_hyper_parameters.data_dir", f"{HOSTILE_MODULE}.Folder"),
    (_scheduler_function_called, "hyper_parameters.scheduler.init_args.lr_lambda", "builtins.print"),
    (
        _scheduler_function_from_a_module_not_imported,
        "hyper_parameters.scheduler.init_args.lr_lambda",
        f"{HOSTILE_MODULE}.Zen",
    ),
]


@pytest.fixture
def attacker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module that leaves ``imported.marker`` when imported; returns the folder of the markers."""
    (tmp_path / f"{HOSTILE_MODULE}.py").write_text(
        f"open({str(tmp_path / 'imported.marker')!r}, 'w').close()\n"
        "class Scheduler: pass\nclass Model: pass\nclass Folder: pass\ndef instantiate(*args, **kwargs): pass\n"
        "def Zen(*args, **kwargs): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _data_args(data: Path) -> list[str]:
    return ["--data.data_dir", str(data), "--data.val_size", "128", "--data.download", "false"]


def _hostile(real: Path, folder: Path, attack: Callable[[dict, Path], None]) -> Path:
    checkpoint = torch.load(real, map_location="cpu", weights_only=True)
    attack(checkpoint, folder / "called.marker")
    path = folder / "shared.ckpt"
    torch.save(checkpoint, path)
    return path


def _untouched(folder: Path) -> None:
    assert not (folder / "called.marker").exists(), "the checkpoint's command ran"
    assert not (folder / "imported.marker").exists(), "the checkpoint's module was imported"
    assert HOSTILE_MODULE not in sys.modules


@pytest.mark.parametrize(("attack", "key", "name"), ATTACKS, ids=[attack.__name__.strip("_") for attack, *_ in ATTACKS])
@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_hostile_checkpoint_is_refused_by_every_command(
    fmnist, real_checkpoint: Path, attacker: Path, capsys, subcommand: str, attack: Any, key: str, name: str
) -> None:
    hostile = _hostile(real_checkpoint, attacker, attack)
    assert fmnist(subcommand, "--ckpt_path", str(hostile), "--trainer.max_epochs", "2") == 2
    err = capsys.readouterr().err
    assert err.count("fmnist: error:") == 1 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("fmnist: error:")]
    assert str(hostile) in line and key in line and repr(name) in line
    _untouched(attacker)
    assert not Path("runs").exists(), "no run folder for a refused checkpoint"


@pytest.mark.parametrize(("attack", "key", "name"), ATTACKS, ids=[attack.__name__.strip("_") for attack, *_ in ATTACKS])
def test_a_hostile_checkpoint_is_refused_by_load_from_checkpoint(
    real_checkpoint: Path, attacker: Path, attack: Any, key: str, name: str
) -> None:
    hostile = _hostile(real_checkpoint, attacker, attack)
    cls = FashionMNISTDataModule if key.startswith("datamodule") else FashionMNISTClassifier
    with pytest.raises(UnsafeCheckpointError, match=rf"{key}.*{name!r}"):
        cls.load_from_checkpoint(hostile)
    with open(hostile, "rb") as file, pytest.raises(UnsafeCheckpointError):
        cls.load_from_checkpoint(file)  # a file object, as Lightning accepts
    _untouched(attacker)


def _exits_the_process(hparams: dict, marker: Path) -> None:
    """The issue's first case: called, ``os._exit(0)`` would end fit with status 0 having trained nothing."""
    scheduler = {"class_path": "torch.optim.lr_scheduler.LambdaLR", "init_args": {"lr_lambda": "os._exit"}}
    hparams["hyper_parameters"]["scheduler"] = scheduler


def test_a_hostile_hparams_file_is_refused_by_load_from_checkpoint(real_checkpoint: Path, attacker: Path) -> None:
    """``hparams_file``: Lightning reads a run's ``hparams.yaml`` over the checkpoint's; it is data too."""
    lambda_lr = {"class_path": "torch.optim.lr_scheduler.LambdaLR", "init_args": {"lr_lambda": f"{HOSTILE_MODULE}.Zen"}}
    (attacker / "hparams.yaml").write_text(yaml.safe_dump({"scheduler": lambda_lr}))
    with pytest.raises(UnsafeCheckpointError, match=r"scheduler\.init_args\.lr_lambda.*fmnist_hostile_payload\.Zen"):
        FashionMNISTClassifier.load_from_checkpoint(real_checkpoint, hparams_file=attacker / "hparams.yaml")
    _untouched(attacker)


@pytest.mark.slow  # real processes
@pytest.mark.parametrize("subcommand", ["fit", "validate"])
def test_the_command_line_process_refuses_it_too(
    real_checkpoint: Path, attacker: Path, tmp_path: Path, subcommand: str
) -> None:
    """``python -m fmnist`` as a user runs it: the exit status and the one line of a real process."""
    hostile = _hostile(real_checkpoint, attacker, _exits_the_process)
    data = real_checkpoint.parents[4] / "data"
    done = subprocess.run(
        [sys.executable, "-m", "fmnist", subcommand, "--ckpt_path", str(hostile), *_data_args(data)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"fmnist: error: --ckpt_path {hostile}: hyper_parameters.scheduler.init_args.lr_lambda names 'os._exit',"
        " which fmnist will not import or call; a checkpoint is data, so it may only name the classes its options"
        " take (an optimizer, a scheduler) or what you name yourself on the command line or in a config file"
    ]
    assert not (tmp_path / "runs").exists()
    _untouched(attacker)


def test_a_class_the_user_names_is_trusted_for_that_option(fmnist, real_checkpoint: Path, attacker: Path) -> None:
    """A checkpoint trained with the user's own optimizer class loads when they name that class."""
    (attacker / f"{HOSTILE_MODULE}.py").write_text(
        "import torch\nclass MyAdam(torch.optim.Adam):\n    pass\n"
    )  # the user's own code this time: importing it is theirs to allow
    checkpoint = torch.load(real_checkpoint, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["optimizer"]["class_path"] = f"{HOSTILE_MODULE}.MyAdam"
    torch.save(checkpoint, "mine.ckpt")
    sys.modules.pop(HOSTILE_MODULE, None)
    try:
        assert fmnist("test", "--ckpt_path", "mine.ckpt") == 2, "not named: refused"
        assert HOSTILE_MODULE not in sys.modules
        assert fmnist("test", "--ckpt_path", "mine.ckpt", "--model.optimizer", f"{HOSTILE_MODULE}.MyAdam") == 0
    finally:
        sys.modules.pop(HOSTILE_MODULE, None)


def test_a_function_the_user_names_is_trusted(fmnist, attacker: Path) -> None:
    """A run trained with the user's own ``lr_lambda`` resumes when they name it again, and only then."""
    (attacker / f"{HOSTILE_MODULE}.py").write_text("def warmup(epoch):\n    return min(1.0, (epoch + 1) / 2)\n")
    sys.modules.pop(HOSTILE_MODULE, None)
    scheduler = ["--model.scheduler", "torch.optim.lr_scheduler.LambdaLR"]
    mine = [*scheduler, "--model.scheduler.init_args.lr_lambda", f"{HOSTILE_MODULE}.warmup"]
    short = ["--trainer.limit_train_batches", "2", "--test_after_fit", "false"]
    try:
        assert fmnist("fit", *mine, *short, "--trainer.max_epochs", "1") == 0
        (run,) = run_dirs()
        last = run / "checkpoints" / "last.ckpt"
        sys.modules.pop(HOSTILE_MODULE, None)
        assert fmnist("fit", *short, "--trainer.max_epochs", "2", "--ckpt_path", str(last)) == 2, "not named: refused"
        assert HOSTILE_MODULE not in sys.modules
        assert fmnist("fit", *mine, *short, "--trainer.max_epochs", "2", "--ckpt_path", str(last)) == 0
        assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 1
    finally:
        sys.modules.pop(HOSTILE_MODULE, None)


def test_the_policy_holds_only_while_a_checkpoint_is_read(fmnist, real_checkpoint: Path, attacker: Path) -> None:
    """After a refusal, and around an ``imports_only`` block, the user's own names parse as before."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--schedule", type=Callable[[int], float])
    assert parser.parse_args(["--schedule", "math.floor"]).schedule is math.floor
    with imports_only({"math.ceil"}):
        assert parser.parse_args(["--schedule", "math.ceil"]).schedule is math.ceil
        with pytest.raises(ArgumentError, match="Importing 'math.floor' is not allowed"):
            parser.parse_args(["--schedule", "math.floor"])
    hostile = _hostile(real_checkpoint, attacker, _scheduler_function_called)
    assert fmnist("validate", "--ckpt_path", str(hostile)) == 2
    assert parser.parse_args(["--schedule", "math.floor"]).schedule is math.floor


def test_the_private_settings_imports_only_restores_are_there() -> None:
    """``imports_only`` puts jsonargparse's settings back through its private ``_common.parsing_settings``."""
    from jsonargparse import _common

    settings = getattr(_common, "parsing_settings", None)
    keys = {"import_path_verdicts", "import_paths_enforced", "validate_subclass_spec_in_any"}
    assert isinstance(settings, dict) and keys <= set(settings), (
        f"jsonargparse {jsonargparse.__version__} has no _common.parsing_settings with {sorted(keys)}:"
        " fmnist.checkpoints.imports_only cannot restore the settings it changes"
    )


#: The optimizers and the schedulers the README shows, as a user would give them.
TRAINED_WITH = {
    "Adam": [],
    "SGD+StepLR": [
        "--model.optimizer", "torch.optim.SGD", "--model.scheduler", "torch.optim.lr_scheduler.StepLR",
        "--model.scheduler.init_args.step_size", "1",
    ],
    "AdamW+OneCycleLR": [
        "--model.optimizer", "torch.optim.AdamW", "--model.scheduler_interval", "step",
        "--model.scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--model.scheduler.init_args.max_lr", "0.01",
        "--model.scheduler.init_args.total_steps", "6",  # both epochs: the run is resumed to its second
    ],
    "Adam+CosineAnnealingLR": [
        "--model.scheduler_interval", "step", "--model.scheduler", "torch.optim.lr_scheduler.CosineAnnealingLR",
        "--model.scheduler.init_args.T_max", "0",
    ],
    "Adam+ReduceLROnPlateau": ["--model.scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"],
}  # fmt: skip


@pytest.mark.parametrize(  # Adam (the default) in the fast suite, every one in the full suite
    "name", [pytest.param(name, marks=[pytest.mark.slow] if i else []) for i, name in enumerate(TRAINED_WITH)]
)
def test_checkpoints_fmnist_writes_load_as_before(fmnist, name: str) -> None:
    options = [*TRAINED_WITH[name], "--trainer.limit_train_batches", "3", "--test_after_fit", "false"]
    assert fmnist("fit", *options, "--trainer.max_epochs", "1") == 0
    (run,) = run_dirs()
    last = run / "checkpoints" / "last.ckpt"
    assert fmnist("fit", *options, "--trainer.max_epochs", "2", "--ckpt_path", str(last)) == 0, "resume"
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["hyper_parameters"]["optimizer"]["class_path"].startswith("torch.optim.")
    assert fmnist("test", "--ckpt_path", str(last), "--model.tta", "[shift]") == 0
    assert {"Accuracy/test", "Accuracy/test_tta"} <= set(events(run).Tags()["scalars"])
    assert run_dirs() == [run], "resume and test log into the run the checkpoint came from"
    model = FashionMNISTClassifier.load_from_checkpoint(last)
    assert type(model.optimizer(model.parameters())).__name__ == name.split("+")[0]
