"""``RunLogger``: a folder of its own per run, ``discard`` for a run that failed before it began,
and ``TensorBoardLogger``'s arguments in ``TensorBoardLogger``'s order.

Lightning's own ``TensorBoardLogger`` tests run on it in ``test_logger_lightning.py``.
"""

import copy
import gc
import inspect
import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import TensorBoardLogger

from fmnist.logger import RunLogger
from tests.helpers import events


def test_discard_removes_the_run_and_the_folders_made_for_it(tmp_path: Path) -> None:
    logger = RunLogger(save_dir=str(tmp_path / "a" / "b"), name="run")
    assert logger.version == 0
    logger.experiment.add_scalar("x", 1.0, 0)  # an open event file inside the folder
    run = Path(logger.log_dir)
    assert run == tmp_path / "a/b/run/version_0" and any(run.iterdir())
    logger.discard()
    assert not (tmp_path / "a").exists(), "a/b/run/version_0 and the parents it had to create"
    assert tmp_path.exists()


def test_discard_keeps_a_run_started_beside_it(tmp_path: Path) -> None:
    earlier = RunLogger(save_dir=str(tmp_path / "runs"), name="run")
    failed = RunLogger(save_dir=str(tmp_path / "runs"), name="run")
    assert (earlier.version, failed.version) == (0, 1)
    failed.discard()
    assert sorted(p.name for p in (tmp_path / "runs/run").iterdir()) == ["version_0"]


def test_discard_keeps_folders_that_existed_before(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    logger = RunLogger(save_dir=str(tmp_path / "runs"), name="run")
    _ = logger.version
    logger.discard()
    assert (tmp_path / "runs").is_dir() and not (tmp_path / "runs/run").exists()


def test_discard_of_a_folder_it_did_not_create_deletes_nothing(tmp_path: Path) -> None:
    existing = tmp_path / "runs/run/version_7"
    existing.mkdir(parents=True)
    (existing / "events.out.tfevents.0").write_text("earlier events")
    logger = RunLogger(save_dir=str(tmp_path / "runs"), name="run", version=7)
    assert Path(logger.log_dir) == existing
    logger.discard()
    assert (existing / "events.out.tfevents.0").read_text() == "earlier events"


# --- the claim of version_<n>: taken when the number is handed out, given back when unused ---------


def test_a_version_read_but_never_written_leaves_no_folder(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path / "runs", name="run")
    assert logger.version == 0 and (tmp_path / "runs/run/version_0").is_dir(), "claimed as it is handed out"
    logger.finalize("failed")
    assert not (tmp_path / "runs").exists(), "the claim and the folders made for it are given back"


def test_an_unused_claim_is_given_back_when_the_logger_goes(tmp_path: Path) -> None:
    kept, dropped = RunLogger(tmp_path, name="run"), RunLogger(tmp_path, name="run")
    assert (kept.version, dropped.version) == (0, 1)
    del dropped
    gc.collect()
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["version_0"]


def test_a_version_written_into_stays(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, name="run")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("failed")
    del logger
    gc.collect()
    assert len(list((tmp_path / "run/version_0").glob("events.out.tfevents.*"))) == 1


def test_discard_after_the_number_was_given_back_keeps_the_next_owner(tmp_path: Path) -> None:
    unused = RunLogger(tmp_path, name="run")
    assert unused.version == 0
    unused.finalize("failed")
    taken = RunLogger(tmp_path, name="run")
    assert taken.version == 0
    unused.discard()
    assert (tmp_path / "run/version_0").is_dir()


def test_a_copy_does_not_own_the_claim(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, name="run")
    assert logger.version == 0
    for other in (copy.deepcopy(logger), pickle.loads(pickle.dumps(logger))):
        assert other.version == 0
        other.discard()
        del other
    gc.collect()
    assert (tmp_path / "run/version_0").is_dir()


def test_the_claim_is_where_log_dir_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    logger = RunLogger("~/runs", name="run")
    assert logger.version == 0 and Path(logger.log_dir) == tmp_path / "home/runs/run/version_0"
    assert Path(logger.log_dir).is_dir() and not Path("~").exists()


def test_a_remote_save_dir_makes_no_local_folder(tmp_path: Path) -> None:
    logger = RunLogger("memory://runs", name="run")
    assert logger.version == 0 and logger.log_dir == "memory://runs/run/version_0"
    assert list(tmp_path.iterdir()) == []


# --- TensorBoardLogger's arguments --------------------------------------------------------------


def test_lightnings_parameters_come_first_in_lightnings_order() -> None:
    ours = inspect.signature(RunLogger).parameters
    theirs = inspect.signature(TensorBoardLogger).parameters
    positional = [name for name, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [name for name, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    differences = {"save_dir": (inspect.Parameter.empty, "runs"), "default_hp_metric": (True, False)}
    for name in positional:
        assert (theirs[name].default, ours[name].default) == differences.get(name, (theirs[name].default,) * 2)
    assert list(ours)[-4:] == ["flush_secs", "max_queue", "purge_step", "kwargs"]


def test_the_fourth_positional_argument_is_log_graph(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, "run", None, True)
    logger.log_graph(BoringModel(), torch.rand(2, 32))
    logger.finalize("success")
    assert events(Path(logger.log_dir)).Tags()["graph"]


def test_summary_writer_arguments_pass_through(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, name="run", filename_suffix=".fit", comment="ignored", max_queue=5)
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    (event_file,) = Path(logger.log_dir).glob("events.out.tfevents.*")
    assert event_file.name.endswith(".fit")
    assert [e.value for e in events(Path(logger.log_dir)).Scalars("x")] == [1.0]


def test_flush_secs_defaults_to_30_seconds(tmp_path: Path) -> None:
    assert RunLogger(tmp_path).experiment.flush_secs == 30
    assert RunLogger(tmp_path, flush_secs=10).experiment.flush_secs == 10
