"""The study run's pictures: a scatter of two metrics with the Pareto front drawn out.

Drawn with Pillow, as ``callbacks/render.py`` draws the run's pictures (no matplotlib); a pure
function of numbers to an ``(H, W, 3)`` uint8 array for ``SummaryWriter.add_image(..., dataformats="HWC")``.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLUE, ORANGE, GREY, BLACK, WHITE = (60, 110, 200), (235, 120, 20), (170, 170, 170), (30, 30, 30), (255, 255, 255)


def pareto_scatter(
    points: Sequence[tuple[float, float]],
    front: Sequence[int],
    labels: Sequence[str],
    axes: tuple[str, str],
    size: tuple[int, int] = (640, 480),
) -> np.ndarray:
    """Every trial as a dot, the Pareto-optimal ones in orange, joined in order and labelled.

    Args:
        points: ``(x, y)`` of each trial.
        front: indices into ``points`` of the Pareto-optimal trials.
        labels: a short label per point (the trial number), written beside the front's points.
        axes: the x and y axis titles (the two metrics).

    >>> picture = pareto_scatter([(1.0, 0.8), (2.0, 0.9), (1.5, 0.7)], [0, 1], ["0", "1", "2"], ("s", "acc"))
    >>> picture.shape, picture.dtype.name
    ((480, 640, 3), 'uint8')
    """
    width, height = size
    left, right, top, bottom = 70, 20, 20, 50
    image = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    xs, ys = [p[0] for p in points], [p[1] for p in points]

    def scale(value: float, low: float, high: float, start: int, end: int) -> float:
        return start + (value - low) / ((high - low) or 1.0) * (end - start)

    def at(point: tuple[float, float]) -> tuple[float, float]:
        x = scale(point[0], min(xs), max(xs), left + 10, width - right - 10)
        y = scale(point[1], min(ys), max(ys), height - bottom - 10, top + 10)
        return x, y

    draw.rectangle((left, top, width - right, height - bottom), outline=GREY)
    for value, anchor in ((min(xs), "lt"), (max(xs), "rt")):
        draw.text((at((value, ys[0]))[0], height - bottom + 4), f"{value:.4g}", fill=BLACK, font=font, anchor=anchor)
    for value, anchor in ((min(ys), "rb"), (max(ys), "rt")):
        draw.text((left - 4, at((xs[0], value))[1]), f"{value:.4g}", fill=BLACK, font=font, anchor=anchor)
    draw.text(((left + width - right) / 2, height - 16), axes[0], fill=BLACK, font=font, anchor="mm")
    draw.text((8, top), axes[1], fill=BLACK, font=font, anchor="lt")
    ordered = sorted(front, key=lambda i: points[i][0])
    if len(ordered) > 1:
        draw.line([at(points[i]) for i in ordered], fill=ORANGE, width=2)
    for index, point in enumerate(points):
        x, y = at(point)
        color = ORANGE if index in front else BLUE
        draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color)
        if index in front:
            draw.text((x + 6, y - 6), labels[index], fill=BLACK, font=font, anchor="lb")
    return np.asarray(image)
