"""``callbacks.WeightEMA``: its warm-up, its options (Lightning's ``EMAWeightAveraging``'s), pickling and ddp_spawn.

Lightning's own weight-averaging tests, run on ``WeightEMA``, are in ``test_weight_averaging_lightning.py``.
"""

import itertools
import pickle
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from callbacks.averaging import WarmupEMA, WeightEMA


def decay_after(n: int, decay: float) -> float:
    """The decay one update applies after ``n`` earlier updates, read off the average itself."""
    averaged, current = [torch.zeros(3, dtype=torch.float64)], [torch.ones(3, dtype=torch.float64)]
    WarmupEMA(decay)(averaged, current, torch.tensor(n))
    return 1 - float(averaged[0][0])  # the average moved 1 - decay of the way from 0 to 1


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 1 / 10), (1, 2 / 11), (10, 11 / 20), (100, 101 / 110), (990, 0.991), (10_000, 0.999), (10**6, 0.999)],
)
def test_decay_warms_up_as_timm_model_ema_v2_then_stays_at_decay(n: int, expected: float) -> None:
    assert decay_after(n, 0.999) == pytest.approx(expected)
    assert WarmupEMA(0.999).decay_after(n) == pytest.approx(expected)


def test_a_small_decay_is_reached_early() -> None:
    assert decay_after(0, 0.05) == pytest.approx(0.05), "min(decay, 1/10)"
    assert decay_after(100, 0.5) == pytest.approx(0.5)


def test_every_tensor_is_averaged_in_place() -> None:
    averaged = [torch.zeros(2), torch.full((3,), 10.0)]
    first = averaged[0]
    WarmupEMA(0.999)(averaged, [torch.ones(2), torch.zeros(3)], torch.tensor(0))
    assert averaged[0] is first and averaged[0].tolist() == pytest.approx([0.9, 0.9])
    assert averaged[1].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_counts_are_copied_not_averaged() -> None:
    averaged = [torch.tensor(3)]  # batch norm's num_batches_tracked
    WarmupEMA(0.999)(averaged, [torch.tensor(40)], torch.tensor(5))
    assert averaged[0].item() == 40


def test_weight_ema_keeps_its_decay_and_averages_with_the_warm_up() -> None:
    ema = WeightEMA(decay=0.99)
    assert ema.decay == 0.99
    assert isinstance(ema._kwargs["multi_avg_fn"], WarmupEMA) and ema._kwargs["multi_avg_fn"].decay == 0.99
    assert "avg_fn" not in ema._kwargs, "the warm-up is the only averaging function"


def test_weight_ema_pickles_with_its_options() -> None:
    ema = WeightEMA(0.99, "cpu", False, 3, 10, 2)
    copy = pickle.loads(pickle.dumps(ema))
    assert (copy.decay, copy._device, copy._use_buffers) == (0.99, torch.device("cpu"), False)
    assert (copy.update_every_n_steps, copy.update_starting_at_step, copy.update_starting_at_epoch) == (3, 10, 2)
    assert copy._kwargs["multi_avg_fn"].decay == 0.99


def test_emaweightaveraging_itself_does_not_pickle() -> None:
    """Why WeightEMA does not call EMAWeightAveraging's constructor; if this fails, Lightning fixed it upstream."""
    with pytest.raises((AttributeError, pickle.PicklingError), match="local object"):
        pickle.dumps(EMAWeightAveraging())


def test_weight_ema_has_every_attribute_emaweightaveraging_sets() -> None:
    assert set(vars(EMAWeightAveraging())) <= set(vars(WeightEMA()))


OPTIONS = [
    {},
    {"update_every_n_steps": 5},
    {"update_every_n_steps": 5, "update_starting_at_step": 10},
    {"update_starting_at_step": 7},
    {"update_starting_at_epoch": 2},
    {"update_every_n_steps": 0, "update_starting_at_epoch": 3},
    {"update_every_n_steps": 4, "update_starting_at_step": 6, "update_starting_at_epoch": 1},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_updates_when_emaweightaveraging_would(options: dict[str, int]) -> None:
    ours, lightnings = WeightEMA(**options), EMAWeightAveraging(**options)
    for step_idx, epoch_idx in itertools.product([None, *range(40)], [None, *range(6)]):
        expected = lightnings.should_update(step_idx=step_idx, epoch_idx=epoch_idx)
        assert ours.should_update(step_idx=step_idx, epoch_idx=epoch_idx) == expected, (step_idx, epoch_idx)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"decay": 0.0}, "decay must be between 0 and 1, got 0.0"),
        ({"decay": 1.0}, "decay must be between 0 and 1, got 1.0"),
        ({"update_every_n_steps": -1}, "update_every_n_steps must be 0 .* or more, got -1"),
        ({"update_starting_at_step": -1}, "update_starting_at_step must be None or 0 or more, got -1"),
        ({"update_starting_at_epoch": -2}, "update_starting_at_epoch must be None or 0 or more, got -2"),
        ({"update_every_n_steps": 0}, "the average would never be updated"),
    ],
)
def test_bad_options_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=message):
        WeightEMA(**options)


@pytest.mark.slow  # two processes, each starting torch
def test_ddp_spawn_fit_returns_and_checkpoints_the_average(tmp_path: Path) -> None:
    model, checkpoint = BoringModel(), ModelCheckpoint(dirpath=tmp_path / "checkpoints")
    trainer = Trainer(
        strategy="ddp_spawn",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        callbacks=[WeightEMA(decay=0.9), checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, DataLoader(RandomDataset(32, 64), batch_size=4))

    saved = torch.load(checkpoint.best_model_path, weights_only=True)
    assert saved["averaging_state"]["n_averaged"].item() == saved["global_step"] == 16  # 64 / 2 ranks / 4, 2 epochs
    for name, weight in model.state_dict().items():  # the model the spawned fit hands back is the average
        assert torch.equal(weight, saved["state_dict"][name]), name
        assert not torch.equal(weight, saved["current_model_state"][name]), name
