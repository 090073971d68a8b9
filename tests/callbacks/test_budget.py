"""``callbacks.TimeBudget`` fits a run and its one-cycle schedule into a time budget; ``fmnist.hardware`` picks bf16."""

import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader, IterableDataset

from callbacks import OneCycleProgressLR, TimeBudget
from fmnist import FashionMNISTClassifier, hardware
from fmnist.cli import FashionCLI
from fmnist.data import FashionMNISTDataModule
from tests.helpers import events, run_dirs

MAX_LR = 0.01
FINAL_LR = MAX_LR / 25 / 1e4  # OneCycleLR's defaults: div_factor 25, final_div_factor 1e4
STEPS_PER_EPOCH = 4  # 256 training images (384 less 128 for validation), batches of 64
#: A small network: the steps' real time does not matter (the tests' clock is a :class:`Machine`), only their count.
TINY_NETWORK = {"conv1_channels": 4, "conv2_channels": 8, "hidden_size": 16, "batch_norm": True}
RANK_ZERO = "lightning.pytorch.utilities.rank_zero"
#: Seconds of a training step and of a validation step on the tests' fast machine.
STEP, VALIDATION = 0.01, 0.005


@pytest.fixture
def printed(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The lines TimeBudget and fmnist's precision choice print (through Lightning's rank-zero logger) so far."""
    caplog.set_level(logging.INFO, logger=RANK_ZERO)
    return lambda: [record.getMessage() for record in caplog.records if record.name == RANK_ZERO]


class Machine(pl.Callback):
    """The machine a test runs on, as ``TimeBudget(clock=machine)`` sees it: its clock moves by ``seconds`` a
    training step in the epochs ``when`` accepts (:data:`STEP` in the others), by :data:`VALIDATION` a validation
    step, and by nothing else. No test waits or reads the wall clock; the run's real speed does not matter.

    It moves at the start of a step, and comes after the budget among the callbacks (:func:`fit`), so the
    budget's reads at a step's start and end see the step's time between them.
    """

    def __init__(self, seconds: float = 0.01, when: Callable[[int], bool] = lambda epoch: True) -> None:
        self.seconds, self.when, self.now = seconds, when, 0.0

    def __call__(self) -> float:
        return self.now

    def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self.now += self.seconds if self.when(trainer.current_epoch) else STEP

    def on_validation_batch_start(self, trainer: pl.Trainer, *args) -> None:
        self.now += VALIDATION


def fit(
    data_dir: Path, budget: pl.Callback, max_epochs: int, *callbacks: pl.Callback, **kwargs
) -> tuple[pl.Trainer, float]:
    """fmnist's module with AdamW and (unless ``scheduler`` is given) a per-step one-cycle schedule on progress,
    of open length; the trainer and fit's seconds on the budget's clock (a :class:`Machine` among ``callbacks``)."""
    ckpt_path = kwargs.pop("ckpt_path", None)
    one_cycle = functools.partial(OneCycleProgressLR, max_lr=MAX_LR, total_steps=None)
    scheduler, interval = kwargs.pop("scheduler", (one_cycle, "step"))
    pl.seed_everything(0)
    data = FashionMNISTDataModule(str(data_dir), batch_size=64, val_size=128, download=False, augment_shift=2)
    model = FashionMNISTClassifier(
        optimizer=torch.optim.AdamW, scheduler=scheduler, scheduler_interval=interval, **TINY_NETWORK
    )
    trainer = pl.Trainer(
        max_epochs=max_epochs, logger=TensorBoardLogger("runs", name="budget"), log_every_n_steps=1,
        callbacks=[budget, LearningRateMonitor(), *callbacks], enable_checkpointing=True,
        enable_progress_bar=False, enable_model_summary=False, **kwargs,
    )  # fmt: skip
    clock = getattr(budget, "clock", time.monotonic)
    start = clock()
    trainer.fit(model, data, ckpt_path=ckpt_path, weights_only=False)  # the hparams hold the optimizer class
    return trainer, clock() - start


def every_epoch(folder: str) -> ModelCheckpoint:
    return ModelCheckpoint(dirpath=folder, save_top_k=-1, filename="{epoch}")


def learning_rates(run: Path) -> list[float]:
    """Each step's learning rate, read back from the run's event file."""
    return [point.value for point in events(run).Scalars("lr-AdamW")]


def assert_whole_schedule(trainer: pl.Trainer, lrs: list[float]) -> None:
    """The one-cycle schedule was planned for the steps trained, rose once, fell once and ended at its last rate."""
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == trainer.global_step == len(lrs)
    peak = lrs.index(max(lrs))
    assert max(lrs) > 0.5 * MAX_LR, "up the cycle"
    assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True), "once"
    assert lrs[-1] == pytest.approx(FINAL_LR, rel=1e-4), "and down to its end at the last step"


def budget_lines(printed: Callable[[], list[str]], start: str = "TimeBudget") -> list[str]:
    return [message for message in printed() if message.startswith(start)]


def test_slower_steps_get_fewer_epochs_and_the_whole_schedule_ends_inside_the_budget(data_dir: Path, printed) -> None:
    fast_machine, slow_machine = Machine(), Machine(0.25)
    fast = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5, clock=fast_machine)
    fit(data_dir, fast, 10, fast_machine, max_steps=STEPS_PER_EPOCH)  # the epochs are chosen within the first

    slow = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5, clock=slow_machine)
    trainer, seconds = fit(data_dir, slow, 10, slow_machine)  # steps the budget times
    assert 1 <= slow.epochs < fast.epochs <= 10, "slower steps, fewer epochs"
    assert slow.epoch_seconds >= STEPS_PER_EPOCH * 0.25
    assert trainer.current_epoch == slow.epochs and trainer.global_step == slow.epochs * STEPS_PER_EPOCH
    assert seconds < 9, f"fit took {seconds:.1f} s of a 9 s budget"
    assert_whole_schedule(trainer, learning_rates(run_dirs()[-1]))
    [line, *replans] = budget_lines(printed)[1:]  # the fast run's line first
    assert f"s a training step x {STEPS_PER_EPOCH} steps + " in line and f" -> {slow.epochs} of 10 epochs, " in line
    assert all(replan.startswith("TimeBudget: epoch ") for replan in replans)


def test_the_budget_never_raises_max_epochs_and_prints_one_line(data_dir: Path, printed) -> None:
    machine = Machine()
    budget = TimeBudget(minutes=60, probe_steps=2, clock=machine)
    trainer, _ = fit(data_dir, budget, 2, machine)
    assert budget.epochs == 2 and trainer.current_epoch == 2
    [line] = budget_lines(printed)
    assert f"a training step x {STEPS_PER_EPOCH} steps + " in line and " s of validation = " in line
    assert line.endswith(" of the 60 min budget") and " -> 2 of 2 epochs, " in line

    machine = Machine()
    fit(data_dir, TimeBudget(minutes=60, probe_steps=2, clock=machine), 1, machine, num_sanity_val_steps=0)
    assert " steps + validation not timed (no sanity check) = " in budget_lines(printed)[-1]


def test_without_minutes_the_budget_is_the_trainers_max_time(data_dir: Path, printed) -> None:
    machine = Machine()
    budget = TimeBudget(probe_steps=2, clock=machine)
    trainer, _ = fit(data_dir, budget, 2, machine, max_time="00:00:30:00")
    assert budget.budget == pytest.approx(30, abs=0.01) and budget.epochs == 2 and trainer.current_epoch == 2
    assert budget_lines(printed)[-1].endswith(" of the 30 min budget")
    # the same slow steps get fewer epochs in a short max_time, one number for the plan and the hard stop
    # (the budget's clock is the tests' machine, max_time's Lightning's Timer: a real 9 s, never reached here)
    slow = Machine(0.25)
    short = TimeBudget(probe_steps=3, margin=0.5, clock=slow)
    trainer, seconds = fit(data_dir, short, 10, slow, max_time={"seconds": 9})
    assert short.budget == pytest.approx(0.15, abs=0.01) and 1 <= short.epochs < 10
    assert trainer.current_epoch == short.epochs and seconds < 9


def test_without_minutes_or_max_time_the_budget_says_what_it_needs(data_dir: Path) -> None:
    with pytest.raises(MisconfigurationException, match="TimeBudget: give it minutes, or give the trainer a max_time"):
        fit(data_dir, TimeBudget(probe_steps=2), max_epochs=1)


def test_timing_leaves_the_run_as_it_would_be_without_it(data_dir: Path) -> None:
    with_budget, _ = fit(data_dir, TimeBudget(minutes=60, probe_steps=2), max_epochs=1)
    without, _ = fit(data_dir, pl.Callback(), max_epochs=1)
    weights = with_budget.lightning_module.state_dict()
    assert weights.keys() == without.lightning_module.state_dict().keys()
    for name, value in without.lightning_module.state_dict().items():
        assert torch.equal(value, weights[name]), name
    assert learning_rates(run_dirs()[0]) == learning_rates(run_dirs()[1])


def test_one_slow_epoch_does_not_move_the_plan(data_dir: Path, printed) -> None:
    # epoch 1 alone is 3 s slower: the pace of epoch 1 alone would plan 3 or 4 of the 8 epochs
    machine = Machine(0.75, lambda epoch: epoch == 1)
    budget = TimeBudget(minutes=0.25, probe_steps=3, margin=0.2, clock=machine)
    trainer, seconds = fit(data_dir, budget, 8, machine)
    assert budget.paces[2] > STEPS_PER_EPOCH * 0.75 > 4 * max(budget.paces[:2] + budget.paces[3:])
    assert budget.epochs == trainer.current_epoch == 8 and seconds < 15
    assert budget_lines(printed, "TimeBudget: epoch") == []
    assert_whole_schedule(trainer, learning_rates(run_dirs()[-1]))


def test_a_slowdown_after_the_plan_gets_fewer_epochs_and_a_schedule_that_still_ends(data_dir: Path, printed) -> None:
    machine = Machine(0.4, lambda epoch: epoch >= 1)
    budget = TimeBudget(minutes=0.25, probe_steps=3, margin=0.2, clock=machine)
    trainer, seconds = fit(data_dir, budget, 10, machine, every_epoch("ckpt"))
    assert budget.paces[1] < STEPS_PER_EPOCH * 0.4 < min(budget.paces[2:])
    assert 3 <= budget.epochs < 10 and trainer.current_epoch == budget.epochs
    assert seconds < 15, f"fit took {seconds:.1f} s of a 15 s budget"
    lrs = learning_rates(run_dirs()[-1])
    assert_whole_schedule(trainer, lrs)
    [line] = budget_lines(printed, "TimeBudget: epoch")  # two slow epochs in a row, then one change
    done = int(line.split()[2])
    assert done >= 3, "not at the first slow epoch: at the second in a row"
    assert f"training {budget.epochs} epochs, not 10, the rest of the schedule compressed to end with them" in line

    # resumed after the change, it keeps the epochs and the schedule's plan: the same rates step for step
    again = TimeBudget(minutes=60, probe_steps=2)
    resumed, _ = fit(data_dir, again, 10, every_epoch("ckpt2"), ckpt_path=f"ckpt/epoch={done}.ckpt")
    assert again.epochs == budget.epochs and resumed.current_epoch == budget.epochs
    assert learning_rates(run_dirs()[-1]) == pytest.approx(lrs[(done + 1) * STEPS_PER_EPOCH :], rel=1e-6)
    assert budget_lines(printed)[-1] == f"TimeBudget: a resumed run: {budget.epochs} epochs, as chosen when it began"


def test_a_forecast_slower_than_the_run_gets_more_epochs_and_a_schedule_that_still_ends(
    data_dir: Path, printed
) -> None:
    machine = Machine(0.4, lambda epoch: epoch == 0)  # the steps timed
    budget = TimeBudget(minutes=0.25, probe_steps=3, margin=0.5, clock=machine)
    trainer, seconds = fit(data_dir, budget, 10, machine)
    planned = budget_lines(printed)[0].split(" -> ")[1].split()[0]
    assert budget.paces[0] > STEPS_PER_EPOCH * 0.4 > 2 * max(budget.paces[2:])
    assert 2 <= int(planned) < budget.epochs == trainer.current_epoch == 10, "more, never more than max_epochs"
    assert seconds < 15, f"fit took {seconds:.1f} s of a 15 s budget"
    assert_whole_schedule(trainer, learning_rates(run_dirs()[-1]))
    *_, line = budget_lines(printed, "TimeBudget: epoch")  # at the pace of the slow epoch, then of two fast ones
    assert all("stretched" in replan for replan in budget_lines(printed, "TimeBudget: epoch"))
    assert "training 10 epochs, not " in line and ", the rest of the schedule stretched to end with them" in line


def test_a_schedule_not_on_progress_keeps_its_length_and_the_budget_says_so_once(data_dir: Path) -> None:
    one_cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=MAX_LR, total_steps=None)
    machine = Machine(0.25)
    budget = TimeBudget(minutes=0.15, probe_steps=3, margin=0.5, clock=machine)
    with pytest.warns(UserWarning, match="TimeBudget: OneCycleLR cannot be planned again") as warned:
        trainer, _ = fit(data_dir, budget, 10, machine, scheduler=(one_cycle, "step"))
    assert len([w for w in warned if "cannot be planned again" in str(w.message)]) == 1
    assert budget.epochs == trainer.current_epoch < 10
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 10 * STEPS_PER_EPOCH, "made for 10 epochs"


@pytest.mark.parametrize(
    ("budget", "minutes"),
    [(["--trainer.callbacks.minutes", "5"], "5"), (["--trainer.max_time", "00:00:02:30"], "2.5")],
    ids=["minutes", "max_time"],
)
def test_the_first_line_says_that_the_budget_chooses_the_epochs(fmnist, capsys, budget, minutes) -> None:
    args = ["--trainer.callbacks+=callbacks.TimeBudget", *budget]
    assert fmnist("fit", "--trainer.max_epochs", "1", *args, "--test_after_fit", "false") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"fmnist fit: up to 1 epoch in {minutes} min (TimeBudget), seed 42, on 1 cpu"), first


# --- the one-cycle schedule on progress -------------------------------------------------------


def one_cycles(total_steps: int, **kwargs) -> tuple[torch.optim.Optimizer, ...]:
    """Two AdamW optimizers, one under torch's OneCycleLR and one under OneCycleProgressLR, and their schedules."""
    first, second = (torch.optim.AdamW([torch.zeros(1, requires_grad=True)]) for _ in range(2))
    torch_schedule = torch.optim.lr_scheduler.OneCycleLR(first, max_lr=MAX_LR, total_steps=total_steps, **kwargs)
    return first, torch_schedule, second, OneCycleProgressLR(second, MAX_LR, total_steps, **kwargs)


def rates(optimizer: torch.optim.Optimizer, schedule, steps: int, plans: dict | None = None) -> list[tuple]:
    """The learning rate and first beta of each of ``steps`` steps; ``plans`` maps a step to a plan made before it."""
    seen = []
    for step in range(steps):
        if step in (plans or {}):
            schedule.plan(plans[step])
        group = optimizer.param_groups[0]
        seen.append((group["lr"], group["betas"][0]))
        optimizer.step(), schedule.step()
    return seen


@pytest.mark.parametrize("total_steps", [8, 40, 6450])
def test_one_cycle_on_progress_is_torchs_one_cycle_step_for_step(total_steps: int) -> None:
    first, torch_schedule, second, ours = one_cycles(total_steps, pct_start=0.25)
    assert rates(second, ours, total_steps) == rates(first, torch_schedule, total_steps)


def test_a_new_plan_goes_on_from_the_current_rate_and_ends_at_the_last_step() -> None:
    first, torch_schedule, second, ours = one_cycles(100)
    before = rates(first, torch_schedule, 100)
    after = rates(second, ours, 80, plans={20: 60, 40: 80})  # 100 steps, then 60, then 80
    assert after[:21] == before[:21], "the steps before a plan, and the one it is made at, keep their rates"
    lrs = [lr for lr, _ in after]
    peak = lrs.index(max(lrs))
    assert lrs[: peak + 1] == sorted(lrs[: peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
    assert max(abs(b - a) for a, b in zip(lrs, lrs[1:])) < 0.1 * MAX_LR, "no jump"
    assert after[-1] == pytest.approx(before[-1]), "the last rate and momentum at the last step"
    assert ours.state_dict()["total_steps"] == 80


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": None}, "a schedule on progress needs total_steps, a positive number of steps; got None"),
        ({"total_steps": 10, "max_lr": [0.1, 0.2]}, "OneCycleProgressLR: 2 max_lr values for 1 parameter groups"),
        ({"total_steps": 10, "pct_start": 1.0}, "OneCycleProgressLR: pct_start must be between 0 and 1, got 1.0"),
    ],
)
def test_wrong_schedule_arguments_are_refused(kwargs: dict, message: str) -> None:
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        OneCycleProgressLR(optimizer, **{"max_lr": 0.1, **kwargs})


def test_cycling_momentum_needs_an_optimizer_with_momentum() -> None:
    plain = torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=0.1)  # no momentum, no betas
    with pytest.raises(ValueError, match="OneCycleProgressLR: cycle_momentum needs an optimizer with momentum"):
        OneCycleProgressLR(plain, max_lr=0.1, total_steps=10)
    OneCycleProgressLR(plain, max_lr=0.1, total_steps=10, cycle_momentum=False)


# --- loaders the budget cannot forecast, and wrong arguments ----------------------------------


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


class Endless(IterableDataset):
    def __iter__(self):
        while True:
            yield (torch.zeros(4),)


def test_a_loader_without_length_is_not_forecast() -> None:
    trainer = pl.Trainer(
        callbacks=[TimeBudget(minutes=1)], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=3,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="TimeBudget: the training loader has no length"):
        trainer.fit(TinyModule(Endless()))
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
