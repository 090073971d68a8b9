"""``python -m fmnist export --ckpt_path best|last|FILE [--format onnx|torchscript]``: the model, shipped.

The network of a checkpoint, with its normalisation and its test-time augmentation inside
(:mod:`~fmnist.export.shipped`), written as ONNX or TorchScript with a JSON description beside
it (:mod:`~fmnist.export.card`), and proven to answer as the checkpoint does on the official test
split before it is kept (:mod:`~fmnist.export.proof`); the command is :mod:`~fmnist.export.command`.
``tools/classify.py`` serves the ONNX file with onnxruntime, numpy and Pillow alone. docs/export.md
says the rest.
"""
