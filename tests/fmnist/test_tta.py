"""Test-time augmentation (``--model.tta``): the averaged views, logged beside the plain metric."""

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from fmnist import FashionMNISTClassifier
from tests.helpers import events, run_dirs

BLACK = -1.0  # a black pixel after normalisation: what shifted-in pixels are


def by_hand(x: torch.Tensor) -> list[torch.Tensor]:
    """The image and its five views, each made on its own: up, down, left, right, mirrored."""
    row = torch.full_like(x[..., :1, :], BLACK)
    column = torch.full_like(x[..., :, :1], BLACK)
    return [
        x,
        torch.cat([x[..., 1:, :], row], dim=-2),
        torch.cat([row, x[..., :-1, :]], dim=-2),
        torch.cat([x[..., :, 1:], column], dim=-1),
        torch.cat([column, x[..., :, :-1]], dim=-1),
        x.flip(-1),
    ]


def test_the_averaged_views_are_a_loop_over_the_views_by_hand() -> None:
    torch.manual_seed(0)
    model = FashionMNISTClassifier(tta=["shift", "flip"]).eval()
    x = torch.randn(7, 1, 28, 28)
    with torch.no_grad():
        logits, averaged = model.tta_probabilities(x)
        expected = torch.stack([F.softmax(model(view), dim=1) for view in by_hand(x)]).mean(dim=0)
        prediction = model.predict_step((x, torch.zeros(7, dtype=torch.long)), 0)
    torch.testing.assert_close(averaged, expected)
    torch.testing.assert_close(logits, model(x))  # the plain logits come first
    assert prediction["class_index"].tolist() == expected.argmax(dim=1).tolist()
    torch.testing.assert_close(prediction["confidence"], expected.max(dim=1).values)


def test_without_tta_predict_is_the_plain_softmax() -> None:
    model = FashionMNISTClassifier().eval()
    x = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        prediction = model.predict_step(x, 0)
        assert torch.equal(prediction["confidence"], model(x).softmax(dim=1).max(dim=1).values)
    assert not hasattr(model, "test_acc_tta")


def test_fit_logs_the_tta_accuracy_beside_the_plain_one_and_off_changes_nothing(
    fmnist: Callable[..., int], capsys: pytest.CaptureFixture
) -> None:
    short = ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
    assert fmnist("fit", *short) == 0
    assert fmnist("fit", *short, "--model.tta", "[shift, flip]") == 0
    out = capsys.readouterr().out
    plain, tta = (events(run) for run in run_dirs())
    for tag in ("Accuracy/val", "Loss/val", "Accuracy/test", "Loss/test", "Loss/train"):
        assert [e.value for e in plain.Scalars(tag)] == [e.value for e in tta.Scalars(tag)], tag
    assert "Accuracy/test_tta" not in plain.Tags()["scalars"]
    # fit's validation averages the views at its last epoch only (each epoch would cost training time)
    val_tta, val = tta.Scalars("Accuracy/val_tta"), tta.Scalars("Accuracy/val")
    assert [e.step for e in val_tta] == [val[-1].step] and len(tta.Scalars("Accuracy/test_tta")) == 1
    assert 0 <= tta.Scalars("Accuracy/test_tta")[-1].value <= 1
    (line,) = [line for line in out.splitlines() if line.startswith("test accuracy TTA")]
    assert f"{tta.Scalars('Accuracy/test_tta')[-1].value:.4f}" in line and "views: shift, flip" in line


def test_the_views_given_on_the_command_line_apply_to_any_checkpoint(
    fmnist: Callable[..., int], capsys: pytest.CaptureFixture
) -> None:
    # LightningCLI puts a checkpoint's hyperparameters over the command line's: not for --model.tta
    assert fmnist("fit", "--trainer.max_epochs", "1", "--test_after_fit", "false") == 0
    assert fmnist("validate", "--ckpt_path", "last", "--model.tta", "[shift]") == 0
    assert "Accuracy/val_tta " in "".join(capsys.readouterr())
    assert fmnist("fit", "--trainer.max_epochs", "1", "--test_after_fit", "false", "--model.tta", "[flip]") == 0
    capsys.readouterr()
    assert fmnist("validate", "--ckpt_path", "last", "--model.tta", "[]") == 0, "none, on a checkpoint trained with"
    assert "Accuracy/val_tta" not in "".join(capsys.readouterr())
