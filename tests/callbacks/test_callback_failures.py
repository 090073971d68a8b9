"""Models the callbacks cannot work on (no logits, no nn.Linear, untraceable, wrong class names).

Each callback warns once, writes nothing, and training goes on.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import callbacks
from tests.callbacks.foreign import NAMES, TinyRGBNet, train
from tests.helpers import events, run_dirs


class NoLinearNoLogits(TinyRGBNet):
    """Convolutions only (no nn.Linear), and a validation_step that returns only the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, len(NAMES), 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Identity()

    def validation_step(self, batch, batch_idx):
        images, labels, _ = batch
        return F.cross_entropy(self(images), labels)


def test_a_model_without_logits_or_linear_layer_is_warned_about_once(tmp_path: Path) -> None:
    picky = [callbacks.EmbeddingProjector(), callbacks.MisclassifiedImages(), callbacks.ConfusionMatrixImage(),
             callbacks.PRCurves()]  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        trainer = train(NoLinearNoLogits(), picky, epochs=2)
    assert trainer.current_epoch == 2, "training went on"
    messages = [str(w.message) for w in caught]
    assert sum("EmbeddingProjector found no nn.Linear" in m for m in messages) == 1
    for name in ("MisclassifiedImages", "ConfusionMatrixImage", "PRCurves"):
        assert sum(m.startswith(f"{name} needs the model's logits") for m in messages) == 1, name
    (run,) = run_dirs()
    board = events(run)
    assert not board.Tags()["images"] and not board.Tags()["tensors"]
    assert not list(run.rglob("tensors.tsv")) and not (run / "projector_config.pbtxt").exists()


def test_class_names_argument_wins_and_a_wrong_count_is_numbered(tmp_path: Path) -> None:
    given = callbacks.PRCurves(class_names=["a", "b", "c", "d"])
    wrong = callbacks.ConfusionMatrixImage(class_names=["only", "two"])
    with pytest.warns(UserWarning, match="ConfusionMatrixImage has 2 class names for 4 logits"):
        train(TinyRGBNet(), [given, wrong], epochs=1)
    (run,) = run_dirs()
    board = events(run)
    assert set(board.Tags()["tensors"]) == {"PR/a", "PR/b", "PR/c", "PR/d"}
    assert board.Images("Confusion Matrix")


class DictForward(TinyRGBNet):
    """``forward`` returns a dict: nothing to trace for the graph, no logits for a forward pass."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"scores": self.head(self.features(x))}

    def training_step(self, batch, batch_idx):
        images, labels, _ = batch
        return F.cross_entropy(self(images)["scores"], labels)

    def validation_step(self, batch, batch_idx):
        return None


def test_a_model_whose_forward_returns_a_dict_is_warned_about_once(tmp_path: Path) -> None:
    picky = [callbacks.ModelGraph(), callbacks.SampleImages(), callbacks.EmbeddingProjector()]
    with pytest.warns(UserWarning) as caught:
        trainer = train(DictForward(), picky, epochs=2)
    assert trainer.current_epoch == 2, "training went on"
    messages = [str(w.message) for w in caught]
    assert sum(m.startswith("ModelGraph could not trace the model") for m in messages) == 1
    for name in ("SampleImages", "EmbeddingProjector"):
        assert sum(m.startswith(f"{name} needs the model's logits") for m in messages) == 1, name
    (run,) = run_dirs()
    board = events(run)
    assert not board.Tags()["graph"] and not board.Tags()["images"]
    assert not list(run.rglob("tensors.tsv"))
