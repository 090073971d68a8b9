"""``predict --data.predict_path``: your own pictures, prepared like Fashion-MNIST, in a CSV and a grid."""

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist import CLASS_NAMES, pictures
from fmnist.data import normalize
from tests.helpers import events, fit_in, write_dataset


def garment(height: int = 28, width: int = 20) -> np.ndarray:
    """A Fashion-MNIST-like 28x28 image: a light textured shape on black, touching top and bottom."""
    image = np.zeros((28, 28), np.uint8)
    left = (28 - width) // 2
    rows = np.arange(height)[:, None]
    image[28 - height :, left : left + width] = (120 + 100 * np.sin(rows / 3) ** 2 + np.arange(width) * 1.5).astype(
        np.uint8
    )
    image[10:14, left + 5 : left + 9] = 30  # a dark pocket
    image[20, left + 10] = 255  # and the full range, as 99% of Fashion-MNIST's images have
    return image


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def prepared(path: Path) -> torch.Tensor:
    return pictures.prepare(pictures.read(path))


def test_a_plain_fashion_mnist_png_is_left_exactly_as_it_was(tmp_path: Path) -> None:
    image = garment()
    expected = normalize(torch.from_numpy(image)[None])[0]
    assert torch.allclose(prepared(save(image, tmp_path / "plain.png")), expected, atol=1e-6), "the same pixels"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda g, p: save(np.kron(g, np.ones((4, 4), np.uint8)), p / "big.jpg", quality=92), id="112px-jpeg"
        ),
        pytest.param(lambda g, p: save(255 - g, p / "light.png"), id="light-background"),
        pytest.param(
            lambda g, p: save(255 - np.kron(g, np.ones((3, 3), np.uint8)), p / "light.jpg", quality=92), id="light-jpeg"
        ),
        pytest.param(lambda g, p: save(np.stack([g, g * 0 + g // 2, g // 3], -1), p / "tint.png"), id="colour"),
        pytest.param(lambda g, p: save(np.pad(g, ((20, 20), (4, 60))), p / "wide.png"), id="non-square-margins"),
        pytest.param(
            lambda g, p: save(np.stack([255 - g] * 3 + [np.full_like(g, 255)], -1), p / "rgba.png"), id="rgba"
        ),
    ],
)
def test_other_pictures_of_the_same_garment_come_out_alike(tmp_path: Path, make: Callable) -> None:
    image = garment()
    expected = normalize(torch.from_numpy(image)[None])[0]
    got = prepared(make(image, tmp_path))
    assert got.shape == (1, 28, 28)
    assert got[0, :, 0].max() < -0.9 and got[0, :, -1].max() < -0.9, "a dark background, as in Fashion-MNIST"
    assert (got - expected).abs().mean() < 0.05, "the same picture, up to resampling and JPEG noise"


def test_colour_becomes_gray_and_aspect_ratio_is_kept(tmp_path: Path) -> None:
    wide = np.zeros((50, 200, 3), np.uint8)
    wide[:, :, 0] = 200  # a red 50x200 band (gray 60) with a margin: trimmed, its long edge fills 28 pixels
    got = prepared(save(np.pad(wide, ((10, 10), (10, 10), (0, 0))), tmp_path / "band.png"))
    rows = (got[0] > -0.9).any(dim=1).nonzero().flatten()
    assert (got[0] > -0.9).any(dim=0).all(), "the long edge spans the width"
    assert 6 <= len(rows) <= 8, "a 1:4 band stays 1:4: 7 rows of 28"


# --- through the CLI ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short fit, shared: each test predicts with its checkpoint, into its run folder."""
    root = tmp_path_factory.mktemp("pictures")
    data = write_dataset(root / "data")
    (run,) = fit_in(root, "--data.data_dir", str(data), "--data.val_size", "128", "--trainer.max_epochs", "1",
                    "--test_after_fit", "false")  # fmt: skip
    return run


def checkpoint(run: Path) -> str:
    return str(next((run / "checkpoints").glob("best-*.ckpt")))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    image = garment()
    save(image, folder / "a_plain.png")
    save(np.kron(255 - image, np.ones((5, 5), np.uint8)), folder / "b_light_140px.jpg", quality=90)
    save(np.stack([image] * 3, -1), folder / "c_colour.jpeg")
    save(np.pad(image, ((0, 0), (30, 2))), folder / "d_wide.png")
    (folder / "e_notes.txt").write_text("not a picture")
    (folder / "f_broken.png").write_bytes((folder / "a_plain.png").read_bytes()[:60])
    (folder / ".hidden").write_text("ignored")
    return folder


def predictions(run: Path) -> list[dict[str, str]]:
    with open(run / "predictions.csv") as file:
        return list(csv.DictReader(file))


def test_predict_on_a_folder_of_pictures(fmnist, trained: Path, photos: Path) -> None:
    with pytest.warns(UserWarning) as warned:
        assert fmnist("predict", "--ckpt_path", checkpoint(trained), "--data.predict_path", str(photos)) == 0
    left_out = [str(w.message) for w in warned if "left out" in str(w.message)]
    assert left_out == [
        f"data.predict_path: left out 2 files that are not pictures, are broken or are too thin: {photos}/e_notes.txt, {photos}/f_broken.png"
    ]
    rows = predictions(trained)
    assert [row["file"] for row in rows] == [
        str(photos / n) for n in ("a_plain.png", "b_light_140px.jpg", "c_colour.jpeg", "d_wide.png")
    ]
    assert [row["index"] for row in rows] == ["0", "1", "2", "3"]
    for row in rows:
        assert CLASS_NAMES[int(row["class_index"])] == row["class_name"]
        assert 0.1 <= float(row["confidence"]) <= 1
    assert len({row["class_name"] for row in rows}) == 1, "one garment, four ways: one prediction"
    grid = events(trained).Images("Predictions")[-1]
    assert grid.width == 4 + 4 * (28 * 4 + 4) and grid.height > 28 * 4, "four captioned tiles in a row"


def test_predict_on_a_glob_and_on_one_file(fmnist, trained: Path, photos: Path) -> None:
    assert fmnist("predict", "--ckpt_path", checkpoint(trained), "--data.predict_path", str(photos / "*.png")) == 0
    assert [Path(row["file"]).name for row in predictions(trained)] == ["a_plain.png", "d_wide.png"]
    assert (
        fmnist("predict", "--ckpt_path", checkpoint(trained), "--data.predict_path", str(photos / "c_colour.jpeg")) == 0
    )
    assert [Path(row["file"]).name for row in predictions(trained)] == ["c_colour.jpeg"]


def test_predict_without_a_path_classifies_the_test_split(fmnist, trained: Path) -> None:
    assert fmnist("predict", "--ckpt_path", checkpoint(trained)) == 0
    rows = predictions(trained)
    assert len(rows) == 128 and {row["file"] for row in rows} == {""}
    grid = events(trained).Images("Predictions")[-1]
    assert grid.width == 4 + 8 * (28 * 4 + 4), "64 images, 8 a row"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing", "data.predict_path missing: no such file or folder"),
        ("empty", "data.predict_path empty holds no files"),
        ("empty/*.jpg", "data.predict_path empty/*.jpg matches no files"),
        ("text", "data.predict_path text: none of its 1 files is a picture Pillow can read"),
    ],
)
def test_unusable_predict_path_is_one_clear_line(fmnist, capsys, path: str, message: str) -> None:
    Path("empty").mkdir()
    Path("text").mkdir()
    Path("text/readme.md").write_text("# not a picture")
    assert fmnist("predict", "--data.predict_path", path) == 2
    err = capsys.readouterr().err
    assert err == f"fmnist: error: {message}\n"
    assert not Path("runs").exists(), "no run folder for a run that never started"


def test_a_picture_too_thin_to_keep_a_pixel_across_is_left_out(tmp_path: Path) -> None:
    """A 1x60 stroke would be resized to 0 pixels across: it is left out, as an unreadable file is."""
    save(garment(), tmp_path / "a_plain.png")
    stroke = np.zeros((100, 100), np.uint8)
    stroke[50, 20:80] = 255
    thin = save(stroke, tmp_path / "b_stroke.png")
    dataset, skipped = pictures.load(str(tmp_path))
    assert skipped == [thin] and len(dataset) == 1
    with pytest.raises(ValueError, match="a 60x1 picture is too thin to keep a pixel across at 28 pixels"):
        pictures.prepare(Image.open(thin).convert("L"))
