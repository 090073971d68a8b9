"""Classify your pictures with a model ``python -m fmnist export`` wrote, without fmnist, Lightning or torch.

    python tools/classify.py runs/<run>/version_0/export/last.onnx photos/ > predictions.csv

ONNX files run in onnxruntime with numpy and Pillow alone (``pip install onnxruntime numpy pillow``);
a TorchScript file (``.pt``) runs with ``torch.jit.load``. The class names come from the JSON beside
the model. Each picture (a file, a folder's files, or a glob, as ``--data.predict_path`` takes them)
is prepared as ``python -m fmnist predict`` prepares it (fmnist/pictures.py), to the same pixels, and
the CSV printed has the columns of predict's ``predictions.csv``. Copy this file beside the model:
it imports nothing from fmnist.
"""

import argparse
import csv
import glob
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

SIDE = 28  # Fashion-MNIST's images are 28x28
TRIM_TOLERANCE = 24  # gray levels from the border's median that still count as background
COLUMNS = ("index", "file", "class_index", "class_name", "confidence")


class Unusable(Exception):
    """A model or pictures argument that cannot be used; the message says which and why."""


def find(path: str) -> list[Path]:
    """The files ``path`` names: a file, the files of a folder (not its subfolders, not hidden ones), or a glob's."""
    if any(char in path for char in "*?["):
        found, what = [Path(p) for p in glob.glob(path, recursive=True)], "matches"
    elif Path(path).is_dir():
        found, what = list(Path(path).iterdir()), "holds"
    elif Path(path).exists():
        return [Path(path)]
    else:
        raise Unusable(f"{path}: no such file or folder")
    files = sorted(p for p in found if p.is_file() and not p.name.startswith("."))
    if not files:
        raise Unusable(f"{path} {what} no files")
    return files


def read(file: Path) -> np.ndarray:
    """A picture as 8-bit grayscale ``(H, W)``, upright, transparent parts white (a product photo's background)."""
    with Image.open(file) as picture:
        picture = ImageOps.exif_transpose(picture)
        if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
            picture = picture.convert("RGBA")
            picture = Image.alpha_composite(Image.new("RGBA", picture.size, "white"), picture)
        return np.asarray(picture.convert("L"))


def prepare(gray: np.ndarray) -> np.ndarray:
    """A grayscale picture as the model's input ``(1, 28, 28)`` float32 in [0, 1]: a light garment on black.

    torchvision's steps in fmnist/pictures.py, in numpy with the same arithmetic (its float32
    contrast stretch, its uint8 antialiased resize), so that the pixels come out the same.
    """
    image = gray
    if _lower_median(_border(image)) > 127:  # a light background: negate, as Fashion-MNIST was made
        image = 255 - image
    image = _stretch_contrast(image)
    image = _trim(image)
    image = _fit(image, SIDE)
    return (image.astype(np.float32) * np.float32(1.0 / 255))[None]


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _lower_median(values: np.ndarray) -> int:
    return int(np.sort(values)[(len(values) - 1) // 2])  # torch.median's: the lower of the middle two


def _stretch_contrast(image: np.ndarray) -> np.ndarray:
    low, high = np.float32(image.min()), np.float32(image.max())
    if low == high:
        low, scale = np.float32(0), np.float32(1)
    else:
        scale = (high - low) * np.float32(1.0 / 255)
    return np.clip((image.astype(np.float32) - low) / scale, 0, 255).astype(np.uint8)


def _trim(image: np.ndarray) -> np.ndarray:
    mask = np.abs(image.astype(np.int32) - _lower_median(_border(image))) > TRIM_TOLERANCE
    if not mask.any():
        return image  # a blank picture: nothing to trim to
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so that the longest edge is ``side`` (aspect kept), then pad with black to ``side`` x ``side``, centred."""
    height, width = image.shape
    short, long = sorted((height, width))
    new_short = int(side * short / long)
    if new_short == 0:
        raise ValueError(f"a {width}x{height} picture is too thin to keep a pixel across at {side} pixels")
    size = (side, new_short) if width <= height else (new_short, side)
    image = _resample(_resample(image, size[1], axis=1), size[0], axis=0)
    top, left = (side - size[0]) // 2, (side - size[1]) // 2
    return np.pad(image, ((top, side - size[0] - top), (left, side - size[1] - left)))


def _resample(image: np.ndarray, size: int, axis: int) -> np.ndarray:
    """torch's uint8 antialiased bilinear resampling along one axis (PIL's support, int16 weights, rounding)."""
    length = image.shape[axis]
    if length == size:
        return image
    scale = length / size
    support, invscale = (scale, 1.0 / scale) if scale >= 1.0 else (1.0, 1.0)  # the triangle, stretched to shrink
    taps = math.ceil(support) * 2 + 1
    weights, starts = np.zeros((size, taps)), np.zeros(size, np.int64)
    for i in range(size):
        center = scale * (i + 0.5)
        start = max(int(center - support + 0.5), 0)
        count = min(max(min(int(center + support + 0.5), length) - start, 0), taps)
        row = [max(0.0, 1.0 - abs((j + start - center + 0.5) * invscale)) for j in range(count)]
        total = sum(row)  # in order, as torch adds them
        starts[i], weights[i, :count] = start, [w / total for w in row] if total else row
    precision = 0  # the most bits for which the largest weight still fits an int16
    while precision < 22 and int(0.5 + weights.max() * (1 << (precision + 1))) < 1 << 15:
        precision += 1
    fixed = np.trunc(weights * (1 << precision) + 0.5).astype(np.int64)  # weights are >= 0
    moved = np.moveaxis(image.astype(np.int64), axis, 0)
    padded = np.concatenate([moved, np.zeros((taps, *moved.shape[1:]), np.int64)])
    total = (padded[starts[:, None] + np.arange(taps)] * fixed[:, :, None]).sum(axis=1) + (1 << (precision - 1))
    return np.moveaxis(np.clip(total >> precision, 0, 255).astype(np.uint8), 0, axis)


def load(model: Path) -> tuple[Callable[[np.ndarray], np.ndarray], list[str]]:
    """The model as a function from inputs to probabilities, and its class names (from ``<model>.json``)."""
    card = json.loads(Path(f"{model}.json").read_text())
    if model.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return lambda images: session.run(["probabilities"], {card["input"]["name"]: images})[0], card["class_names"]
    import torch  # TorchScript: torch, not Lightning

    with warnings.catch_warnings():  # torch 2.10+ deprecates TorchScript on every load (docs/export.md)
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.\w+` is deprecated"
        )  # Future- or DeprecationWarning, by release
        module = torch.jit.load(str(model), map_location="cpu")

    def run(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(images))[1].numpy()

    return run, card["class_names"]


def classify(model: Path, pictures: str, out: csv.writer) -> list[Path]:
    """Write one CSV row per picture; returns the files left out (not pictures, or broken)."""
    images, files, left_out = [], [], []
    for file in find(pictures):
        try:
            images.append(prepare(read(file)))
            files.append(file)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            left_out.append(file)
    if not images:
        raise Unusable(f"{pictures}: none of its {len(left_out)} files is a picture Pillow can read")
    run, class_names = load(model)
    out.writerow(COLUMNS)
    for start in range(0, len(images), 256):
        probabilities = run(np.stack(images[start : start + 256]))
        for offset, row in enumerate(probabilities):
            index = start + offset
            best = int(row.argmax())
            out.writerow([index, str(files[index]), best, class_names[best], f"{float(row[best]):.4f}"])
    return left_out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python tools/classify.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an exported .onnx or .pt file, its .json beside it")
    parser.add_argument("pictures", help="a picture, a folder of pictures, or a glob such as 'photos/*.jpg'")
    args = parser.parse_args(argv)
    try:
        for file in (args.model, Path(f"{args.model}.json")):
            if not file.is_file():
                raise Unusable(f"{file}: no such file (python -m fmnist export writes the model and its .json)")
        # predict's dialect (csv's default), so that the output and predictions.csv compare byte for byte
        left_out = classify(args.model, args.pictures, csv.writer(sys.stdout))
        sys.stdout.flush()
    except Unusable as err:  # one line and status 2, as fmnist's own mistakes
        parser.exit(2, f"classify: error: {err}\n")
    except BrokenPipeError:  # `| head`: the reader has what it wanted (the Python docs' recipe for SIGPIPE)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None
    if left_out:
        files = ", ".join(map(str, left_out))
        print(
            f"classify: left out {len(left_out)} files that are not pictures, are broken or are too thin: {files}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
