"""Runs that diverge, get killed and resume, start together, or spread over processes (DDP)."""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from callbacks import DivergenceGuard, TrainingDivergedError
from fmnist import FashionMNISTClassifier, FashionMNISTDataModule
from fmnist.main import end_process_group
from tests.helpers import QUIET, environment, events, run_dirs, write_dataset


def fmnist_process(data: Path, *args: str, **popen) -> subprocess.Popen:
    """``python -m fmnist fit`` in a process of its own, on synthetic data in ``data``."""
    command = [sys.executable, "-m", "fmnist", "fit", "--data.data_dir", str(data), "--data.download", "false",
               "--data.batch_size", "32", *QUIET, *args]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return err


# --- divergence -------------------------------------------------------------------------------


class NaNAfter(FashionMNISTClassifier):
    """A model whose loss becomes NaN at a given global step."""

    def __init__(self, bad_step: int) -> None:
        super().__init__()
        self.bad_step = bad_step

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.global_step >= self.bad_step:
            out["loss"] = out["loss"] * float("nan")
        return out


def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(data_dir: Path) -> None:
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath="ckpt", save_last=True)
    trainer = pl.Trainer(
        max_epochs=3, logger=pl.loggers.TensorBoardLogger("tb"), callbacks=[DivergenceGuard(), checkpoint],
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    datamodule = FashionMNISTDataModule(str(data_dir), batch_size=32, val_size=96, download=False)  # 9 batches/epoch
    model = NaNAfter(bad_step=12)
    with pytest.raises(TrainingDivergedError, match=r"became nan at epoch 1, step 12.*below 0\.001, e\.g\. 0\.0001$"):
        trainer.fit(model, datamodule)
    weights = torch.load("ckpt/last.ckpt", weights_only=False)
    assert weights["global_step"] == 9 and weights["epoch"] == 0, "epoch 0's checkpoint, untouched"
    assert all(torch.isfinite(t).all() for t in weights["state_dict"].values())
    assert all(torch.isfinite(p).all() for p in model.parameters()), "the NaN loss never reached the weights"
    (run,) = run_dirs(Path("tb"))
    assert len(events(run).Scalars("Loss/val")) == 1, "epoch 0's logs are intact"


def test_diverged_cli_run_exits_1_with_advice_and_keeps_its_folder(fmnist, capsys) -> None:
    code = fmnist("fit", "--model.lr", "1e30", "--model.optimizer", "torch.optim.SGD", "--trainer.max_epochs", "1")
    err = capsys.readouterr().err
    assert code == 1
    assert "fmnist: error: the training loss became" in err and "try a learning rate below" in err
    assert err.rstrip().endswith("(fmnist's flag: --model.lr)")
    assert "Traceback" not in err
    assert run_dirs(), "a diverged run keeps what it logged"


def test_an_exploding_but_finite_loss_stops_too(fmnist, capsys) -> None:
    # Adam at lr 1e4: the loss goes from 2.3 to about 1e22 in one step and stays finite
    assert fmnist("fit", "--model.lr", "1e4", "--trainer.max_epochs", "1") == 1
    err = capsys.readouterr().err
    assert "fmnist: error: the training loss became" in err
    assert "(above 2" in err and ": it exploded) at epoch 0, step 1;" in err, "1000 x the first batch's loss of ~2.3"
    assert "try a learning rate below 10000, e.g. 1000" in err and "Traceback" not in err
    (run,) = run_dirs()
    assert not (run / "checkpoints").exists(), "no checkpoint of the exploded weights"


def test_a_bad_but_finite_run_is_not_stopped(fmnist, capsys) -> None:
    # a learning rate so small that the loss stays at chance level, ln 10 = 2.3, all run long
    assert fmnist("fit", "--model.lr", "1e-9", "--trainer.max_epochs", "2", "--test_after_fit", "false") == 0
    (run,) = run_dirs()
    losses = [event.value for event in events(run).Scalars("Loss/train")]
    assert len(losses) == 2 and all(2.0 < loss < 2.6 for loss in losses)
    assert "error" not in capsys.readouterr().err


class Spiking(FashionMNISTClassifier):
    """A run whose loss jumps by ``factor`` at step 5 and is back to normal after it."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        if self.global_step == 5:
            out["loss"] = out["loss"] * self.factor
        return out


@pytest.mark.parametrize(("factor", "stops"), [(200.0, False), (5000.0, True)])
def test_the_threshold_is_a_multiple_of_the_first_loss(data_dir: Path, factor: float, stops: bool) -> None:
    # the real-data spikes this threshold lets through: Adam at lr 0.1 peaks near 500 and ends at chance
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[DivergenceGuard(max_loss_factor=1000)],
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    datamodule = FashionMNISTDataModule(str(data_dir), batch_size=32, val_size=96, download=False)
    if stops:
        with pytest.raises(TrainingDivergedError, match=r"it exploded\) at epoch 0, step 5"):
            trainer.fit(Spiking(factor), datamodule)
    else:
        trainer.fit(Spiking(factor), datamodule)
        assert trainer.global_step == 9


# --- crashes and resume -------------------------------------------------------------------------


def last_epoch(checkpoint: Path) -> int:
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]
    except Exception:  # not there yet, or being written
        return -1


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_one_continuous_run(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", train=5000, test=200)
    args = ("--data.val_size", "1000", "--trainer.max_epochs", "5")
    process = fmnist_process(data, *args)
    last = Path("runs/fashion_mnist_lr_0.001_bs_32/version_0/checkpoints/last.ckpt")
    deadline = time.monotonic() + 240
    while last_epoch(last) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(0.8)  # well into the third epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    (run,) = run_dirs()
    done = last_epoch(last) + 1
    assert 2 <= done < 5
    assert len(events(run).Scalars("Loss/val")) == done, "every finished epoch survived the kill"

    finish(fmnist_process(data, *args, "--ckpt_path", "last"))
    assert run_dirs() == [run], "the resumed run continues in its own folder"
    board = events(run)
    for tag in ("Loss/train", "Loss/val", "Accuracy/val", "Accuracy/val_best"):
        steps = [event.step for event in board.Scalars(tag)]
        assert len(steps) == 5 and steps == sorted(set(steps)), (tag, steps)
    steps_per_epoch = math.ceil(4000 / 32)
    assert [e.step for e in board.Scalars("Loss/val")] == [(i + 1) * steps_per_epoch - 1 for i in range(5)]
    assert [image.step for image in board.Images("Sample Images")] == [e.step for e in board.Scalars("Loss/val")]
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["epoch"] == 4 and final["global_step"] == 5 * steps_per_epoch
    assert len(list(last.parent.glob("best-*.ckpt"))) == 1, "best-checkpoint tracking went on across the resume"


# --- concurrent runs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_runs_started_together_get_their_own_folders(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", train=600, test=200)
    args = ("--data.val_size", "100", "--trainer.max_epochs", "1")
    first, second = fmnist_process(data, *args), fmnist_process(data, *args)
    finish(first), finish(second)
    runs = run_dirs()
    assert [run.name for run in runs] == ["version_0", "version_1"]
    pids = set()
    for run in runs:
        # events.out.tfevents.<time>.<host>.<pid>.<n>: the fit's file, and the test after fit's
        (pid,) = {event_file.name.split(".")[5] for event_file in run.glob("events.out.tfevents.*")}
        pids.add(pid)
        assert len(events(run).Scalars("Loss/val")) == 1
        assert (run / "config.yaml").is_file() and (run / "hparams.yaml").is_file()
        assert len(list((run / "checkpoints").glob("*.ckpt"))) == 2
    assert len(pids) == 2, "each folder holds the events of one process"


# --- DDP ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", train=1100, test=200)
    started = time.monotonic()
    finish(
        fmnist_process(data, "--data.val_size", "300", "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu",
                       "--trainer.devices", "2", "--trainer.strategy", "ddp", env=environment(OMP_NUM_THREADS="1"))
    )  # fmt: skip
    print(f"DDP fit, 2 processes, 2 epochs: {time.monotonic() - started:.1f} s")
    (run,) = run_dirs()
    (event_file,) = run.glob("events.out.tfevents.*")  # rank zero's, the fit's and the test after fit's
    board = events(run)
    assert board.Scalars("Accuracy/test"), "the test after fit appends to the fit's event file"
    assert len(board.Images("Sample Images")) == 2 and len(board.Images("Confusion Matrix")) == 2
    # the sampler shards: 800 training images, 2 ranks, batches of 32 -> 13 steps per epoch
    final = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert final["global_step"] == 2 * 13
    # the PR curves' counts cover the whole validation set, gathered over both ranks
    curve = board.Tensors("PR/Trouser")[-1].tensor_proto.float_val
    tp, fp, tn, fn = (curve[i * 127] for i in range(4))
    assert tp + fp + tn + fn == 300
    (embedding,) = run.glob("*/net.fc1/metadata.tsv")
    assert len(embedding.read_text().splitlines()) == 1 + 300, "the projector embeds the whole validation set"
    assert len(board.Scalars("Accuracy/val")) == 2


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="thread names are read from Linux's /proc")
def test_no_gloo_thread_outlives_a_command_that_used_a_process_group() -> None:
    def threads() -> list[str]:
        return [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]

    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    trainer = {"model": torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))}  # as Lightning wraps it
    trainer["self"] = trainer  # a finished trainer: garbage in reference cycles, still holding the group
    torch.distributed.broadcast_object_list([Path("runs")], src=0)  # as Trainer.log_dir does
    assert "pt_gloo_runloop" in threads()
    del trainer
    end_process_group()
    assert not torch.distributed.is_initialized()
    assert "pt_gloo_runloop" not in threads(), "no gloo worker left to run while Python finalizes"
