"""Training-time augmentation of whole batches of image tensors, on the device they are on.

Used by :class:`fmnist.data.FashionMNISTDataModule` (``--data.augment_shift 2 --data.augment_flip true``)
in ``on_after_batch_transfer``, so on a GPU it runs there, once per batch, with no per-image work.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RandomShiftFlip(nn.Module):
    """Shift each image by a random number of pixels and flip it left-right with probability 1/2.

    Each image of a batch ``(N, C, H, W)`` draws its own vertical and horizontal shift in
    ``[-shift, shift]``: the batch is padded by ``shift`` pixels of ``fill`` on every side and each
    image cut back to ``H x W`` at its own offset (the random crop with padding of the CIFAR and
    Fashion-MNIST recipes). Random numbers come from torch's global generator on the batch's device,
    so ``seed_everything`` makes runs repeatable.

    Written here rather than taken from torchvision because ``transforms.v2.RandomCrop`` and
    ``RandomHorizontalFlip`` draw one set of parameters per call: a batch would get one shift
    for all its images.

    Args:
        shift: the largest shift in pixels, in each direction; ``0`` does not shift.
        flip: flip half of the images left-right (Fashion-MNIST's clothes are roughly symmetric).
        fill: the value of the pixels shifted in: the normalised value of a black pixel.

    Example::

        >>> augment = RandomShiftFlip(shift=2, flip=True, fill=-1.0)
        >>> augment(torch.zeros(8, 1, 28, 28)).shape
        torch.Size([8, 1, 28, 28])
    """

    def __init__(self, shift: int = 0, flip: bool = False, fill: float = 0.0) -> None:
        super().__init__()
        if shift < 0:
            raise ValueError(f"RandomShiftFlip: shift must be >= 0 pixels, got {shift}")
        self.shift = shift
        self.flip = flip
        self.fill = fill

    def forward(self, images: Tensor) -> Tensor:
        if self.shift:
            images = self._shift(images)
        if self.flip:
            flipped = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flipped, images.flip(-1), images)
        return images

    def _shift(self, images: Tensor) -> Tensor:
        n, c, h, w = images.shape
        s = self.shift
        padded = F.pad(images, (s, s, s, s), value=self.fill)
        # per image: the first row and column of its window in the padded batch, 0 .. 2s
        top, left = torch.randint(0, 2 * s + 1, (2, n, 1, 1, 1), device=images.device)
        rows = top + torch.arange(h, device=images.device).view(1, 1, h, 1)
        cols = left + torch.arange(w, device=images.device).view(1, 1, 1, w)
        cut_rows = padded.gather(2, rows.expand(n, c, h, w + 2 * s))
        return cut_rows.gather(3, cols.expand(n, c, h, w))

    def extra_repr(self) -> str:
        return f"shift={self.shift}, flip={self.flip}, fill={self.fill}"


def tta_views(images: Tensor, views: "tuple[str, ...] | list[str]", fill: float = 0.0) -> Tensor:
    """The test-time views of a batch, ``(V * N, C, H, W)``, view by view, the batch itself not included.

    ``shift`` gives the images moved by one pixel up, down, left and right (``fill`` comes in);
    ``flip`` gives their left-right mirror. Deterministic, on the batch's device, one tensor for
    all views so that the network runs once over them.

    >>> batch = torch.arange(9.0).view(1, 1, 3, 3)
    >>> out = tta_views(batch, ["shift", "flip"], fill=-1.0)
    >>> out.shape
    torch.Size([5, 1, 3, 3])
    >>> out[0, 0].tolist()  # moved up by one pixel: the bottom row is filled
    [[3.0, 4.0, 5.0], [6.0, 7.0, 8.0], [-1.0, -1.0, -1.0]]
    >>> out[4, 0, 0].tolist()  # mirrored left-right
    [2.0, 1.0, 0.0]
    """
    out = []
    if "shift" in views:
        h, w = images.shape[-2:]
        padded = F.pad(images, (1, 1, 1, 1), value=fill)
        # (row, column) of the window in the padded image: up, down, left, right
        out += [padded[..., r : r + h, c : c + w] for r, c in ((2, 1), (0, 1), (1, 2), (1, 0))]
    if "flip" in views:
        out.append(images.flip(-1))
    return torch.cat(out)
