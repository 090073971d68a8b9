"""Accuracy of ``predict --data.predict_path`` on pictures made from the test split, several ways.

    python -m benchmarks.predict_pictures runs/<run>/version_0/checkpoints/last.ckpt [--count 500]

Saves the first ``--count`` official test images as ordinary picture files (plain 28x28 PNG,
upscaled JPEG, light background, colour tint, non-square, a photo-like blue-on-white JPEG), runs
``python -m fmnist predict`` on each folder and prints the accuracy of each against the true labels.
"""

import argparse
import contextlib
import csv
import gzip
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist.idx import SYSTEM_DATA_DIR
from fmnist.main import main

WAYS = {
    "plain 28x28 PNG": ("png", lambda x: Image.fromarray(x)),
    "upscaled 112x112 JPEG": ("jpg", lambda x: Image.fromarray(x).resize((112, 112), Image.BICUBIC)),
    "light background PNG": ("png", lambda x: Image.fromarray(255 - x)),
    "orange colour tint PNG": ("png", lambda x: Image.fromarray((x[..., None] * [1.0, 0.55, 0.25]).astype(np.uint8))),
    "non-square 28x56 PNG": ("png", lambda x: Image.fromarray(np.pad(x, ((14, 14), (0, 0))))),
    "photo-like: blue on white, 112x112 in 140x112, JPEG": (
        "jpg",
        lambda x: Image.fromarray(
            np.pad(
                255 - (x[..., None] * [0.3, 0.6, 1.0]).astype(np.uint8), ((0, 0), (3, 4), (0, 0)), constant_values=255
            )
        ).resize((140, 112), Image.BICUBIC),
    ),
}


def read(name: str, offset: int) -> np.ndarray:
    return np.frombuffer(gzip.decompress((SYSTEM_DATA_DIR / name).read_bytes())[offset:], np.uint8)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--count", type=int, default=500, help="test images per way (default 500)")
    options = parser.parse_args()
    images = read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)[: options.count]
    labels = read("t10k-labels-idx1-ubyte.gz", 8)[: options.count]
    work = Path(tempfile.mkdtemp(prefix="fmnist-pictures-"))
    checkpoint = work / "model.ckpt"  # a copy outside its run folder: predict logs into runs of its own here
    shutil.copy(options.checkpoint, checkpoint)
    print(f"{options.count} official test images per way, checkpoint {options.checkpoint}")
    for way, (ext, make) in WAYS.items():
        folder = work / way.split()[0]
        folder.mkdir()
        for i, image in enumerate(images):
            make(image).save(folder / f"{i:05d}.{ext}")
        save_dir = work / f"runs-{folder.name}"
        args = ["predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(folder)]
        args += ["--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.enable_progress_bar", "false"]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            main(args)
        (table,) = save_dir.rglob("predictions.csv")
        with open(table) as file:
            predicted = {Path(row["file"]).stem: int(row["class_index"]) for row in csv.DictReader(file)}
        correct = sum(predicted[f"{i:05d}"] == label for i, label in enumerate(labels))
        print(f"  {way:<52} accuracy {correct / len(labels):.3f}")


if __name__ == "__main__":
    main_bench()
