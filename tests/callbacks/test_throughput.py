"""``callbacks.EpochThroughput``: images per second, seconds per epoch and FLOPs in Scalars, on any classifier."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.utilities.throughput import measure_flops
from lightning.pytorch.utilities.exceptions import MisconfigurationException

import callbacks
from fmnist import FashionMNISTClassifier
from tests.callbacks.foreign import ColourShapes, TinyRGBNet, train
from tests.helpers import QUIET, environment, events, run_dirs, write_dataset

TAGS = ("Time/epoch_s", "Throughput/images_per_s", "Throughput/flops_per_s")


def test_default_fit_logs_speed_once_per_epoch_with_the_epoch_scalars(fmnist) -> None:
    assert fmnist("fit", "--data.batch_size", "32", "--trainer.max_epochs", "2", "--test_after_fit", "false") == 0
    (run,) = run_dirs()
    board = events(run)
    epoch_steps = [event.step for event in board.Scalars("Loss/val")]
    for tag in TAGS:
        points = board.Scalars(tag)
        assert [point.step for point in points] == epoch_steps, tag
        assert all(math.isfinite(point.value) and point.value > 0 for point in points), tag
    assert "Throughput/mfu" not in board.Tags()["scalars"], "a CPU has no known peak"
    # 256 training images: at the logged rate they take the epoch less its validation
    epoch_s = [point.value for point in board.Scalars("Time/epoch_s")]
    images_per_s = [point.value for point in board.Scalars("Throughput/images_per_s")]
    assert all(256 / rate < seconds for rate, seconds in zip(images_per_s, epoch_s))


def test_any_classifier_gets_its_flops_and_mfu_from_a_given_peak() -> None:
    model = TinyRGBNet()
    train(model, [callbacks.EpochThroughput(peak_flops=1e11)], epochs=2)  # batches (images, labels, index)
    (run,) = run_dirs()
    board = events(run)
    flops_per_s = [point.value for point in board.Scalars("Throughput/flops_per_s")]
    images_per_s = [point.value for point in board.Scalars("Throughput/images_per_s")]
    mfu = [point.value for point in board.Scalars("Throughput/mfu")]
    assert len(mfu) == 2 and all(0 < share < 1 for share in mfu)
    assert mfu == pytest.approx([rate / 1e11 for rate in flops_per_s])
    # 160 training images in 10 full batches of 16: the FLOPs per image are those of one training step / 16
    images = torch.rand(16, 3, 32, 32)
    step_flops = measure_flops(model, lambda: model(images), loss_fn=torch.Tensor.sum)  # Lightning's own way
    assert [f / i for f, i in zip(flops_per_s, images_per_s)] == pytest.approx([step_flops / 16] * 2)


def test_the_flop_count_leaves_training_unchanged() -> None:
    def trained(extra: list[pl.Callback]) -> pl.Trainer:
        pl.seed_everything(5)  # the same initial weights
        return train(TinyRGBNet(), extra, epochs=1)

    with_callback, without = trained([callbacks.EpochThroughput()]), trained([])
    assert with_callback.callback_metrics["Loss/val"] == without.callback_metrics["Loss/val"]


def test_a_model_it_cannot_count_still_gets_images_per_second() -> None:
    class TakesNoImages(TinyRGBNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training and torch.is_grad_enabled():  # the FLOP count; validation has no gradients
                raise TypeError("this model wants a dict")
            return super().forward(x)

    with pytest.warns(UserWarning, match="EpochThroughput could not count the model's FLOPs .*TypeError"):
        train(TakesNoImages(), [callbacks.EpochThroughput()], epochs=1)
    tags = events(run_dirs()[0]).Tags()["scalars"]
    assert {"Time/epoch_s", "Throughput/images_per_s"} <= set(tags)
    assert not {"Throughput/flops_per_s", "Throughput/mfu"} & set(tags)


def test_any_logger_gets_the_figures_and_callback_metrics_hold_them(tmp_path: Path) -> None:
    pl.seed_everything(3)
    logger = pl.loggers.CSVLogger(tmp_path / "csv")
    trainer = pl.Trainer(max_epochs=2, logger=logger, callbacks=[callbacks.EpochThroughput()],
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    model = TinyRGBNet()
    trainer.fit(model, ColourShapes())
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["Time/epoch_s"]]
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert all(float(row["Time/epoch_s"]) > 0 and float(row["Throughput/images_per_s"]) > 0 for row in rows)
    params = sum(p.numel() for p in model.parameters())
    assert {int(float(row["Model/params"])) for row in rows} == {params}
    # what a sweep (python -m fmnist sweep --metric Accuracy/val_best,Model/params) or a checkpoint reads
    assert trainer.callback_metrics["Model/params"] == params
    assert trainer.callback_metrics["Time/epoch_s"] == pytest.approx(float(rows[-1]["Time/epoch_s"]))


@pytest.mark.parametrize("peak_flops", [0, -1e12])
def test_a_peak_must_be_positive(peak_flops: float) -> None:
    with pytest.raises(MisconfigurationException, match="EpochThroughput: peak_flops must be positive"):
        callbacks.EpochThroughput(peak_flops=peak_flops)


@pytest.mark.slow
def test_ddp_writes_once_and_counts_every_process(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", train=704, test=64)
    command = [sys.executable, "-m", "fmnist", "fit", "--data.data_dir", str(data), "--data.download", "false",
               "--data.val_size", "64", "--data.batch_size", "32", "--trainer.max_epochs", "2",
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--test_after_fit", "false", *QUIET]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=environment(OMP_NUM_THREADS="1"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "runs")
    board = events(run)
    epoch_s, images_per_s, flops_per_s = ([point.value for point in board.Scalars(tag)] for tag in TAGS)
    assert len(images_per_s) == 2, "rank zero alone writes, once per epoch"
    # 640 training images an epoch, 320 on each rank: the rate counts both ranks' images
    assert all(rate * seconds > 640 for rate, seconds in zip(images_per_s, epoch_s))
    # and both ranks' FLOPs: per image, they are one process's
    model, images = FashionMNISTClassifier(), torch.rand(32, 1, 28, 28)
    per_image = measure_flops(model, lambda: model(images), loss_fn=torch.Tensor.sum) / 32
    assert [f / i for f, i in zip(flops_per_s, images_per_s)] == pytest.approx([per_image] * 2)
