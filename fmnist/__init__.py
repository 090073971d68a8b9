"""fmnist: the TensorBoard-with-PyTorch Fashion-MNIST tutorial as a Lightning project."""

from fmnist.data import CLASS_NAMES, FashionMNISTDataModule
from fmnist.model import FashionCNN
from fmnist.module import FashionMNISTClassifier

__all__ = ["CLASS_NAMES", "FashionCNN", "FashionMNISTClassifier", "FashionMNISTDataModule"]
