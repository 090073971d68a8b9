"""Your own pictures, prepared the way Fashion-MNIST was made, for ``predict``.

``python -m fmnist predict --ckpt_path best --data.predict_path photos/`` (a folder, a glob such
as ``'photos/*.jpg'``, or one file). Fashion-MNIST's own recipe (its README): trim the edges that
have the background's colour, fit the longest edge into 28 pixels, centre on a 28x28 canvas,
negate (Zalando's product photos are on white; Fashion-MNIST is light on black), grayscale.
Here the negation happens only when the picture's border is light, so pictures that are already
light on dark stay as they are, and the contrast is stretched to the full range.
"""

import glob
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as F
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from fmnist.errors import InputError
from fmnist.idx import IMAGE_SIDE

#: Pixels closer than this to the background (0..255) count as background when trimming; Fashion-MNIST
#: used 5% of the intensity range, a little more here absorbs JPEG noise around the garment.
TRIM_TOLERANCE = 24


class PictureDataset(Dataset):
    """Prepared pictures and their file names; items are ``{"image": (1, 28, 28), "file": str}``."""

    def __init__(self, images: Tensor, files: Sequence[str]) -> None:
        self.images, self.files = images, list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        return {"image": self.images[index], "file": self.files[index]}


def find(path: str) -> list[Path]:
    """The files ``path`` names: a file, the files of a folder (not its subfolders), or a glob's matches."""
    if any(char in path for char in "*?["):
        found = [Path(p) for p in glob.glob(path, recursive=True)]
        what = "matches"
    elif Path(path).is_dir():
        found = list(Path(path).iterdir())
        what = "holds"
    elif Path(path).exists():
        return [Path(path)]
    else:
        raise InputError(f"data.predict_path {path}: no such file or folder")
    files = sorted(p for p in found if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"data.predict_path {path} {what} no files")
    return files


def load(path: str, mean: float = 0.5, std: float = 0.5) -> tuple[PictureDataset, list[Path]]:
    """Prepare every picture ``path`` names, normalised with ``mean`` and ``std`` as the training
    images are; returns them and the files that are not pictures (or broken ones)."""
    images, names, skipped = [], [], []
    for file in find(path):
        try:
            images.append(prepare(read(file), mean, std))
            names.append(str(file))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            skipped.append(file)  # Pillow's errors for files that are not, or no longer, pictures; too thin ones
    if not images:
        raise InputError(f"data.predict_path {path}: none of its {len(skipped)} files is a picture Pillow can read")
    return PictureDataset(torch.stack(images), names), skipped


def read(file: Path) -> Image.Image:
    """A picture as 8-bit grayscale, upright, transparent parts white (the colour of a product photo)."""
    with Image.open(file) as picture:
        picture = ImageOps.exif_transpose(picture)  # phone photos store their rotation in EXIF
        if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
            picture = picture.convert("RGBA")
            canvas = Image.new("RGBA", picture.size, "white")
            picture = Image.alpha_composite(canvas, picture)
        return picture.convert("L")


def prepare(picture: Image.Image, mean: float = 0.5, std: float = 0.5) -> Tensor:
    """A grayscale picture as a normalised ``(1, 28, 28)`` model input: light garment on black."""
    image = F.pil_to_tensor(picture)  # (1, H, W) uint8
    if border(image).float().median() > 127:
        image = F.invert(image)
    # the full 0..255 range, as Fashion-MNIST's images have (99% reach 254 or 255): a dark or
    # coloured garment, whose gray is dim, becomes as bright as the training images' garments
    image = F.autocontrast(image)
    image = trim(image)
    height, width = image.shape[-2:]
    if min(height, width) * IMAGE_SIDE < max(height, width):  # resize would make its short edge 0 pixels
        raise ValueError(f"a {width}x{height} picture is too thin to keep a pixel across at {IMAGE_SIDE} pixels")
    image = F.resize(image, size=None, max_size=IMAGE_SIDE, antialias=True)  # longest edge 28, aspect kept
    image = F.center_crop(image, [IMAGE_SIDE, IMAGE_SIDE])  # pads the short edge with black, centred
    return F.to_dtype(image, torch.float32, scale=True).sub_(mean).div_(std)


def border(image: Tensor) -> Tensor:
    """The outermost ring of pixels of a ``(1, H, W)`` image."""
    return torch.cat([image[0, 0], image[0, -1], image[0, :, 0], image[0, :, -1]])


def trim(image: Tensor) -> Tensor:
    """Crop a dark-background ``(1, H, W)`` image to the box around what differs from its background."""
    background = border(image).median()
    mask = (image[0].int() - int(background)).abs() > TRIM_TOLERANCE
    if not mask.any():
        return image  # a blank picture: nothing to trim to
    rows, cols = mask.any(dim=1).nonzero(), mask.any(dim=0).nonzero()
    return image[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
