"""The proof that an exported file is its checkpoint: both run on the official test split, compared image by image.

The checkpoint runs as ``test`` and ``predict`` run it (:meth:`FashionMNISTClassifier.tta_probabilities`
on :func:`fmnist.data.normalize`'s inputs), in float32; the file runs as its users will run it, on
the same pixels / 255. Equal means: the same predicted class for every image, and no output farther
from the checkpoint's than :data:`TOLERANCE` (or ``--tolerance``).
"""

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from fmnist import idx
from fmnist.data import FashionMNISTDataModule, normalize
from fmnist.export.shipped import OUTPUTS, Outputs
from fmnist.module import FashionMNISTClassifier

#: The largest absolute difference allowed between the file's outputs and the checkpoint's, logits and
#: probabilities alike. float32 kernels that add in another order differ by ~1e-6 on logits of size ~10.
TOLERANCE = 1e-4
#: Images per batch of the proof: memory stays small, and both sides see the same batches.
BATCH = 500


@dataclass(frozen=True)
class TestSplit:
    """The official test split as stored: uint8 images ``(N, 28, 28)``, labels, and the images' file."""

    images: Tensor
    labels: Tensor
    file: Path

    @classmethod
    def found_by(cls, data: dict) -> "TestSplit":
        """The test split ``test`` would read with these ``--data.*`` options: found, or downloaded when allowed."""
        datamodule = FashionMNISTDataModule(**data)
        datamodule.prepare_data()
        files = idx.locate(datamodule.data_dir)
        assert files is not None, "prepare_data found or fetched the files"
        images, labels = idx.load_split(files["test"])
        return cls(images, labels, files["test"].images)

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.labels), BATCH):
            yield self.images[start : start + BATCH], self.labels[start : start + BATCH]


@dataclass(frozen=True)
class Proof:
    """How the file's answers compare with the checkpoint's on ``images`` test images."""

    images: int
    accuracy: float  # of the file's predicted classes
    checkpoint_accuracy: float
    differing: int  # images whose predicted class differs
    largest: dict[str, float]  # output name -> largest absolute difference
    tolerance: float

    @property
    def equal(self) -> bool:
        return self.differing == 0 and max(self.largest.values()) <= self.tolerance

    def line(self, split: Path) -> str:
        differences = ", ".join(f"{name} {value:.1e}" for name, value in self.largest.items())
        return (
            f"proof on the {self.images} test images of {split}: accuracy {self.accuracy:.4f} exported,"
            f" {self.checkpoint_accuracy:.4f} checkpoint; {self.differing} predicted classes differ;"
            f" largest difference: {differences} (tolerance {self.tolerance:.0e})"
        )


def prove(
    classifier: FashionMNISTClassifier, run: Callable[[np.ndarray], Outputs], split: TestSplit, tolerance: float
) -> Proof:
    """Run the checkpoint's ``classifier`` and the file (``run``) on every image of ``split`` and compare."""
    classifier.eval()
    right = checkpoint_right = differing = 0
    largest = dict.fromkeys(OUTPUTS, 0.0)
    with torch.inference_mode():
        for images, labels in split.batches():
            expected = [t.numpy() for t in classifier.tta_probabilities(normalize(images))]
            got = run(images.unsqueeze(1).float().div(255).numpy())
            for name, want, have in zip(OUTPUTS, expected, got):
                difference = float(np.abs(want - have).max())  # NaN where either is NaN: infinitely far
                largest[name] = max(largest[name], math.inf if math.isnan(difference) else difference)
            predicted, checkpoint_predicted = got[1].argmax(axis=1), expected[1].argmax(axis=1)
            right += int((predicted == labels.numpy()).sum())
            checkpoint_right += int((checkpoint_predicted == labels.numpy()).sum())
            differing += int((predicted != checkpoint_predicted).sum())
    count = len(split.labels)
    return Proof(count, right / count, checkpoint_right / count, differing, largest, tolerance)
