"""Pictures for TensorBoard's Images tab: captioned image grids and a confusion matrix.

Drawn with Pillow, which torchvision already depends on, rather than matplotlib: a figure per
epoch would add a large dependency and about ten times the drawing time for two simple pictures.
"""

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

GREEN, RED, GREY, WHITE = (80, 220, 100), (255, 90, 80), (190, 190, 190), (255, 255, 255)
_FONT_SIZE = 12


def _font(size: int = _FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def to_unit_range(images: Tensor, value_range: tuple[float, float] | None) -> Tensor:
    """Map model inputs ``(N, C, H, W)`` back to [0, 1] for display (undoes the normalisation).

    Without ``value_range`` each image is stretched from its own min to max, as
    ``make_grid(normalize=True, scale_each=True)`` does.

    >>> to_unit_range(torch.tensor([[[[-1.0, 0.0, 1.0]]]]), (-1.0, 1.0)).flatten().tolist()
    [0.0, 0.5, 1.0]
    >>> to_unit_range(torch.tensor([[[[2.0, 4.0, 6.0]]]]), None).flatten().tolist()
    [0.0, 0.5, 1.0]
    """
    images = images.float()
    if value_range is None:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = torch.maximum(images.amax(dim=(1, 2, 3), keepdim=True), low + 1e-5)
    else:
        low, high = value_range
    return ((images - low) / (high - low)).clamp_(0, 1)


def prediction_captions(
    probabilities: Tensor, labels: Tensor, class_names: Sequence[str]
) -> tuple[list[tuple[str, str]], list[tuple[int, int, int]]]:
    """Caption lines and colours for a grid: the predicted class with its probability, and the true class.

    As the PyTorch tutorial "Visualizing Models, Data, and Training with TensorBoard" labels its
    images; green when the prediction is right, red when it is wrong.

    >>> captions, colors = prediction_captions(torch.tensor([[0.127, 0.873]]), torch.tensor([1]), ["Shirt", "Coat"])
    >>> captions, colors == [GREEN]
    ([('Coat 87.3%', 'true: Coat')], True)
    """
    confidence, predicted = probabilities.max(dim=1)
    captions, colors = [], []
    for p, c, t in zip(predicted.tolist(), confidence.tolist(), labels.tolist()):
        captions.append((f"{class_names[p]} {c:.1%}", f"true: {class_names[t]}"))
        colors.append(GREEN if p == t else RED)
    return captions, colors


def captioned_grid(
    images: Tensor,
    captions: Sequence[tuple[str, str]],
    colors: Sequence[tuple[int, int, int]],
    nrow: int = 8,
    scale: int = 4,
) -> Tensor:
    """A grid of ``images`` (N, C, H, W in [0, 1]), each with two caption lines below it.

    The first caption line is drawn in its colour (green for a right prediction, red for a
    wrong one), the second in grey. Returns a uint8 ``(3, H, W)`` tensor for ``add_image``.
    """
    font = _font()
    line = _FONT_SIZE + 3
    tiles = torch.nn.functional.interpolate(images.float(), scale_factor=scale, mode="nearest")
    tiles = torch.nn.functional.pad(tiles.expand(-1, 3, -1, -1), (0, 0, 0, 2 * line + 4))  # room below
    padding = 4
    grid = make_grid(tiles, nrow=nrow, padding=padding, pad_value=0.15)
    canvas = Image.fromarray(grid.mul(255).byte().permute(1, 2, 0).numpy())
    draw = ImageDraw.Draw(canvas)
    tile_h, tile_w = tiles.shape[2:]
    for i, ((first, second), color) in enumerate(zip(captions, colors)):
        x = padding + (i % nrow) * (tile_w + padding) + 2
        y = padding + (i // nrow) * (tile_h + padding) + images.shape[2] * scale + 2
        draw.text((x, y), first, fill=color, font=font)
        draw.text((x, y + line), second, fill=GREY, font=font)
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def confusion_matrix_image(matrix: Tensor, class_names: Sequence[str], cell: int = 46) -> Tensor:
    """A confusion matrix (rows: true class, columns: predicted class) as a uint8 ``(3, H, W)`` tensor.

    Cells are shaded by the share of their row (the recall of each class), and show the count.
    """
    matrix = matrix.detach().cpu().long()
    shares = matrix.float() / matrix.sum(dim=1, keepdim=True).clamp(min=1)
    font, small = _font(), _font(_FONT_SIZE - 1)
    names = [str(name) for name in class_names]
    left = max(int(font.getlength(name)) for name in names) + 14
    top = left  # column names are drawn rotated, so they need the same room
    size = cell * len(names)
    canvas = Image.new("RGB", (left + size + 10, top + size + 28), WHITE)
    draw = ImageDraw.Draw(canvas)
    for row, name in enumerate(names):
        y = top + row * cell
        draw.text((left - 8, y + cell // 2), name, fill=(0, 0, 0), font=font, anchor="rm")
        for col in range(len(names)):
            x = left + col * cell
            share = float(shares[row, col])
            shade = tuple(int(255 - share * (255 - c)) for c in (25, 85, 160))  # white -> dark blue
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=shade, outline=(225, 225, 225))
            text_color = WHITE if share > 0.5 else (0, 0, 0)
            draw.text(
                (x + cell // 2, y + cell // 2), str(int(matrix[row, col])), fill=text_color, font=small, anchor="mm"
            )
    for col, name in enumerate(names):
        label = Image.new("RGB", (top - 6, _FONT_SIZE + 6), WHITE)
        ImageDraw.Draw(label).text((2, 2), name, fill=(0, 0, 0), font=font)
        rotated = label.rotate(90, expand=True)
        canvas.paste(rotated, (left + col * cell + (cell - rotated.width) // 2, 4))
    draw.text(
        (left + size // 2, top + size + 14),
        "predicted class (columns) / true class (rows)",
        fill=(0, 0, 0),
        font=font,
        anchor="mm",
    )
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)


def bar_chart(bars: Sequence[tuple[str, float]], unit: str = "ms", title: str = "", width: int = 640) -> Tensor:
    """Horizontal bars, one per ``(label, value)``, each with its value and its share of the total.

    Values must be 0 or more; the longest bar spans the plot. Returns a uint8 ``(3, H, W)`` tensor
    for ``add_image``.

    >>> bar_chart([("data", 1.0), ("forward", 3.0)], title="ms per training step").shape
    torch.Size([3, 88, 640])
    """
    font = _font()
    row, top = 26, 28 if title else 8
    left = max(int(font.getlength(label)) for label, _ in bars) + 16
    right = int(font.getlength(f"000.00 {unit}  100.0%")) + 12
    canvas = Image.new("RGB", (width, top + row * len(bars) + 8), WHITE)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((8, 6), title, fill=(0, 0, 0), font=font)
    total = sum(value for _, value in bars) or 1.0
    longest = max(value for _, value in bars) or 1.0
    span = width - left - right
    for i, (label, value) in enumerate(bars):
        y = top + i * row
        draw.text((left - 8, y + row // 2), label, fill=(0, 0, 0), font=font, anchor="rm")
        end = left + max(round(span * value / longest), 1)
        draw.rectangle((left, y + 4, end, y + row - 4), fill=(25, 85, 160))
        text = f"{value:.2f} {unit}  {value / total:.1%}"
        draw.text((end + 6, y + row // 2), text, fill=(0, 0, 0), font=font, anchor="lm")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1)
