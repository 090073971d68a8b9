"""``callbacks.WeightEMA``'s warm-up: the average follows the weights closely at first, then slowly."""

import pytest
import torch

from callbacks.averaging import WeightEMA, _warming_ema


def decay_after(n: int, decay: float) -> float:
    """The decay one update applies after ``n`` earlier updates, read off the average itself."""
    averaged, current = [torch.zeros(3, dtype=torch.float64)], [torch.ones(3, dtype=torch.float64)]
    _warming_ema(decay)(averaged, current, torch.tensor(n))
    return 1 - float(averaged[0][0])  # the average moved 1 - decay of the way from 0 to 1


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, 1 / 10), (1, 2 / 11), (10, 11 / 20), (100, 101 / 110), (990, 0.991), (10_000, 0.999), (10**6, 0.999)],
)
def test_decay_warms_up_as_timm_model_ema_v2_then_stays_at_decay(n: int, expected: float) -> None:
    assert decay_after(n, 0.999) == pytest.approx(expected)


def test_a_small_decay_is_reached_early() -> None:
    assert decay_after(0, 0.05) == pytest.approx(0.05), "min(decay, 1/10)"
    assert decay_after(100, 0.5) == pytest.approx(0.5)


def test_every_tensor_is_averaged_in_place() -> None:
    averaged = [torch.zeros(2), torch.full((3,), 10.0)]
    first = averaged[0]
    _warming_ema(0.999)(averaged, [torch.ones(2), torch.zeros(3)], torch.tensor(0))
    assert averaged[0] is first and averaged[0].tolist() == pytest.approx([0.9, 0.9])
    assert averaged[1].tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_weight_ema_keeps_its_decay() -> None:
    assert WeightEMA(decay=0.99).decay == 0.99
