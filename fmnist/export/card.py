"""The JSON beside an exported model: what it reads, what it answers, where it came from, and its proof.

Written as ``<model file>.json`` (``last.onnx.json``); ``tools/classify.py`` reads its class names
and its input. Every key is described in docs/export.md.
"""

import hashlib
import importlib.metadata
import inspect
import platform
from pathlib import Path
from typing import Any

from fmnist.export.proof import Proof
from fmnist.export.shipped import INPUT, INPUT_RANGE, INPUT_SHAPE, OUTPUTS, Format
from fmnist.idx import CLASS_NAMES
from fmnist.model import FashionCNN

#: How a picture becomes the input, in fmnist.pictures' order; tools/classify.py does it with numpy and Pillow.
PREPARATION = (
    "read as 8-bit grayscale (upright by EXIF, transparency on white); inverted when the median of the"
    " border is light (over 127); contrast stretched to 0..255; trimmed to the box of pixels more than 24"
    " gray levels from the border's median; resized (antialiased bilinear, torchvision's uint8 arithmetic)"
    " so that the longest edge is 28 pixels; padded with black to 28x28, centred; divided by 255"
)


def _output(name: str, meaning: str) -> dict[str, Any]:
    return {"name": name, "shape": ["batch", len(CLASS_NAMES)], "dtype": "float32", "meaning": meaning}


#: What every exported file reads and answers, whatever its checkpoint.
INTERFACE = {
    "input": {
        "name": INPUT,
        "shape": list(INPUT_SHAPE),
        "dtype": "float32",
        "range": list(INPUT_RANGE),
        "meaning": "grayscale pixel / 255; a light garment on black, as Fashion-MNIST's images are",
    },
    "outputs": [
        _output(OUTPUTS[0], "the network's logits for the image alone"),
        _output(
            OUTPUTS[1],
            "the softmax, averaged over the image and its test-time views when tta is not empty; its argmax"
            " is the predicted class, its largest value the confidence predict writes",
        ),
    ],
}
#: The packages whose versions made and checked the file.
PACKAGES = ("torch", "onnx", "onnxscript", "onnxruntime", "lightning", "fmnist")


def describe(
    fmt: Format,
    file: Path,
    views: list[str],
    checkpoint_path: Path,
    checkpoint: dict[str, Any],
    split_file: Path,
    logged: dict[str, float] | None,
    proof: Proof,
) -> dict[str, Any]:
    """The JSON document of an exported ``file``: see docs/export.md, "The JSON beside the model".

    ``logged``: what :func:`logged_test_accuracy` found; ``proof``: the file's, last so that the rest can be
    given before the file is written and proven.
    """
    hparams = checkpoint.get("hyper_parameters") or {}
    network = {key: hparams[key] for key in inspect.signature(FashionCNN).parameters if key in hparams}
    return {
        "format": fmt.name,
        "file": file.name,
        "loaded_by": fmt.loaded_by,
        "class_names": list(CLASS_NAMES),
        **INTERFACE,
        "inside": {
            "normalisation": "(x - 0.5) / 0.5, the tutorial's Normalize((0.5,), (0.5,))",
            "tta": views,
        },
        "preprocessing": PREPARATION,
        "test_accuracy": {
            "exported": proof.accuracy,
            "checkpoint": proof.checkpoint_accuracy,
            "images": proof.images,
            "split": str(split_file),
            "logged_by_the_run": logged,
        },
        "proof": {
            "predicted_classes_differing": proof.differing,
            "largest_difference": proof.largest,
            "tolerance": proof.tolerance,
            "arithmetic": "float32, on CPU",
        },
        "checkpoint": {
            "path": str(checkpoint_path.resolve()),
            "sha256": sha256(checkpoint_path),
            "epoch": checkpoint.get("epoch"),
            "global_step": checkpoint.get("global_step"),
            "network": network,
        },
        "versions": {**{name: _version(name) for name in PACKAGES}, "python": platform.python_version()},
    }


def logged_test_accuracy(run_dir: Path | None, step: int | None) -> dict[str, float] | None:
    """The test accuracies the run logged at the checkpoint's step (``Accuracy/test``, ``Accuracy/test_tta``), if any.

    ``test`` logs at the step of the checkpoint it tests, and fit's test after training at its last step,
    which is ``last.ckpt``'s: a value at another step belongs to another checkpoint. The run may have
    tested in bf16-mixed, where the export proves float32.
    """
    if run_dir is None or step is None:
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    found = {}
    for tag in set(events.Tags()["scalars"]) & {"Accuracy/test", "Accuracy/test_tta"}:
        values = [event.value for event in events.Scalars(tag) if event.step == step]
        if values:
            found[tag] = round(float(values[-1]), 6)
    return dict(sorted(found.items())) or None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
