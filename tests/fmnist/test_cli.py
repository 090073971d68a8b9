"""``python -m fmnist`` end to end, in-process, on tiny synthetic data: what a user finds on disk."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fmnist import CLASS_NAMES, cli
from fmnist.main import main
from tests.helpers import REPO, events, run_dirs

TRAIN_TAGS = {"Loss/train", "Accuracy/train", "Loss/val", "Accuracy/val"}
TEST_TAGS = {"Loss/test", "Accuracy/test"}


@pytest.fixture
def trained(fmnist) -> Path:
    """A two-epoch run with overridden hyperparameters, not yet tested; returns its run folder."""
    args = ("--model.lr", "0.01", "--data.batch_size", "32", "--trainer.max_epochs", "2", "--test_after_fit", "false")
    assert fmnist("fit", *args) == 0
    return Path("runs/fashion_mnist_lr_0.01_bs_32/version_0")


def test_fit_names_the_run_after_its_hyperparameters(trained: Path) -> None:
    assert trained.is_dir()
    assert run_dirs() == [trained], "one run folder, no extra runs"


def test_fit_logs_the_tutorials_scalars_once_per_epoch(trained: Path) -> None:
    run = events(trained)
    assert set(run.Tags()["scalars"]) >= TRAIN_TAGS
    for tag in TRAIN_TAGS:
        points = run.Scalars(tag)
        assert len(points) == 2, tag
        assert points[0].step < points[1].step
    # the losses are honest means over the epoch's images: positive, finite, falling on learnable data
    train_loss = [p.value for p in run.Scalars("Loss/train")]
    assert 0 < train_loss[1] < train_loss[0]
    assert all(0 <= p.value <= 1 for p in run.Scalars("Accuracy/val"))


def test_losses_chart_without_extra_runs(trained: Path) -> None:
    from tensorboard.plugins.custom_scalar import layout_pb2, metadata

    run = events(trained)
    layout = layout_pb2.Layout()
    layout.ParseFromString(run.Tensors(metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    charts = {chart.title: list(chart.multiline.tag) for category in layout.category for chart in category.chart}
    assert charts == {"Losses": ["^Loss/train$", "^Loss/val$"]}
    assert not list(Path("runs").rglob("*Losses_*")), "add_scalars-style extra runs"


def test_fit_saves_checkpoints_and_config(trained: Path) -> None:
    checkpoints = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints
    best = next(name for name in checkpoints if name.startswith("best-"))
    assert best.startswith("best-epoch0") and "-acc0." in best
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["model"]["lr"] == 0.01 and config["data"]["batch_size"] == 32
    assert config["model"]["optimizer"]["init_args"]["lr"] == 0.01, "one learning rate"
    assert config["trainer"]["logger"]["init_args"]["name"] == "fashion_mnist_lr_0.01_bs_32"
    assert config["seed_everything"] == 42


def test_second_run_gets_its_own_folder(fmnist, trained: Path) -> None:
    assert fmnist("fit", "--model.lr", "0.01", "--data.batch_size", "32", "--trainer.max_epochs", "1") == 0
    assert run_dirs() == [trained, trained.with_name("version_1")]


def test_test_and_predict_on_the_checkpoint_log_into_its_run(fmnist, trained: Path, recwarn) -> None:
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    assert not set(events(trained).Tags()["scalars"]) & TEST_TAGS
    assert fmnist("test", "--ckpt_path", str(best)) == 0
    assert set(events(trained).Tags()["scalars"]) >= TEST_TAGS
    assert run_dirs() == [trained]

    assert fmnist("predict", "--ckpt_path", str(trained / "checkpoints/last.ckpt")) == 0
    with open(trained / "predictions.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 128, "one row per test image"
    assert [int(row["index"]) for row in rows] == list(range(128))
    assert {row["class_name"] for row in rows} <= set(CLASS_NAMES)
    assert (trained / "config.yaml").is_file() and (trained / "test_config.yaml").is_file()
    # the averaged weights are the checkpoint's own: no warning that the averaging state is not restored
    assert not [w for w in recwarn if "WeightAveraging" in str(w.message)]


def test_checkpoint_shorthands_find_the_newest_run(fmnist, trained: Path) -> None:
    args = ("--model.lr", "0.01", "--data.batch_size", "32")
    assert fmnist("fit", *args, "--trainer.max_epochs", "1", "--test_after_fit", "false") == 0
    newer = trained.with_name("version_1")
    assert run_dirs() == [trained, newer]
    assert fmnist("test", "--ckpt_path", "best", *args) == 0
    assert set(events(newer).Tags()["scalars"]) >= TEST_TAGS, "the newest run's best checkpoint"
    assert not set(events(trained).Tags()["scalars"]) & TEST_TAGS, "the older run is left alone"
    assert fmnist("validate", "--ckpt_path", "last", *args) == 0
    assert (newer / "validate_config.yaml").is_file() and not (trained / "validate_config.yaml").exists()
    assert fmnist("test", "--ckpt_path", "best", "--model.lr", "0.003", "--data.batch_size", "32") == 2, (
        "another run name has no checkpoints"
    )


def test_packaged_defaults_are_configs_default_yaml() -> None:
    assert cli.DEFAULT_CONFIG.resolve() == (REPO / "configs/default.yaml").resolve()
    assert cli.DEFAULT_CONFIG.read_text() == (REPO / "configs/default.yaml").read_text()


FIT_CONFIGS = sorted(p.name for p in (REPO / "configs").glob("*.yaml") if "space" not in yaml.safe_load(p.read_text()))


@pytest.mark.parametrize("config", FIT_CONFIGS)  # sweep space files: tests/sweep/test_sweep.py
def test_every_config_parses(config: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--config", str(REPO / "configs" / config), "--print_config"])
    assert exit.value.code == 0
    assert "trainer:" in capsys.readouterr().out


@pytest.mark.slow  # real processes
def test_python_dash_m_works_from_any_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fmnist", "fit", "--print_config"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "name: fashion_mnist_lr_{model.lr}_bs_{data.batch_size}" in result.stdout
    assert not (tmp_path / "runs").exists()


# --- bad input: one clear line, status 2, no traceback, no run folder left behind -----------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model.lr", "-1"], 'Parser key "model.lr": Not of type PositiveFloat: -1 does not conform'),
        (["--model.lr", "abc"], 'Parser key "model.lr": Not of type PositiveFloat: could not convert'),
        (["--data.batch_size", "0"], 'Parser key "data.batch_size": Not of type PositiveInt: 0'),
        (["--data.batch_size", "x"], 'Parser key "data.batch_size"'),
        (["--trainer.max_epochs", "0"], "trainer.max_epochs must be a positive number of epochs"),
        (["--trainer.max_epochs", "-5"], "trainer.max_epochs must be a positive number of epochs"),
        (["--trainer.max_epochs", "many"], 'Parser key "trainer.max_epochs"'),
        (["--data.val_size", "-1"], 'Parser key "data.val_size": Not of type NonNegativeInt'),
        (["--model.padding", "2"], 'Parser key "model.padding"'),
        (["--model.conv3_channels", "-8"], 'Parser key "model.conv3_channels": Not of type NonNegativeInt'),
        (["--data.val_size", "384"], "data.val_size=384 leaves no training images"),
        (["--no_such_option", "1"], "unrecognized arguments: --no_such_option"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--ckpt_path", "missing.ckpt"], "--ckpt_path missing.ckpt: no such file"),
        (["--ckpt_path", "runs"], "--ckpt_path runs: is a folder"),
        (["--ckpt_path", "last"], "--ckpt_path last: no checkpoint matches"),
        (["--trainer.logger.init_args.name", "lr_{model.nope}"], "cannot fill it in"),
    ],
)
def test_bad_input_is_one_clear_line(fmnist, capsys, args: list[str], message: str) -> None:
    Path("runs").mkdir()  # exists before: only what the failed run made must be gone
    assert fmnist("fit", *args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert err.startswith("fmnist: error:") and len(err.strip().splitlines()) <= 2
    assert list(Path("runs").iterdir()) == []


def test_checkpoint_shorthand_needs_a_tensorboard_logger(fmnist, capsys) -> None:
    assert fmnist("test", "--trainer.logger", "false", "--ckpt_path", "last") == 2
    assert "--ckpt_path last needs a TensorBoard logger" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU that is not there")
def test_accelerator_that_is_not_there(fmnist, capsys) -> None:
    assert fmnist("fit", "--trainer.accelerator", "gpu") == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error:") and "gpu" in err.lower() and "Traceback" not in err


def test_file_that_is_not_a_checkpoint(fmnist, capsys) -> None:
    Path("notes.ckpt").write_text("hello")
    assert fmnist("test", "--ckpt_path", "notes.ckpt") == 2
    assert "--ckpt_path notes.ckpt is not a PyTorch checkpoint" in capsys.readouterr().err
    assert not Path("runs").exists()


def test_broken_data_file_leaves_no_run_behind(fmnist, data_dir: Path, capsys) -> None:
    labels = data_dir / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-10])
    assert fmnist("fit") == 2
    err = capsys.readouterr().err
    assert f"{labels}: truncated" in err and "Traceback" not in err
    assert not Path("runs").exists(), "the run folder made for the failed run is removed"


def test_log_folder_that_cannot_be_created(fmnist, capsys) -> None:
    Path("blocker").write_text("a file where the log folder should go")
    assert fmnist("fit", "--trainer.logger.init_args.save_dir", "blocker/runs") == 2
    assert "cannot create the log folder blocker/runs/" in capsys.readouterr().err


def test_data_dir_that_is_a_file(fmnist, capsys) -> None:
    Path("data.txt").write_text("x")
    assert fmnist("fit", "--data.data_dir", "data.txt") == 2
    assert "data.data_dir data.txt is a file, not a folder" in capsys.readouterr().err
    assert not Path("runs").exists()


def test_debug_flag_shows_the_traceback(fmnist, monkeypatch) -> None:
    monkeypatch.setenv("FMNIST_DEBUG", "1")
    with pytest.raises(Exception, match="trainer.max_epochs must be"):
        fmnist("fit", "--trainer.max_epochs", "0")
