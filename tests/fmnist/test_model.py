"""The network and the LightningModule, without a Trainer."""

import torch

from fmnist import CLASS_NAMES, FashionCNN, FashionMNISTClassifier


def test_default_network_is_the_tutorials() -> None:
    net = FashionCNN()
    layers = {name: tuple(p.shape) for name, p in net.named_parameters()}
    assert layers == {
        "conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
        "fc1.weight": (128, 1600), "fc1.bias": (128,),
        "fc2.weight": (10, 128), "fc2.bias": (10,),
    }  # fmt: skip
    assert net(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_options_change_the_network() -> None:
    net = FashionCNN(conv1_channels=8, conv2_channels=16, hidden_size=32, dropout=0.5)
    assert net.fc1.in_features == 16 * 25 and net.fc1.out_features == 32 and net.dropout.p == 0.5
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_channels_last_computes_the_same_logits() -> None:
    torch.manual_seed(0)
    fast = FashionMNISTClassifier(channels_last=True).eval()
    plain = FashionMNISTClassifier(channels_last=False).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(4, 1, 28, 28)
    assert fast.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-4, atol=1e-5)


def test_predict_step_returns_indices_and_names() -> None:
    module = FashionMNISTClassifier().eval()
    out = module.predict_step((torch.randn(3, 1, 28, 28), torch.zeros(3, dtype=torch.long)), 0)
    assert out["class_index"].shape == (3,)
    assert out["class_name"] == [CLASS_NAMES[i] for i in out["class_index"].tolist()]
    assert ((out["confidence"] > 0) & (out["confidence"] <= 1)).all()


def test_lr_reaches_the_optimizer() -> None:
    optimizer = FashionMNISTClassifier(lr=0.02, optimizer=torch.optim.SGD).configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.02


def test_scheduler_is_stepped_per_epoch_and_watches_val_loss() -> None:
    config = FashionMNISTClassifier(scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau).configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert config["lr_scheduler"]["monitor"] == "Loss/val"
