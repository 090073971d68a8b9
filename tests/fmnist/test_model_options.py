"""The options a search tunes: batch norm, label smoothing, batch augmentation, per-step schedulers."""

import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.utils.flop_counter import FlopCounterMode

from fmnist import FashionCNN, FashionMNISTClassifier
from fmnist.augment import RandomShiftFlip
from fmnist.data import FashionMNISTDataModule
from tests.helpers import REPO, events, run_dirs

# --- the network ------------------------------------------------------------------------------


def test_batch_norm_follows_each_convolution() -> None:
    net = FashionCNN(batch_norm=True)
    assert isinstance(net.bn1, torch.nn.BatchNorm2d) and net.bn1.num_features == 32
    assert isinstance(net.bn2, torch.nn.BatchNorm2d) and net.bn2.num_features == 64
    assert net.conv1.bias is None and net.conv2.bias is None, "the normalisation's shift replaces the bias"
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in FashionCNN().modules()), "off by default"


def test_without_the_new_options_a_seed_gives_the_tutorials_weights() -> None:
    torch.manual_seed(0)  # the tutorial's layers, created in its order
    tutorial = [
        torch.nn.Conv2d(1, 32, 3),
        torch.nn.Conv2d(32, 64, 3),
        torch.nn.Linear(1600, 128),
        torch.nn.Linear(128, 10),
    ]
    torch.manual_seed(0)
    net = FashionCNN(padding=0, conv3_channels=0)
    for layer, ours in zip(tutorial, (net.conv1, net.conv2, net.fc1, net.fc2), strict=True):
        torch.testing.assert_close(ours.weight, layer.weight, rtol=0, atol=0)
        torch.testing.assert_close(ours.bias, layer.bias, rtol=0, atol=0)
    assert not hasattr(net, "conv3") and net.conv1.padding == (0, 0)


def test_padding_and_a_third_block_make_a_deeper_cheaper_network() -> None:
    net = FashionCNN(conv1_channels=32, conv2_channels=64, conv3_channels=128, padding=1, batch_norm=True)
    sides = []
    for conv in (net.conv1, net.conv2, net.conv3):
        conv.register_forward_hook(lambda module, inputs, output: sides.append(output.shape[-1]))
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sides == [28, 14, 7], "padding 1 keeps each map's size; each pooling halves it"
    assert net.feature_side == 3 and net.fc1.in_features == 128 * 3 * 3
    assert isinstance(net.bn3, torch.nn.BatchNorm2d) and net.conv3.bias is None
    deeper = FlopCounterMode(display=False)
    with deeper:
        net(torch.zeros(1, 1, 28, 28))
    wide = FlopCounterMode(display=False)
    with wide:
        FashionCNN(conv1_channels=64, conv2_channels=128, hidden_size=256, batch_norm=True)(torch.zeros(1, 1, 28, 28))
    assert deeper.get_total_flops() < 0.8 * wide.get_total_flops(), "cheaper than the tuned two-block network"
    # a third block without padding: 28 -> 26 -> 13 -> 11 -> 5 -> 3 -> 1
    assert FashionCNN(conv3_channels=16).feature_side == 1


def test_the_third_block_works_channels_last() -> None:
    torch.manual_seed(0)
    options = {"conv1_channels": 8, "conv2_channels": 16, "conv3_channels": 32, "padding": 1, "batch_norm": True}
    fast = FashionMNISTClassifier(**options, channels_last=True)
    plain = FashionMNISTClassifier(**options, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(16, 1, 28, 28)
    assert fast.net.conv3.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


def test_batch_norm_works_channels_last() -> None:
    torch.manual_seed(0)
    fast = FashionMNISTClassifier(batch_norm=True, channels_last=True)
    plain = FashionMNISTClassifier(batch_norm=True, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(16, 1, 28, 28)
    for mode in (True, False):  # batch statistics, then running statistics
        fast.train(mode), plain.train(mode)
        torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fast.net.bn2.running_mean, plain.net.bn2.running_mean)
    assert fast.net.bn1.running_var.ne(1).any(), "training mode updated the running statistics"


def test_label_smoothing_changes_the_training_loss_only() -> None:
    torch.manual_seed(0)
    module = FashionMNISTClassifier(label_smoothing=0.2)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        train_loss = module.training_step((x, y), 0)["loss"]
        val_loss = module.validation_step((x, y), 0)["loss"]
        test_loss = module.test_step((x, y), 0)["loss"]
    logits = module(x)
    torch.testing.assert_close(train_loss, F.cross_entropy(logits, y, label_smoothing=0.2))
    torch.testing.assert_close(val_loss, F.cross_entropy(logits, y))
    torch.testing.assert_close(test_loss, val_loss)
    assert not torch.isclose(train_loss, val_loss)


# --- augmentation -----------------------------------------------------------------------------


def _variants(image: torch.Tensor, shift: int, fill: float) -> list[torch.Tensor]:
    """Every image RandomShiftFlip may make of ``image`` (C, H, W), written the slow, obvious way."""
    _, h, w = image.shape
    padded = F.pad(image, (shift,) * 4, value=fill)
    crops = [padded[:, t : t + h, c : c + w] for t in range(2 * shift + 1) for c in range(2 * shift + 1)]
    return crops + [crop.flip(-1) for crop in crops]


def _is_variant(augmented: torch.Tensor, image: torch.Tensor, shift: int, fill: float = -1.0) -> bool:
    return any(torch.equal(augmented, variant) for variant in _variants(image, shift, fill))


def test_shift_and_flip_are_drawn_per_image_and_seeded() -> None:
    images = torch.rand(64, 1, 28, 28).mul(2).sub(1)
    augment = RandomShiftFlip(shift=2, flip=True, fill=-1.0)
    torch.manual_seed(0)
    out = augment(images)
    torch.manual_seed(0)
    assert torch.equal(out, augment(images)), "the same seed gives the same batch"
    assert out.shape == images.shape
    assert all(_is_variant(out[i], images[i], shift=2) for i in range(64))
    kinds = {next(k for k, v in enumerate(_variants(images[i], 2, -1.0)) if torch.equal(out[i], v)) for i in range(64)}
    assert len(kinds) > 10, "each image draws its own shift and flip"
    assert torch.equal(RandomShiftFlip()(images), images), "no shift, no flip: unchanged"


def test_shift_moves_a_pixel_by_at_most_shift() -> None:
    image = torch.full((32, 1, 28, 28), -1.0)
    image[:, 0, 14, 10] = 1.0
    out = RandomShiftFlip(shift=3, fill=-1.0)(image)
    assert out.eq(1.0).sum(dim=(1, 2, 3)).eq(1).all(), "one bright pixel per image, moved, not smeared"
    rows, cols = out[:, 0].eq(1.0).nonzero()[:, 1:].T
    assert rows.sub(14).abs().le(3).all() and cols.sub(10).abs().le(3).all()


class RecordingClassifier(FashionMNISTClassifier):
    """Keeps a copy of every batch its steps receive."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[torch.Tensor]] = {"train": [], "val": []}

    def training_step(self, batch, batch_idx):
        self.seen["train"].append(batch[0].clone())
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.seen["val"].append(batch[0].clone())
        return super().validation_step(batch, batch_idx)


def _batches_seen(data_dir: Path, **augment) -> dict[str, list[torch.Tensor]]:
    pl.seed_everything(0)
    data = FashionMNISTDataModule(str(data_dir), batch_size=32, val_size=128, download=False, **augment)
    model = RecordingClassifier()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=2, num_sanity_val_steps=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(model, data)
    return model.seen


def test_only_training_batches_are_augmented_after_transfer(data_dir: Path) -> None:
    plain = _batches_seen(data_dir)
    augmented = _batches_seen(data_dir, augment_shift=2, augment_flip=True)
    again = _batches_seen(data_dir, augment_shift=2, augment_flip=True)
    # the loader hands out the same images (same seed, same order); the training step sees them
    # shifted and flipped, so the augmentation ran between the loader and the step
    for before, after in zip(plain["train"], augmented["train"], strict=True):
        assert not torch.equal(before, after)
        assert all(_is_variant(a, b, shift=2) for a, b in zip(after, before, strict=True))
    for before, after in zip(plain["val"], augmented["val"], strict=True):
        assert torch.equal(before, after), "validation batches are never augmented"
    for first, second in zip(augmented["train"], again["train"], strict=True):
        assert torch.equal(first, second), "seed_everything makes the augmentation repeatable"


def test_augmentation_is_a_transfer_hook_of_the_datamodule(data_dir: Path) -> None:
    data = FashionMNISTDataModule(str(data_dir), augment_shift=2)
    assert "on_after_batch_transfer" in vars(FashionMNISTDataModule)
    batch = [torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)]
    assert data.on_after_batch_transfer(batch, 0) is batch, "outside a Trainer nothing is augmented"
    assert FashionMNISTDataModule(str(data_dir)).augment is None, "off by default"


# --- schedulers -------------------------------------------------------------------------------


def _learning_rates(run: Path) -> tuple[list[int], list[float]]:
    points = events(run).Scalars("lr-AdamW")
    return [p.step for p in points], [p.value for p in points]


def test_one_cycle_is_stepped_per_batch_over_the_whole_run(fmnist) -> None:
    args = ["--model.optimizer", "torch.optim.AdamW", "--model.scheduler", "torch.optim.lr_scheduler.OneCycleLR"]
    args += ["--model.scheduler.init_args.max_lr", "0.01", "--model.scheduler_interval", "step"]
    args += ["--model.batch_norm", "true", "--model.label_smoothing", "0.1"]
    args += ["--data.augment_shift", "2", "--data.augment_flip", "true", "--data.batch_size", "64"]
    args += ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1"]
    assert fmnist("fit", *args) == 0
    [run] = run_dirs()
    steps, lrs = _learning_rates(run)
    # 256 training images / 64 = 4 steps an epoch, 8 in all: total_steps was filled with 8
    reference = torch.optim.lr_scheduler.OneCycleLR(
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)]), max_lr=0.01, total_steps=8
    )
    expected = []
    for _ in range(8):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step(), reference.step()
    assert steps == list(range(8)), "one learning rate per step"
    assert lrs == pytest.approx(expected, rel=1e-5)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["scheduler_interval"] == "step" and config["model"]["batch_norm"] is True
    assert config["data"]["augment_shift"] == 2 and config["model"]["label_smoothing"] == 0.1


def test_cosine_with_open_length_is_stepped_per_epoch_over_the_run(fmnist) -> None:
    args = ["--model.optimizer", "torch.optim.AdamW", "--model.lr", "0.01", "--trainer.max_epochs", "3"]
    args += [
        "--model.scheduler",
        "torch.optim.lr_scheduler.CosineAnnealingLR",
        "--model.scheduler.init_args.T_max",
        "0",
    ]
    assert fmnist("fit", *args) == 0
    [run] = run_dirs()
    steps, lrs = _learning_rates(run)
    assert steps == [0, 4, 8], "one learning rate per epoch, at the epoch's first step"
    assert lrs == pytest.approx([0.01 * (1 + math.cos(math.pi * epoch / 3)) / 2 for epoch in range(3)], rel=1e-5)


def test_open_schedule_length_needs_a_bounded_run(fmnist, capsys) -> None:
    Path("runs").mkdir()  # exists before: only what the failed run made must be gone
    args = ["--model.scheduler", "torch.optim.lr_scheduler.OneCycleLR", "--model.scheduler.init_args.max_lr", "0.01"]
    assert fmnist("fit", *args, "--trainer.max_epochs", "-1") == 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist: error: model.scheduler: total_steps is filled with the length of the run")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(Path("runs").iterdir()) == []


def test_the_tuned_config_trains_in_bf16_with_every_callback(fmnist) -> None:
    # configs/tuned.yaml as users run it, cut to one epoch; bfloat16 autocast on the CPU asked for, as the
    # config itself picks it only where it pays (a CPU with AMX)
    tuned = REPO / "configs/tuned.yaml"
    assert fmnist("fit", "--config", str(tuned), "--trainer.max_epochs", "1", "--trainer.precision", "bf16-mixed") == 0
    [run] = run_dirs()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["trainer"]["precision"] == "bf16-mixed" and config["model"]["conv3_channels"] == 128
    board = events(run)
    assert 0.0 <= board.Scalars("Accuracy/test")[-1].value <= 1.0  # tested after fit
    assert board.Images("Sample Images") and board.Histograms("weights/net.conv3.weight")
    (tensors,) = run.glob("*/net.fc1/tensors.tsv")  # the projector's fc1 features, written as float text
    assert np.isfinite(np.loadtxt(tensors, delimiter="\t")).all()
