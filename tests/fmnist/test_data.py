"""Finding, checking and splitting Fashion-MNIST: every way a user can provide it or get it wrong."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fmnist import idx
from fmnist.data import FashionMNISTDataModule, whole_batch
from fmnist.errors import InputError
from tests.helpers import write_dataset, write_idx


def setup_fit(data_dir: Path, **kwargs) -> FashionMNISTDataModule:
    datamodule = FashionMNISTDataModule(str(data_dir), download=False, **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw"], ids=["flat", "torchvision"])
def test_reads_every_layout(tmp_path: Path, compress: bool, layout: str) -> None:
    write_dataset(tmp_path / "data" / layout, train=300, test=100, compress=compress)
    datamodule = setup_fit(tmp_path / "data", val_size=50)
    assert len(datamodule.train_set) == 250 and len(datamodule.val_set) == 50
    images, labels = datamodule.train_set.tensors
    assert images.shape == (250, 1, 28, 28) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and labels.min() >= 0 and labels.max() <= 9


def test_system_copy_is_used_when_data_dir_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = write_dataset(tmp_path / "usr-share", compress=True)
    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", system)
    files = idx.locate(tmp_path / "empty")
    assert files["train"].images == system / "train-images-idx3-ubyte.gz"


def test_data_dir_wins_over_system_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", write_dataset(tmp_path / "usr-share"))
    mine = write_dataset(tmp_path / "mine")
    assert idx.locate(mine)["test"].labels == mine / "t10k-labels-idx1-ubyte"


def test_normalised_like_the_tutorial(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write_dataset(folder, train=20, test=10)
    pixels = np.zeros((20, 28, 28), np.uint8)
    pixels[:, 0, 0], pixels[:, 0, 1] = 255, 51
    write_idx(folder / "train-images-idx3-ubyte", pixels)
    images, _ = setup_fit(folder, val_size=0).train_set.tensors
    # ToTensor() then Normalize((0.5,), (0.5,)): 0 -> -1, 255 -> 1, 51 -> -0.6
    assert images[0, 0, 0, :3].tolist() == pytest.approx([1.0, -0.6, -1.0])


def test_split_is_seeded_and_disjoint(data_dir: Path) -> None:
    first, again = setup_fit(data_dir, val_size=64), setup_fit(data_dir, val_size=64)
    other = setup_fit(data_dir, val_size=64, split_seed=7)
    val = first.val_set.tensors[0]
    assert torch.equal(val, again.val_set.tensors[0])
    assert not torch.equal(val, other.val_set.tensors[0])
    train = first.train_set.tensors[0].flatten(1)
    overlap = (val.flatten(1)[:, None, :] == train[None, :, :]).all(-1).any()
    assert not overlap and len(train) + len(val) == 384


def test_val_size_zero_validates_on_the_test_split(data_dir: Path) -> None:
    datamodule = setup_fit(data_dir, val_size=0)
    assert len(datamodule.train_set) == 384 and len(datamodule.val_set) == 128
    datamodule.setup("test")
    assert torch.equal(datamodule.val_set.tensors[0], datamodule.test_set.tensors[0])


def test_setup_twice_reuses_the_decoded_tensors(data_dir: Path) -> None:
    datamodule = setup_fit(data_dir, val_size=64)
    train = datamodule.train_set
    datamodule.setup("fit")
    datamodule.setup("validate")
    assert datamodule.train_set is train


def test_batches(data_dir: Path) -> None:
    datamodule = setup_fit(data_dir, batch_size=50, val_size=64)
    x, y = next(iter(datamodule.train_dataloader()))
    assert x.shape == (50, 1, 28, 28) and y.shape == (50,)
    assert sum(len(y) for _, y in datamodule.val_dataloader()) == 64


def test_batches_are_gathered_whole_and_are_those_of_a_plain_loader(data_dir: Path) -> None:
    """One gather a batch (BatchedTensors), yet the batches a plain TensorDataset loader gives for the same seed."""
    datamodule = setup_fit(data_dir, batch_size=50, val_size=64)
    plain = TensorDataset(*datamodule.train_set.tensors)
    torch.manual_seed(3)
    gathered = list(datamodule.train_dataloader())
    torch.manual_seed(3)
    stacked = list(DataLoader(plain, batch_size=50, shuffle=True))
    assert len(gathered) == len(stacked) == 7  # 384 - 64 = 320 training images: 6 batches of 50, one of 20
    for (x, y), (x_plain, y_plain) in zip(gathered, stacked):
        assert torch.equal(x, x_plain) and torch.equal(y, y_plain)
    assert datamodule.train_dataloader().collate_fn is whole_batch  # the images were not stacked one by one


def test_loader_workers_gather_the_same_batches(data_dir: Path) -> None:
    """``--data.num_workers 2``: the datasets and their collate go to worker processes and give the same batches."""
    batches = []
    for workers in (0, 2):
        datamodule = setup_fit(data_dir, batch_size=50, val_size=64, num_workers=workers)
        batches.append(list(datamodule.val_dataloader()))
    assert len(batches[0]) == len(batches[1]) == 2
    for (x, y), (x_workers, y_workers) in zip(*batches):
        assert torch.equal(x, x_workers) and torch.equal(y, y_workers)


# --- every data error names the file and the problem -----------------------------------------


def corrupt(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("train-images-idx3-ubyte", lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
        ("train-images-idx3-ubyte", lambda p: p.write_bytes(p.read_bytes() + b"xx"), "has trailing bytes"),
        ("train-images-idx3-ubyte", lambda p: p.write_bytes(b"\x00\x00\x08"), "shorter than the IDX header"),
        ("train-labels-idx1-ubyte", lambda p: p.write_bytes(b"\x00\x00\x08\x03" + p.read_bytes()[4:]), "magic number"),
        (
            "train-images-idx3-ubyte",
            lambda p: write_idx(p, np.zeros((384, 28, 27))),
            "images are 28x27, expected 28x28",
        ),
        ("train-labels-idx1-ubyte", lambda p: write_idx(p, np.zeros(383)), "holds 384 images but"),
        ("train-labels-idx1-ubyte", lambda p: write_idx(p, np.full(384, 10)), "label 10 at index 0 is outside 0-9"),
        ("t10k-images-idx3-ubyte", lambda p: (p.unlink(), p.mkdir()), "cannot be read"),
    ],
    ids=["truncated", "trailing", "no-header", "magic", "dimensions", "count-mismatch", "label-range", "unreadable"],
)
def test_bad_file_is_named_with_its_problem(data_dir: Path, name: str, make, message: str) -> None:
    path = data_dir / name
    make(path)
    stage = "test" if name.startswith("t10k") else "fit"  # the stage that reads the damaged file
    with pytest.raises(InputError, match=message) as error:
        FashionMNISTDataModule(str(data_dir), val_size=64, download=False).setup(stage)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("damage", [lambda gz: gz[: len(gz) // 2], lambda gz: b"not gzip"], ids=["cut", "garbage"])
def test_corrupt_gzip(tmp_path: Path, damage) -> None:
    folder = write_dataset(tmp_path / "data", compress=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(InputError, match=f"{path}: cannot be read"):
        setup_fit(folder, val_size=64)


def test_missing_data_names_the_three_ways(tmp_path: Path) -> None:
    with pytest.raises(InputError) as error:
        FashionMNISTDataModule(str(tmp_path / "nothing"), download=False).prepare_data()
    message = str(error.value)
    assert "not found and downloading is off" in message
    assert str(tmp_path / "nothing") in message and "FashionMNIST/raw" in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data.download true" in message


def test_failed_download_names_the_three_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr("fmnist.data.FashionMNIST", offline)
    with pytest.raises(InputError, match="(?s)the download failed: Error downloading.*apt-get install"):
        FashionMNISTDataModule(str(tmp_path / "nothing")).prepare_data()


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(InputError, match="a-file is a file, not a folder"):
        FashionMNISTDataModule(str(tmp_path / "a-file")).prepare_data()


def test_val_size_must_leave_training_images(data_dir: Path) -> None:
    with pytest.raises(InputError, match="val_size=384 leaves no training images: the training set holds 384"):
        setup_fit(data_dir, val_size=384)
