"""The real Fashion-MNIST, from the system copy that CI installs (Debian's dataset-fashion-mnist)."""

from pathlib import Path

import pytest

from fmnist import idx
from tests.helpers import QUIET, REAL_DATA, events, run_dirs

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} missing: apt-get install dataset-fashion-mnist"),
]


def test_a_few_hundred_batches_learn_far_above_chance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from fmnist.main import main

    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", REAL_DATA)
    common = ["--data.data_dir", str(tmp_path / "empty"), "--data.download", "false", *QUIET]
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "300"])
    (run,) = run_dirs()
    assert run.name == "version_0" and run.parent.name == "fashion_mnist_lr_0.001_bs_64"
    main(["test", *common, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    board = events(run)
    after_fit, accuracy = board.Scalars("Accuracy/test")  # fit's own test, then `test` on last.ckpt
    assert accuracy.value > 0.75, "10 classes: chance is 0.10"
    assert after_fit.value == pytest.approx(accuracy.value), "fit tested the averaged weights it checkpointed"
    (val,) = board.Scalars("Accuracy/val")
    assert val.value > 0.75
    # the full splits: 55000 training and 5000 validation images held out of 60000, 10000 test images
    projector = next(run.glob("*/net.fc1/metadata.tsv"))
    assert len(projector.read_text().splitlines()) == 1 + 1000


def test_predict_on_pictures_made_from_the_test_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """300 batches of training, then 50 test images as pictures five ways: all far above chance."""
    import csv
    import gzip

    import numpy as np
    from PIL import Image

    from fmnist.main import main

    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", REAL_DATA)
    common = ["--data.data_dir", str(tmp_path / "empty"), "--data.download", "false", *QUIET]
    main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "300",
          "--trainer.limit_val_batches", "10", "--test_after_fit", "false"])  # fmt: skip
    (run,) = run_dirs()
    raw = gzip.decompress((REAL_DATA / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:50]
    labels = np.frombuffer(gzip.decompress((REAL_DATA / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:], np.uint8)
    ways = {
        "upscaled.jpg": lambda x: Image.fromarray(x).resize((112, 112), Image.BICUBIC),
        "light.png": lambda x: Image.fromarray(255 - x),
        "colour.png": lambda x: Image.fromarray((x[..., None] * np.array([1.0, 0.55, 0.25])).astype(np.uint8)),
        "wide.png": lambda x: Image.fromarray(np.pad(x, ((14, 14), (0, 0)))),
        "photo.jpg": lambda x: Image.fromarray(
            255 - (x[..., None] * np.array([0.3, 0.6, 1.0])).astype(np.uint8)
        ).resize((100, 100), Image.BICUBIC),
    }
    accuracy = {}
    for way, make in ways.items():
        folder = tmp_path / way.replace(".", "_")
        folder.mkdir()
        for i, image in enumerate(images):
            make(image).save(folder / f"{i:03d}.{way.split('.')[1]}")
        main(
            [
                "predict",
                *common,
                "--ckpt_path",
                str(run / "checkpoints" / "last.ckpt"),
                "--data.predict_path",
                str(folder),
            ]
        )
        with open(run / "predictions.csv") as file:
            rows = list(csv.DictReader(file))
        assert len(rows) == 50
        accuracy[way] = np.mean([int(row["class_index"]) == labels[int(Path(row["file"]).stem)] for row in rows])
    assert min(accuracy.values()) > 0.7, accuracy  # 10 classes: chance is 0.10
