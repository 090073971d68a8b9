"""``RunLogger``: a folder of its own per run, and ``discard`` for a run that failed before it began."""

from pathlib import Path

from fmnist.logger import RunLogger


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
