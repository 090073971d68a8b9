"""``callbacks.TimeBudget`` fits a run and its one-cycle schedule into a time budget; ``fmnist.hardware`` picks bf16."""

import functools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from callbacks import TimeBudget
from fmnist import FashionMNISTClassifier, hardware
from fmnist.cli import FashionCLI
from fmnist.data import FashionMNISTDataModule
from tests.helpers import events, run_dirs

MAX_LR = 0.01
FINAL_LR = MAX_LR / 25 / 1e4  # OneCycleLR's defaults: div_factor 25, final_div_factor 1e4
STEPS_PER_EPOCH = 4  # 256 training images (384 less 128 for validation), batches of 64
#: A network whose own step is short next to the sleeps that stand for a slow machine; batch norm, whose
#: running statistics the probe must leave alone.
TINY_NETWORK = {"conv1_channels": 4, "conv2_channels": 8, "hidden_size": 16, "batch_norm": True}
RANK_ZERO = "lightning.pytorch.utilities.rank_zero"


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: on two cores shared with other jobs, two threads wait for each other and a step
    of the tiny network takes ten times as long, more than the sleeps that stand for a slow machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def printed(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The lines TimeBudget and fmnist's precision choice print (through Lightning's rank-zero logger) so far."""
    caplog.set_level(logging.INFO, logger=RANK_ZERO)
    return lambda: [record.getMessage() for record in caplog.records if record.name == RANK_ZERO]


def slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every training step of FashionMNISTClassifier takes ``seconds`` longer, as on a slower machine."""
    step = FashionMNISTClassifier.training_step

    def slow(self, batch, batch_idx):
        time.sleep(seconds)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(FashionMNISTClassifier, "training_step", slow)


def fit(
    data_dir: Path, budget: TimeBudget, max_epochs: int, *callbacks: pl.Callback, **kwargs
) -> tuple[pl.Trainer, float]:
    """fmnist's module with AdamW and (unless ``scheduler`` is given) a per-step one-cycle schedule of open length;
    the trainer and fit's seconds."""
    ckpt_path = kwargs.pop("ckpt_path", None)
    one_cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=MAX_LR, total_steps=None)
    scheduler, interval = kwargs.pop("scheduler", (one_cycle, "step"))
    pl.seed_everything(0)
    data = FashionMNISTDataModule(str(data_dir), batch_size=64, val_size=128, download=False, augment_shift=2)
    model = FashionMNISTClassifier(
        optimizer=torch.optim.AdamW, scheduler=scheduler, scheduler_interval=interval, **TINY_NETWORK
    )
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=TensorBoardLogger("runs", name="budget"), log_every_n_steps=1,
        callbacks=[budget, LearningRateMonitor(), *callbacks], enable_checkpointing=bool(callbacks),
        enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )  # fmt: skip
    start = time.monotonic()
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=False)  # the hparams hold the optimizer class
    return trainer, time.monotonic() - start


def assert_whole_schedule(trainer: pl.Trainer, run: Path) -> None:
    """The one-cycle schedule was as long as the training, and its last step used its final learning rate."""
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == trainer.global_step
    lrs = events(run).Scalars("lr-AdamW")
    assert [point.step for point in lrs][-1] == trainer.global_step - 1
    assert lrs[-1].value == pytest.approx(FINAL_LR, rel=1e-4)


class StopBeforeTraining(pl.Callback):
    """Ends fit after its setup: TimeBudget has chosen, nothing is trained."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_slower_steps_get_fewer_epochs_and_the_whole_schedule_ends_inside_the_budget(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a generous margin: the tests share two busy cores, whose speed changes from one second to the next
    fast = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5)
    fit(data_dir, fast, 10, StopBeforeTraining())

    slow_steps(monkeypatch, 0.25)  # the probe times the module's own steps, so it sees this
    slow = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5)
    trainer, seconds = fit(data_dir, slow, 10)
    assert 1 <= slow.epochs < fast.epochs <= 10, "slower steps, fewer epochs"
    assert slow.epoch_seconds >= STEPS_PER_EPOCH * 0.25
    assert trainer.current_epoch == slow.epochs and trainer.global_step == slow.epochs * STEPS_PER_EPOCH
    assert seconds < 9, f"fit took {seconds:.1f} s of a 9 s budget"
    assert_whole_schedule(trainer, run_dirs()[-1])


def test_the_budget_never_raises_max_epochs_and_prints_one_line(data_dir: Path, printed) -> None:
    budget = TimeBudget(minutes=60, probe_steps=2)
    trainer, _ = fit(data_dir, budget, max_epochs=2)
    assert budget.epochs == 2 and trainer.current_epoch == 2
    [line] = [message for message in printed() if message.startswith("TimeBudget")]
    assert f"a training step x {STEPS_PER_EPOCH} steps + " in line
    assert line.endswith(" of the 60 min budget") and " -> 2 of 2 epochs, " in line


def test_the_probe_leaves_the_run_as_it_would_be_without_it(data_dir: Path) -> None:
    # the copy trains, draws random numbers (shuffle, augmentation) and updates batch-norm statistics: none of it
    # reaches the run
    with_budget, _ = fit(data_dir, TimeBudget(minutes=60, probe_steps=2), max_epochs=1)
    without, _ = fit(data_dir, pl.Callback(), max_epochs=1)
    weights = with_budget.lightning_module.state_dict()
    assert weights.keys() == without.lightning_module.state_dict().keys()
    for name, value in without.lightning_module.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_a_resumed_run_keeps_the_epochs_it_began_with(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    every_epoch = ModelCheckpoint(dirpath="ckpt", save_top_k=-1, filename="{epoch}")
    fit(data_dir, TimeBudget(minutes=60, probe_steps=2), 2, every_epoch, limit_val_batches=1)
    slow_steps(monkeypatch, 0.2)  # this budget alone would choose one epoch
    budget = TimeBudget(minutes=0.01, probe_steps=1)
    with pytest.warns(UserWarning, match=r"TimeBudget: one epoch is forecast at .* min, more than the 0.01 min"):
        trainer, _ = fit(data_dir, budget, 2, ModelCheckpoint(dirpath="ckpt2"), ckpt_path="ckpt/epoch=0.ckpt")
    assert budget.epochs == 2 and trainer.current_epoch == 2
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == trainer.global_step == 2 * STEPS_PER_EPOCH


def test_a_slowdown_the_probe_cannot_see_gets_fewer_epochs_and_a_schedule_that_still_ends(
    data_dir: Path, printed
) -> None:
    class SlowDown(pl.Callback):  # a machine that slows down once training has begun
        def on_train_batch_end(self, *args) -> None:
            time.sleep(0.5)

    budget = TimeBudget(minutes=0.15, probe_steps=2, margin=0.2)
    every_epoch = ModelCheckpoint(dirpath="ckpt", save_top_k=-1, filename="{epoch}")
    trainer, seconds = fit(data_dir, budget, 10, SlowDown(), every_epoch)
    assert budget.first_epoch_seconds > STEPS_PER_EPOCH * 0.5 > budget.epoch_seconds
    assert 2 <= budget.epochs < 10 and trainer.current_epoch == budget.epochs
    assert seconds < 9, f"fit took {seconds:.1f} s of a 9 s budget"
    # the one-cycle schedule, made for 10 epochs, was compressed into the epochs trained: it ended with them
    schedule = trainer.lr_scheduler_configs[0].scheduler
    assert schedule.total_steps == 10 * STEPS_PER_EPOCH > trainer.global_step == budget.epochs * STEPS_PER_EPOCH
    assert schedule.last_epoch == schedule.total_steps
    lrs = [point.value for point in events(run_dirs()[-1]).Scalars("lr-AdamW")]  # each step's learning rate
    assert len(lrs) == trainer.global_step and max(lrs) > 0.5 * MAX_LR, "up the cycle"
    assert lrs[-1] == pytest.approx(FINAL_LR, rel=1e-4), "and down to its end at the last step"
    [line] = [message for message in printed() if message.startswith("TimeBudget: epoch 1 took")]
    assert f"training {budget.epochs} epochs, not 10, the rest of the schedule compressed to end with them" in line

    # resumed from the checkpoint of the first compressed epoch, it keeps the epochs and the compression
    every_epoch = ModelCheckpoint(dirpath="ckpt2", save_top_k=-1, filename="{epoch}")
    again = TimeBudget(minutes=60, probe_steps=2)
    trainer, _ = fit(data_dir, again, 10, every_epoch, ckpt_path=next(Path("ckpt").glob("epoch=1*.ckpt")))
    assert again.epochs == budget.epochs and trainer.current_epoch == budget.epochs
    schedule = trainer.lr_scheduler_configs[0].scheduler
    assert schedule.last_epoch == schedule.total_steps == 10 * STEPS_PER_EPOCH
    lrs = [point.value for point in events(run_dirs()[-1]).Scalars("lr-AdamW")]
    assert lrs[-1] == pytest.approx(FINAL_LR, rel=1e-4)


class FastOnceTrainingBegins(pl.Callback):
    """Every training step the probe times takes 0.25 s longer: a probe that forecasts a slower machine than the run's."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.begun = False
        step = FashionMNISTClassifier.training_step

        def slow_in_the_probe(module, batch, batch_idx):
            if not self.begun:
                time.sleep(0.25)
            return step(module, batch, batch_idx)

        monkeypatch.setattr(FashionMNISTClassifier, "training_step", slow_in_the_probe)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.begun = True


def test_a_probe_slower_than_the_run_gets_more_epochs_and_a_stretched_schedule_that_still_ends(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, printed
) -> None:
    budget = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5)
    every_epoch = ModelCheckpoint(dirpath="ckpt", save_top_k=-1, filename="{epoch}")
    trainer, seconds = fit(data_dir, budget, 10, FastOnceTrainingBegins(monkeypatch), every_epoch)
    # the one-cycle schedule, made for the epochs the probe forecast, was stretched over the 10 epochs trained
    schedule = trainer.lr_scheduler_configs[0].scheduler
    planned = schedule.total_steps // STEPS_PER_EPOCH
    assert budget.epoch_seconds > STEPS_PER_EPOCH * 0.25 > budget.first_epoch_seconds
    assert planned < budget.epochs == trainer.current_epoch == 10, "more epochs, never more than max_epochs"
    assert trainer.global_step == 10 * STEPS_PER_EPOCH > schedule.total_steps == schedule.last_epoch
    assert seconds < 9, f"fit took {seconds:.1f} s of a 9 s budget"
    lrs = [point.value for point in events(run_dirs()[-1]).Scalars("lr-AdamW")]  # each step's learning rate
    peak = lrs.index(max(lrs))
    assert len(lrs) == trainer.global_step and max(lrs) > 0.5 * MAX_LR, "up the cycle"
    assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True), "once"
    assert lrs[-1] == pytest.approx(FINAL_LR, rel=1e-4), "and down to its end at the last step"
    [line] = [message for message in printed() if message.startswith("TimeBudget: epoch")]
    assert line.startswith("TimeBudget: epoch 1 took ")
    assert f"training 10 epochs, not {planned}, the rest of the schedule stretched to end with them" in line

    # resumed from the checkpoint of the first stretched epoch, it keeps the epochs and the stretch
    again = TimeBudget(minutes=60, probe_steps=2)
    every_epoch = ModelCheckpoint(dirpath="ckpt2", save_top_k=-1, filename="{epoch}")
    trainer, _ = fit(data_dir, again, 10, every_epoch, ckpt_path=next(Path("ckpt").glob("epoch=1*.ckpt")))
    assert again.epochs == 10 and trainer.current_epoch == 10
    schedule = trainer.lr_scheduler_configs[0].scheduler
    assert schedule.last_epoch == schedule.total_steps == planned * STEPS_PER_EPOCH
    assert [point.value for point in events(run_dirs()[-1]).Scalars("lr-AdamW")][-1] == pytest.approx(lrs[-1])


def test_a_schedule_that_cannot_stay_in_place_keeps_the_planned_epochs_and_says_why_once(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, printed
) -> None:
    halving = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    budget = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5)
    trainer, _ = fit(data_dir, budget, 10, FastOnceTrainingBegins(monkeypatch), scheduler=(halving, "epoch"))
    assert budget.epochs == trainer.current_epoch < 10
    [line] = [message for message in printed() if message.startswith("TimeBudget: epoch")]
    assert line.endswith(
        f"epochs would fit, but StepLR's rate depends on its past steps, so its schedule cannot be stretched:"
        f" training the {budget.epochs} epochs planned"
    )


def test_the_first_line_says_that_the_budget_chooses_the_epochs(fmnist, capsys) -> None:
    budget = ["--trainer.callbacks+=callbacks.TimeBudget", "--trainer.callbacks.minutes", "5"]
    assert fmnist("fit", "--trainer.max_epochs", "1", *budget, "--test_after_fit", "false") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("fmnist fit: up to 1 epoch in 5 min (TimeBudget), seed 42, on 1 cpu"), first


# --- models and loaders the probe cannot run, and wrong arguments -----------------------------


class TinyModule(pl.LightningModule):
    def __init__(self, dataset) -> None:
        super().__init__()
        self.layer, self.dataset = torch.nn.Linear(4, 2), dataset

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=4)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class NeedsTrainer(TinyModule):
    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum() * (self.trainer.global_step + 1)  # the copy has no trainer


class Endless(IterableDataset):
    def __iter__(self):
        while True:
            yield (torch.zeros(4),)


def tiny_fit(model: pl.LightningModule, **kwargs) -> pl.Trainer:
    trainer = pl.Trainer(
        callbacks=[TimeBudget(minutes=1)], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **kwargs,
    )  # fmt: skip
    trainer.fit(model)
    return trainer


def test_a_model_the_probe_cannot_run_trains_without_a_budget() -> None:
    with pytest.warns(UserWarning, match=r"TimeBudget: could not time the training step \(RuntimeError: .*"):
        trainer = tiny_fit(NeedsTrainer(TensorDataset(torch.zeros(8, 4))), max_epochs=3)
    assert trainer.current_epoch == 3, "max_epochs stays as configured"


def test_a_loader_without_length_is_not_forecast() -> None:
    with pytest.warns(UserWarning, match="TimeBudget: the training loader has no length"):
        trainer = tiny_fit(TinyModule(Endless()), max_steps=3)
    assert trainer.global_step == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"minutes": 0}, "TimeBudget: minutes must be above 0, got 0"),
        ({"minutes": 1, "probe_steps": 0}, "TimeBudget: probe_steps must be at least 1, got 0"),
        ({"minutes": 1, "margin": 1}, r"TimeBudget: margin must be from 0 up to \(not including\) 1, got 1"),
    ],
)
def test_wrong_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        TimeBudget(**kwargs)


# --- bfloat16 where it pays -------------------------------------------------------------------

XEON_AMX = (
    "processor : 0\nmodel name : Intel Xeon Platinum 8480+\nflags : fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
)
XEON_AVX512_BF16 = "processor : 0\nmodel name : Intel Xeon Gold 6338\nflags : fpu avx2 avx512f avx512_bf16\n"
EPYC_AVX2 = (
    "processor : 0\nmodel name : AMD EPYC\nflags : fpu avx2\n\nprocessor : 1\nmodel name : AMD EPYC\nflags : fpu avx2\n"
)


def test_bf16_pays_on_a_cpu_with_amx_only() -> None:
    assert hardware.bf16_pays("cpu", XEON_AMX) == (
        True,
        "CPU (Intel Xeon Platinum 8480+, 1 core: AVX2, AVX512-BF16, AMX)",
    )
    assert hardware.bf16_pays("cpu", XEON_AVX512_BF16) == (
        False,
        "CPU (Intel Xeon Gold 6338, 1 core: AVX2, AVX512-BF16, no AMX)",
    ), "AVX512-BF16 alone: 0.99x for the tuned network"
    assert hardware.bf16_pays("cpu", EPYC_AVX2) == (False, "CPU (AMD EPYC, 2 cores: AVX2, no AVX512-BF16, no AMX)")
    assert hardware.bf16_pays("cpu", "") == (False, "CPU (model and features unknown: no /proc/cpuinfo)")


@pytest.mark.parametrize(("capability", "pays"), [((9, 0), True), ((8, 0), True), ((7, 5), False)])
def test_bf16_pays_on_a_gpu_from_ampere_on(monkeypatch: pytest.MonkeyPatch, capability, pays: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "GPU X")
    major, minor = capability
    assert hardware.bf16_pays("auto", XEON_AMX) == (pays, f"GPU (GPU X, compute capability {major}.{minor})")
    assert hardware.bf16_pays("cpu", EPYC_AVX2)[0] is False, "--trainer.accelerator cpu: the CPU decides"


def parsed_precision(*args: str) -> str:
    cli = FashionCLI(["--data.download", "false", *args], run=False, instantiate=False)
    return cli.config.trainer.precision


@pytest.mark.parametrize(("pays", "precision"), [(True, "bf16-mixed"), (False, "32-true")])
def test_bf16_where_it_pays_chooses_and_prints_the_precision(
    monkeypatch: pytest.MonkeyPatch, printed, pays: bool, precision: str
) -> None:
    monkeypatch.setattr(hardware, "bf16_pays", lambda accelerator: (pays, "CPU (Test CPU)"))
    assert parsed_precision("--bf16_where_it_pays", "true") == precision
    verdict = "pays" if pays else "does not pay"
    assert printed() == [f"fmnist: precision {precision}: bfloat16 {verdict} on this CPU (Test CPU)"]


def test_a_given_precision_wins_over_bf16_where_it_pays(monkeypatch: pytest.MonkeyPatch, printed) -> None:
    monkeypatch.setattr(hardware, "bf16_pays", lambda accelerator: (True, "CPU (Test CPU)"))
    assert parsed_precision("--bf16_where_it_pays", "true", "--trainer.precision", "32-true") == "32-true"
    assert parsed_precision() is None, "off by default: Lightning's default precision"
    assert printed() == []
