"""Fashion-MNIST as a LightningDataModule: found offline first, decoded once, normalised in bulk.

Every ``__init__`` argument is a ``--data.*`` flag of ``python -m fmnist`` (``--data.batch_size 128``).
"""

import functools
from pathlib import Path
from typing import Any

import torch
from jsonargparse.typing import NonNegativeInt, PositiveInt
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.datasets import FashionMNIST

from fmnist import idx, pictures
from fmnist.augment import RandomShiftFlip
from fmnist.checkpoints import CheckedLoading
from fmnist.errors import InputError
from fmnist.idx import CLASS_NAMES

#: The tutorial's ``transforms.Normalize((0.5,), (0.5,))``.
MEAN, STD = 0.5, 0.5
#: What black (0) and white (1) pixels become after normalisation: ``(-1.0, 1.0)``.
VALUE_RANGE: tuple[float, float] = ((0 - MEAN) / STD, (1 - MEAN) / STD)


def normalize(images: Tensor) -> Tensor:
    """uint8 images ``(N, 28, 28)`` to float inputs ``(N, 1, 28, 28)``, as ToTensor + Normalize do.

    Black and white become the ends of ``VALUE_RANGE``:

    >>> normalize(torch.tensor([[[0, 255]]], dtype=torch.uint8)).flatten().tolist()
    [-1.0, 1.0]
    >>> VALUE_RANGE
    (-1.0, 1.0)
    """
    return images.unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)


#: A split's files as the shared datasets know them: (path, size, modification time) of the images, then the labels.
Stamp = tuple[tuple[str, int, int], ...]


def _stamp(files: idx.SplitFiles) -> Stamp:
    return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in (files.images, files.labels))


def _decode(stamp: Stamp) -> tuple[Tensor, Tensor]:
    images, labels = idx.load_split(idx.SplitFiles(Path(stamp[0][0]), Path(stamp[1][0])))
    return normalize(images), labels


class BatchedTensors(TensorDataset):
    """A ``TensorDataset`` that a ``DataLoader`` reads one batch at a time, with :func:`whole_batch` as its collate.

    The ``DataLoader`` hands ``__getitems__`` (torch's hook for reading a batch at once) the batch's
    indices: one gather per tensor, where a plain ``TensorDataset`` is read image by image and the
    images stacked again (``default_collate``). Same batches, in the same order, for the same seed;
    the tensors may live on the GPU (:meth:`FashionMNISTDataModule.setup`), the gather then too.

    >>> data = BatchedTensors(torch.arange(6).view(3, 2), torch.tensor([7, 8, 9]))
    >>> next(iter(DataLoader(data, batch_size=2, collate_fn=whole_batch)))
    (tensor([[0, 1],
            [2, 3]]), tensor([7, 8]))
    """

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, ...]:
        index = torch.as_tensor(indices, device=self.tensors[0].device)
        return tuple(tensor[index] for tensor in self.tensors)


def whole_batch(batch: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The ``collate_fn`` of a :class:`BatchedTensors` loader: its batch is whole already."""
    return batch


# The datasets are shared by every datamodule of this process that reads the same files with the same
# split, one of each kind at a time (maxsize=1: a new split replaces the last): a sweep's worker decodes
# and splits Fashion-MNIST once for all its trials, not 0.7 s and 190 MB for each. Nothing writes into
# them: batches are copies (a gather), normalisation happens here, augmentation on batches.
@functools.lru_cache(maxsize=1)
def _test_set(test: Stamp) -> TensorDataset:
    return BatchedTensors(*_decode(test))


@functools.lru_cache(maxsize=1)
def _train_and_val(train: Stamp, test: Stamp, val_size: int, split_seed: int) -> tuple[TensorDataset, TensorDataset]:
    images, labels = _decode(train)
    if val_size == 0:
        return BatchedTensors(images, labels), _test_set(test)
    if val_size >= len(images):
        raise InputError(
            f"data.val_size={val_size} leaves no training images: the training set holds "
            f"{len(images)}; choose fewer, or 0 to validate on the test split"
        )
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(len(images), generator=generator)
    val, train_part = order[:val_size], order[val_size:]
    return BatchedTensors(images[train_part], labels[train_part]), BatchedTensors(images[val], labels[val])


class FashionMNISTDataModule(CheckedLoading, LightningDataModule):
    """Fashion-MNIST, with a seeded validation split held out of the 60k training images.

    The files are searched, in order, in ``data_dir`` (gzipped or not, flat or in torchvision's
    ``FashionMNIST/raw/`` layout), in the system copy of Debian's ``dataset-fashion-mnist``
    (``/usr/share/datasets/fashion-mnist``), and last downloaded by torchvision into ``data_dir``.
    Images are decoded once into tensors and normalised like the tutorial in one bulk operation, so
    the training path does no per-image work. The datasets are shared by every datamodule of the
    process that reads the same files with the same split (a sweep's trials load them once).

    The attributes ``class_names`` and ``value_range`` (the normalised range of black..white) are
    what the callbacks in ``callbacks/`` read to label and draw the images.

    Args:
        data_dir: folder searched first and where a download goes.
        batch_size: images per batch, for every stage.
        num_workers: DataLoader worker processes; ``0`` gathers each batch from the in-memory
            tensors in the training process (on a GPU, from copies kept there), which is fastest when a
            batch is a gather from a tensor.
        val_size: training images held out for validation with a seeded split; ``0`` validates on
            the official 10k test split, as the tutorial does.
        download: let torchvision download the files when they are found nowhere.
        split_seed: seed of the train/validation split, independent of the training seed.
        predict_path: pictures for ``predict`` (a folder, a glob or one file, any size, gray or
            colour, dark or light background), prepared like Fashion-MNIST (see
            :mod:`fmnist.pictures`); ``None``: ``predict`` classifies the test split.
        augment_shift: shift each training image by up to this many pixels in each direction
            (padding with black); ``0``: no shift.
        augment_flip: flip half of the training images left-right.

    Training batches are augmented (``augment_shift``, ``augment_flip``) in ``on_after_batch_transfer``,
    on the device the model trains on, by :class:`~fmnist.augment.RandomShiftFlip`; validation,
    test and prediction batches never are.

    Example::

        python -m fmnist fit --data.batch_size 128 --data.val_size 0
        python -m fmnist fit --data.augment_shift 2 --data.augment_flip true
        python -m fmnist predict --ckpt_path best --data.predict_path 'photos/*.jpg'
    """

    class_names: tuple[str, ...] = CLASS_NAMES
    value_range: tuple[float, float] = VALUE_RANGE

    def __init__(
        self,
        data_dir: str = "./data",
        batch_size: PositiveInt = 64,
        num_workers: NonNegativeInt = 0,
        val_size: NonNegativeInt = 5000,
        download: bool = True,
        split_seed: int = 42,
        predict_path: str | None = None,
        augment_shift: NonNegativeInt = 0,
        augment_flip: bool = False,
    ) -> None:
        super().__init__()
        # not a hyperparameter: the pictures predict reads, set per command (the HParams table compares fits)
        self.save_hyperparameters(ignore="predict_path")
        self.predict_path = predict_path
        self.data_dir = Path(data_dir).expanduser()
        self.augment = (  # shifted-in pixels are black: VALUE_RANGE[0] after normalisation
            RandomShiftFlip(augment_shift, augment_flip, fill=VALUE_RANGE[0]) if augment_shift or augment_flip else None
        )
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None
        self.predict_set: Dataset | None = None

    def prepare_data(self) -> None:
        """Make the files available: find them, or download them when allowed."""
        if self.predict_path and self.trainer is not None and self.trainer.state.fn == "predict":
            return  # predicting on the user's own pictures needs no dataset
        self._check_data_dir()
        if idx.locate(self.data_dir) is not None:
            return
        if not self.hparams.download:
            raise InputError(self._not_found("downloading is off (--data.download false)"))
        try:
            for train in (True, False):
                FashionMNIST(str(self.data_dir), train=train, download=True)
        except Exception as err:  # torchvision raises RuntimeError, URLError, OSError... per mirror
            raise InputError(self._not_found(f"the download failed: {err}")) from err

    def setup(self, stage: str) -> None:
        """Decode and split what ``stage`` needs; calling it again reuses what is decoded."""
        if stage == "predict" and self.predict_path:
            self._setup_pictures(self.predict_path)
            return
        self._check_data_dir()
        files = idx.locate(self.data_dir)
        if files is None:
            raise InputError(self._not_found("prepare_data did not run or could not fetch them"))
        if stage in ("fit", "validate") and self.val_set is None:
            self.train_set, self.val_set = _train_and_val(
                _stamp(files["train"]), _stamp(files["test"]), self.hparams.val_size, self.hparams.split_seed
            )
        if stage in ("test", "predict") and self.test_set is None:
            self.test_set = _test_set(_stamp(files["test"]))
        if self._keeps_data_on_device():  # the splits are small next to a GPU's memory: no batch is copied there
            self.train_set, self.val_set = self._on_device(self.train_set), self._on_device(self.val_set)
            self.test_set = self._on_device(self.test_set)
        if stage == "predict":
            self.predict_set = self.test_set

    def _on_device(self, dataset: TensorDataset | None) -> TensorDataset | None:
        """``dataset``'s tensors on the training device (itself when they are there already, or not tensors)."""
        device = self.trainer.strategy.root_device
        if not isinstance(dataset, BatchedTensors) or dataset.tensors[0].device == device:
            return dataset
        return BatchedTensors(*(tensor.to(device) for tensor in dataset.tensors))

    def _keeps_data_on_device(self) -> bool:
        """On a GPU, with no loader workers: the splits are moved there once, and batches gathered there."""
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return on_cuda and self.hparams.num_workers == 0

    def _setup_pictures(self, path: str) -> None:
        if self.predict_set is not None:
            return
        self.predict_set, skipped = pictures.load(path, MEAN, STD)
        if skipped:
            rank_zero_warn(
                f"data.predict_path: left out {len(skipped)} files that are not pictures, are broken or are too thin: "
                + ", ".join(str(file) for file in skipped)
            )

    def _check_data_dir(self) -> None:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise InputError(f"data.data_dir {self.data_dir} is a file, not a folder")

    def _not_found(self, reason: str) -> str:
        folder, raw, system = idx.search_folders(self.data_dir)
        names = ", ".join(
            f"{prefix}-{kind}-ubyte[.gz]"
            for prefix in idx.SPLIT_PREFIXES.values()
            for kind in ("images-idx3", "labels-idx1")
        )
        return (
            f"Fashion-MNIST was not found and {reason}. Provide it in one of three ways:\n"
            f"  1. put {names} in {folder} or {raw};\n"
            f"  2. install Debian's or Ubuntu's copy into {system}: apt-get install dataset-fashion-mnist;\n"
            f"  3. let torchvision download them into {folder}: --data.download true (needs internet)."
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment training batches, already on the training device."""
        # Lightning's model summary also sends example_input_array (a bare tensor) through this hook
        # while fitting: only (images, labels) batches of the training loop are augmented
        if self.augment is None or self.trainer is None or not self.trainer.training or isinstance(batch, Tensor):
            return batch
        images, labels = batch
        return self.augment(images), labels

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set)

    def _loader(self, dataset: Dataset | None, shuffle: bool = False) -> DataLoader:
        assert dataset is not None, "setup() has not run for this stage"
        workers = self.hparams.num_workers
        on_cuda = self.trainer is not None and self.trainer.strategy.root_device.type == "cuda"
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=whole_batch if isinstance(dataset, BatchedTensors) else None,
            persistent_workers=workers > 0,
            pin_memory=on_cuda and not self._keeps_data_on_device(),  # tensors already on the GPU cannot be pinned
        )
