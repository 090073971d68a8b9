"""What every callback shares: warn once, every_n_epochs, the epoch's step, class names and display range."""

from types import SimpleNamespace

import pytest
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks.contract import check_every_n_epochs, class_names, is_due, value_range, warn_once
from callbacks.tensorboard import epoch_step


class Speaker:
    """Any object can be a callback for the warn-once bookkeeping."""


def test_warn_once_per_callback_and_message() -> None:
    first, second = Speaker(), Speaker()
    with pytest.warns(UserWarning) as caught:
        for _ in range(3):
            warn_once(first, "has a problem.")
            warn_once(first, "has another problem.")
            warn_once(second, "has a problem.")
    assert sorted(str(w.message) for w in caught) == [
        "Speaker has a problem.", "Speaker has a problem.", "Speaker has another problem.",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("minimum", "value", "message"), [(1, 0, "must be at least 1, got 0"), (0, -1, "must be 0 or more")]
)
def test_every_n_epochs_is_checked(minimum: int, value: int, message: str) -> None:
    with pytest.raises(MisconfigurationException, match=f"Speaker: every_n_epochs {message}"):
        check_every_n_epochs(Speaker(), value, minimum)
    assert check_every_n_epochs(Speaker(), minimum, minimum) == minimum


def test_is_due() -> None:
    assert [epoch for epoch in range(7) if is_due(epoch, 3)] == [2, 5]
    assert not any(is_due(epoch, 0) for epoch in range(5))


@pytest.mark.parametrize(("global_step", "expected"), [(0, 0), (1, 0), (9, 8), (4300, 4299)])
def test_epoch_step_is_the_last_training_batchs_step(global_step: int, expected: int) -> None:
    # after an epoch of N optimizer steps global_step is N, and Lightning logged the epoch's scalars at N - 1
    assert epoch_step(SimpleNamespace(global_step=global_step)) == expected


def test_class_names_argument_then_datamodule_then_numbers() -> None:
    trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=("cat", "dog")))
    assert class_names(["a", "b"], trainer, 2, Speaker()) == ["a", "b"]
    assert class_names(None, trainer, 2, Speaker()) == ["cat", "dog"]
    assert class_names(None, SimpleNamespace(datamodule=None), 3, Speaker()) == ["0", "1", "2"]
    with pytest.warns(UserWarning, match="Speaker has 2 class names for 3 logits; it numbers the classes"):
        assert class_names(None, trainer, 3, Speaker()) == ["0", "1", "2"]


def test_value_range_argument_then_datamodule_then_none() -> None:
    trainer = SimpleNamespace(datamodule=SimpleNamespace(value_range=(-1, 1)))
    assert value_range((0, 255), trainer) == (0.0, 255.0)
    assert value_range(None, trainer) == (-1.0, 1.0)
    assert value_range(None, SimpleNamespace(datamodule=object())) is None
