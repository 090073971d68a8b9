"""The shipped model, and the two files it is written as: ONNX (torch.onnx) and TorchScript (torch.jit).

:class:`ShippedModel` takes pictures as they are stored, pixel / 255, and computes inside what fmnist
does around the network: the tutorial's normalisation and the checkpoint's test-time augmentation.
Each :class:`Format` writes it (the libraries' own exporters) and loads a written file back into a
function from images to outputs, as its users will: onnxruntime, or ``torch.jit.load``.
"""

import contextlib
import importlib.util
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fmnist.augment import tta_views
from fmnist.data import MEAN, STD, VALUE_RANGE
from fmnist.errors import InputError
from fmnist.idx import IMAGE_SIDE
from fmnist.module import FashionMNISTClassifier

#: The input's name, and the outputs' (ONNX names them; TorchScript returns them in this order).
INPUT, OUTPUTS = "images", ("logits", "probabilities")
#: What the exported model reads: grayscale pixel / 255, a light garment on black as in Fashion-MNIST.
INPUT_SHAPE, INPUT_RANGE = ("batch", 1, IMAGE_SIDE, IMAGE_SIDE), (0.0, 1.0)
#: Outputs of one image and of the shipped model, as numpy arrays: (logits, probabilities).
Outputs = tuple[np.ndarray, np.ndarray]


class ShippedModel(nn.Module):
    """The checkpoint's network as fmnist evaluates it, from pixels in ``[0, 1]`` to logits and probabilities.

    ``images`` ``(N, 1, 28, 28)`` float32, each pixel its 8-bit value / 255. Inside: the tutorial's
    ``Normalize((0.5,), (0.5,))`` (:func:`fmnist.data.normalize`'s arithmetic), the network, and, when
    ``views`` are given, the softmax averaged over the image and those views, as
    :meth:`~fmnist.module.FashionMNISTClassifier.tta_probabilities` does. ``logits`` are the image's
    alone; ``probabilities``' argmax is the class ``predict`` gives.

    Args:
        classifier: a loaded checkpoint's module; its network (and memory format) is shared, not copied.
        views: test-time views (``shift``, ``flip``); empty: the plain softmax.
    """

    def __init__(self, classifier: FashionMNISTClassifier, views: list[str] | tuple[str, ...]) -> None:
        super().__init__()
        self.net = classifier.net
        self.memory_format = classifier.memory_format
        self.views = tuple(views)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = (images - MEAN) / STD
        logits = self.net(x.contiguous(memory_format=self.memory_format))
        if not self.views:
            return logits, logits.softmax(dim=1)
        views = self.net(tta_views(x, self.views, fill=VALUE_RANGE[0]).contiguous(memory_format=self.memory_format))
        probabilities = torch.cat([logits, views]).softmax(dim=1).unflatten(0, (-1, logits.shape[0])).mean(dim=0)
        return logits, probabilities


def _example() -> Tensor:
    # two images: torch.export specialises a dimension of size 1, and the batch must stay free
    return torch.zeros(2, 1, IMAGE_SIDE, IMAGE_SIDE)


def _write_onnx(model: ShippedModel, path: Path) -> None:
    # torch.onnx's default exporter since torch 2.9 (dynamo=True: torch.export, then onnxscript); the
    # TorchScript-based one is deprecated. One file (weights inside), the batch dimension left free.
    torch.onnx.export(
        model,
        (_example(),),
        str(path),
        dynamo=True,
        external_data=False,
        verbose=False,
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
    )


def _run_onnx(path: Path) -> Callable[[np.ndarray], Outputs]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda images: tuple(session.run(list(OUTPUTS), {INPUT: images}))  # type: ignore[return-value]


@contextlib.contextmanager
def torchscript_deprecation_silenced() -> Iterator[None]:
    """torch warns (FutureWarning; DeprecationWarning in 2.13) on every ``torch.jit.trace``, ``save`` and ``load``: TorchScript
    is deprecated in favour of torch.export. The command says so once, in its own words (:data:`TORCHSCRIPT_NOTE`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", r"`torch\.jit\.\w+` is deprecated"
        )  # Future- or DeprecationWarning, by release
        yield


TORCHSCRIPT_NOTE = (
    "note: PyTorch deprecates TorchScript (torch.jit) in favour of torch.export; the file loads with"
    " torch.jit.load while PyTorch keeps it. ONNX (--format onnx) is the format to keep."
)


def _write_torchscript(model: ShippedModel, path: Path) -> None:
    # traced, not scripted: the views are fixed when the model is built, and every shape but the batch is
    # fixed; the trace reads the batch size from the tensor, so any batch runs (the proof runs others)
    with torchscript_deprecation_silenced():
        torch.jit.save(torch.jit.trace(model, _example()), str(path))


def _run_torchscript(path: Path) -> Callable[[np.ndarray], Outputs]:
    with torchscript_deprecation_silenced():
        module = torch.jit.load(str(path), map_location="cpu")

    def run(images: np.ndarray) -> Outputs:
        with torch.inference_mode():
            logits, probabilities = module(torch.from_numpy(images))
        return logits.numpy(), probabilities.numpy()

    return run


@dataclass(frozen=True)
class Format:
    """One file format: its suffix, the packages it needs, how a model is written and a file run."""

    name: str
    suffix: str
    needs: tuple[str, ...]
    write: Callable[[ShippedModel, Path], None]
    run: Callable[[Path], Callable[[np.ndarray], Outputs]]
    #: what loads it, for the docs and the JSON
    loaded_by: str

    def check_installed(self) -> None:
        missing = [name for name in self.needs if importlib.util.find_spec(name) is None]
        if missing:
            raise InputError(
                f"export --format {self.name} needs {', '.join(self.needs)}; {', '.join(missing)} is not installed:"
                ' pip install -e ".[export]"'
            )


FORMATS = {
    "onnx": Format("onnx", ".onnx", ("onnx", "onnxscript", "onnxruntime"), _write_onnx, _run_onnx, "onnxruntime"),
    "torchscript": Format("torchscript", ".pt", (), _write_torchscript, _run_torchscript, "torch.jit.load"),
}
