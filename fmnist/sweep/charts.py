"""The study run's pictures: a scatter of two metrics with the Pareto front drawn out, and importances with whiskers.

Drawn with Pillow, as ``callbacks/render.py`` draws the run's pictures (no matplotlib); a pure
function of numbers to an ``(H, W, 3)`` uint8 array for ``SummaryWriter.add_image(..., dataformats="HWC")``.
"""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BLUE, ORANGE, GREY, BLACK, WHITE = (60, 110, 200), (235, 120, 20), (170, 170, 170), (30, 30, 30), (255, 255, 255)
#: The bar of an option indistinguishable from noise: a grey no anti-aliased text or blue edge makes.
NOISE = (165, 175, 190)


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
        if index in front:  # right of the dot, or left of it where the label would leave the frame
            fits = x + 6 + draw.textlength(labels[index], font=font) <= width - right
            draw.text(
                (x + 6 if fits else x - 6, y - 6), labels[index], fill=BLACK, font=font, anchor="lb" if fits else "rb"
            )
    return np.asarray(image)


def interval_bars(rows: Sequence[tuple[str, float, float, float]], title: str = "", width: int = 640) -> np.ndarray:
    """One bar per ``(label, estimate, low, high)`` from zero to the estimate, its interval as a whisker.

    A bar whose interval stays above zero is blue; one whose interval reaches zero is drawn in
    :data:`NOISE` grey and labelled "noise". Returns an ``(H, W, 3)`` uint8 array.

    >>> picture = interval_bars([("model.lr", 0.08, 0.02, 0.09), ("model.hidden_size", 0.0, -0.01, 0.01)])
    >>> picture.shape, bool((picture == BLUE).all(axis=2).any()), bool((picture == NOISE).all(axis=2).any())
    ((90, 640, 3), True, True)
    """
    font = ImageFont.load_default(size=12)
    row, top = 28, 30 if title else 8
    left = max(int(font.getlength(f"{label} (noise)")) for label, *_ in rows) + 16
    right = int(font.getlength("-0.000 [-0.000, -0.000]")) + 16
    image = Image.new("RGB", (width, top + row * len(rows) + 6 + 20), WHITE)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((8, 8), title, fill=BLACK, font=font)
    low = min(0.0, *(r[2] for r in rows))
    high = max(1e-12, *(max(r[1], r[3]) for r in rows))
    span = width - left - right

    def x(value: float) -> float:
        return left + (value - low) / (high - low) * span

    for i, (label, estimate, lower, upper) in enumerate(rows):
        y, noise = top + i * row, lower <= 0.0
        name = f"{label} (noise)" if noise else label
        draw.text((left - 8, y + row // 2), name, fill=BLACK, font=font, anchor="rm")
        end = x(estimate) if abs(x(estimate) - x(0)) >= 4 else x(0) + 4  # a bar near zero stays visible
        draw.rectangle((min(x(0), end), y + 6, max(x(0), end), y + row - 6), fill=NOISE if noise else BLUE)
        middle = y + row // 2
        draw.line((x(lower), middle, x(upper), middle), fill=BLACK, width=2)
        for end in (lower, upper):
            draw.line((x(end), middle - 6, x(end), middle + 6), fill=BLACK, width=2)
        text = f"{estimate:.3f} [{lower:.3f}, {upper:.3f}]"
        draw.text((width - right + 8, middle), text, fill=BLACK, font=font, anchor="lm")
    bottom = top + row * len(rows) + 2
    draw.line((x(0), top, x(0), bottom), fill=BLACK, width=1)
    draw.text((x(0), bottom + 2), "0", fill=BLACK, font=font, anchor="mt")
    return np.asarray(image)
