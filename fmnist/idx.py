"""Finding and checking Fashion-MNIST's IDX files, offline first.

torchvision's own reader (``torchvision.datasets.mnist.read_image_file``) cannot open the
gzipped files that Debian's ``dataset-fashion-mnist`` ships and stops on bare ``assert``s that do
not name the file, so the few lines that check and decode the format live here.
"""

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets import FashionMNIST

from fmnist.errors import InputError

#: Where Debian's and Ubuntu's ``dataset-fashion-mnist`` package installs the files.
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
#: File-name prefix of each split, as published.
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
IMAGE_SIDE = 28
#: Class names in label order, as torchvision publishes them; their count is the number of classes.
CLASS_NAMES: tuple[str, ...] = tuple(FashionMNIST.classes)
_UNSIGNED_BYTE = 0x08


@dataclass(frozen=True)
class SplitFiles:
    """The images and labels files of one split."""

    images: Path
    labels: Path


def search_folders(data_dir: Path) -> tuple[Path, ...]:
    """The folders searched, in order: ``data_dir`` flat, torchvision's layout, the system copy."""
    return (data_dir, data_dir / "FashionMNIST" / "raw", SYSTEM_DATA_DIR)


def locate(data_dir: Path) -> dict[str, SplitFiles] | None:
    """Both splits' files from the first folder of :func:`search_folders` that holds all four."""
    for folder in search_folders(data_dir):
        splits = {}
        for split, prefix in SPLIT_PREFIXES.items():
            images = _find(folder, f"{prefix}-images-idx3-ubyte")
            labels = _find(folder, f"{prefix}-labels-idx1-ubyte")
            if images is None or labels is None:
                break
            splits[split] = SplitFiles(images, labels)
        else:
            return splits
    return None


def _find(folder: Path, name: str) -> Path | None:
    # the uncompressed file first: it is what torchvision's download leaves and it reads faster
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    return None


def read_idx(path: Path, ndim: int) -> Tensor:
    """Decode an IDX file of unsigned bytes with ``ndim`` dimensions (gzipped or not) into a tensor."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = bytearray(file.read())
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot be read ({err})") from err

    header_size = 4 * (1 + ndim)
    if len(data) < header_size:
        raise InputError(f"{path}: truncated: {len(data)} bytes is shorter than the IDX header")
    magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header_size])
    expected_magic = _UNSIGNED_BYTE << 8 | ndim
    if magic != expected_magic:
        raise InputError(
            f"{path}: not an IDX file of {ndim}-dimensional unsigned bytes "
            f"(magic number {magic:#010x}, expected {expected_magic:#010x})"
        )
    expected_size = header_size + math.prod(dims)
    if len(data) != expected_size:
        problem = "truncated" if len(data) < expected_size else "has trailing bytes"
        shape = "x".join(map(str, dims))
        raise InputError(
            f"{path}: {problem}: its header promises {shape} values ({expected_size} bytes), "
            f"the file holds {len(data)} bytes"
        )
    return torch.frombuffer(data, dtype=torch.uint8, offset=header_size).view(*dims)


def load_split(files: SplitFiles) -> tuple[Tensor, Tensor]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split, checked for agreement."""
    images = read_idx(files.images, ndim=3)
    labels = read_idx(files.labels, ndim=1)
    if tuple(images.shape[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        height, width = images.shape[1:]
        raise InputError(f"{files.images}: images are {height}x{width}, expected {IMAGE_SIDE}x{IMAGE_SIDE}")
    if len(images) != len(labels):
        raise InputError(f"{files.images} holds {len(images)} images but {files.labels} holds {len(labels)} labels")
    if len(labels) == 0:
        raise InputError(f"{files.labels}: holds no labels")
    bad = (labels >= len(CLASS_NAMES)).nonzero()
    if len(bad):
        index = int(bad[0])
        raise InputError(
            f"{files.labels}: label {int(labels[index])} at index {index} is outside 0-{len(CLASS_NAMES) - 1}"
        )
    return images, labels.long()
