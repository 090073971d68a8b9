"""``callbacks.PredictionWriter`` and ``PredictionGrid`` under a real ``Trainer.predict``: what a user opens."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from callbacks import PredictionGrid, PredictionWriter
from tests.helpers import events

NAMES = ("zero", "one", "two")


class Classifier(pl.LightningModule):
    """Predicts class ``i % 3`` for input ``i`` with confidence 0.5 + i / 100, as fmnist's predict_step returns it."""

    def predict_step(self, batch, batch_idx):
        (x,) = batch
        classes = x.long() % 3
        return {"class_index": classes, "class_name": [NAMES[i] for i in classes.tolist()], "confidence": 0.5 + x / 100}


def predict(tmp_path: Path, count: int, writer: PredictionWriter) -> list[dict[str, str]]:
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=False, callbacks=[writer], enable_progress_bar=False, accelerator="cpu"
    )
    loader = DataLoader(TensorDataset(torch.arange(count, dtype=torch.float32)), batch_size=4)
    assert trainer.predict(Classifier(), loader, return_predictions=False) is None
    with open(writer.path, newline="") as file:
        return list(csv.DictReader(file))


def test_one_row_per_image_in_dataset_order(tmp_path: Path) -> None:
    writer = PredictionWriter()
    rows = predict(tmp_path, 10, writer)
    assert Path(writer.path) == tmp_path / "predictions.csv"
    assert [int(row["index"]) for row in rows] == list(range(10)), "batch by batch, every image once"
    assert [int(row["class_index"]) for row in rows] == [i % 3 for i in range(10)]
    assert [row["class_name"] for row in rows] == [NAMES[i % 3] for i in range(10)]
    assert [float(row["confidence"]) for row in rows] == pytest.approx([0.5 + i / 100 for i in range(10)])
    assert rows[3]["confidence"] == "0.5300", "four decimals"


def test_own_file_name_and_a_second_predict_overwrites(tmp_path: Path) -> None:
    writer = PredictionWriter(filename="out/test-split.csv")
    predict(tmp_path, 9, writer)
    rows = predict(tmp_path, 5, writer)
    assert Path(writer.path) == tmp_path / "out/test-split.csv"
    assert len(rows) == 5, "a fresh file each time, not appended"


class OtherOutputs(Classifier):
    """A predict_step outside the prediction callbacks' contract: a bare tensor, or a dict short of keys."""

    def __init__(self, bare: bool) -> None:
        super().__init__()
        self.bare = bare

    def predict_step(self, batch, batch_idx):
        prediction = super().predict_step(batch, batch_idx)
        return batch[0] if self.bare else {"class_name": prediction["class_name"]}


@pytest.mark.parametrize(
    ("bare", "writer_misses", "grid_misses"),
    [
        (True, "'class_index', 'class_name', 'confidence'", "'class_name', 'confidence'"),
        (False, "'class_index', 'confidence'", "'confidence'"),
    ],
)
def test_predictions_without_the_contracts_keys_warn_once_and_write_nothing(
    tmp_path: Path, bare: bool, writer_misses: str, grid_misses: str
) -> None:
    writer, grid = PredictionWriter(), PredictionGrid()
    trainer = pl.Trainer(
        default_root_dir=tmp_path, logger=TensorBoardLogger(tmp_path, name="tb"), callbacks=[writer, grid],
        enable_progress_bar=False, accelerator="cpu",
    )  # fmt: skip
    loader = DataLoader(TensorDataset(torch.arange(10, dtype=torch.float32)), batch_size=4)  # three batches
    with pytest.warns(UserWarning) as caught:
        trainer.predict(OtherOutputs(bare), loader, return_predictions=False)
    said = sorted(str(w.message) for w in caught if "needs predict_step" in str(w.message))
    assert said == [
        f"PredictionGrid needs predict_step to return a dict with 'class_name', 'confidence'; missing {grid_misses},"
        " so it writes nothing for such batches.",
        "PredictionWriter needs predict_step to return a dict with 'class_index', 'class_name', 'confidence';"
        f" missing {writer_misses}, so it writes nothing for such batches.",
    ], "one warning per callback, naming what is missing"
    with open(writer.path, newline="") as file:
        assert list(csv.reader(file)) == [list(PredictionWriter.COLUMNS)], "the header and no rows"
    assert events(Path(trainer.logger.log_dir)).Tags()["images"] == [], "no grid"
