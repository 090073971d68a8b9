"""``callbacks.PredictionWriter`` under a real ``Trainer.predict``: the CSV a user opens."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import PredictionWriter

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
