"""The pictures' building blocks: captions, the display range and the confusion matrix, without a Trainer."""

import numpy as np
import torch
from PIL import ImageFont

from callbacks.render import (
    GREEN,
    RED,
    WHITE,
    captioned_grid,
    confusion_matrix_image,
    prediction_captions,
    to_unit_range,
)


def test_captions_show_the_predicted_class_with_its_probability_and_the_true_class() -> None:
    probabilities = torch.tensor([[0.1, 0.873, 0.027], [0.5, 0.2, 0.3], [0.0001, 0.0, 0.9999]])
    captions, colors = prediction_captions(probabilities, torch.tensor([1, 2, 2]), ["Shirt", "Coat", "Bag"])
    assert captions == [("Coat 87.3%", "true: Coat"), ("Shirt 50.0%", "true: Bag"), ("Bag 100.0%", "true: Bag")]
    assert colors == [GREEN, RED, GREEN]


def test_display_range_given_or_per_image() -> None:
    images = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    images[1] *= 10
    assert to_unit_range(images, (-1.0, 1.0))[0].flatten().tolist() == [0.0, 0.5, 1.0, 1.0]
    stretched = to_unit_range(images, None)
    assert torch.allclose(stretched[0], stretched[1]), "each image from its own min to its max"
    assert stretched.flatten(1).amin(1).tolist() == [0.0, 0.0] and stretched.flatten(1).amax(1).tolist() == [1.0, 1.0]
    assert to_unit_range(torch.full((1, 3, 2, 2), 7.0), None).eq(0).all(), "a flat image is black, not NaN"


def test_captioned_grid_size_and_colours() -> None:
    images = torch.zeros(10, 3, 32, 32)
    images[:, 0] = 1.0  # red images
    grid = captioned_grid(images, [("a", "b")] * 10, [GREEN] * 10, nrow=4, scale=2)
    assert grid.dtype == torch.uint8 and grid.shape[0] == 3
    tile_w = 64 + 4
    assert grid.shape[2] == 4 + 4 * tile_w and grid.shape[1] > 3 * 64, "3 rows of 4, captions below each"
    assert grid[:, 4 + 10, 4 + 10].tolist() == [255, 0, 0]


def _cell(picture: torch.Tensor, names: list[str], row: int, col: int, cell: int = 46) -> list[int]:
    font = ImageFont.load_default(size=12)
    left = max(int(font.getlength(name)) for name in names) + 14
    return picture[:, left + row * cell + 3, left + col * cell + 3].tolist()  # a cell's corner, away from its count


def test_confusion_matrix_picture_shades_each_cell_by_its_share_of_the_row() -> None:
    names = ["T-shirt/top", "Trouser", "Pullover"]
    matrix = torch.tensor([[10, 0, 0], [5, 5, 0], [0, 0, 0]])
    picture = confusion_matrix_image(matrix, names)
    assert picture.dtype == torch.uint8 and picture.shape[0] == 3
    assert _cell(picture, names, 0, 0) == [25, 85, 160], "a full row: dark blue"
    assert _cell(picture, names, 0, 1) == list(WHITE), "an empty cell: white"
    half = _cell(picture, names, 1, 0)
    assert all(dark < h < 255 for h, dark in zip(half, (25, 85, 160))), "half the row: in between"
    assert _cell(picture, names, 2, 2) == list(WHITE), "a class never seen: no division by zero"


def test_confusion_matrix_picture_grows_with_classes_and_names() -> None:
    small = confusion_matrix_image(torch.eye(3, dtype=torch.long), ["a"] * 3)
    more = confusion_matrix_image(torch.eye(5, dtype=torch.long), ["a"] * 5)
    longer = confusion_matrix_image(torch.eye(3, dtype=torch.long), ["a much longer class name", "b", "c"])
    assert more.shape[2] - small.shape[2] == 2 * 46 and more.shape[1] - small.shape[1] == 2 * 46
    assert longer.shape[2] > small.shape[2] and longer.shape[1] > small.shape[1], "room for the names"
    assert not np.array_equal(
        small.numpy(), confusion_matrix_image(torch.eye(3, dtype=torch.long), ["x", "y", "z"]).numpy()
    )
