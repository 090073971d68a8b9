"""What the HParams table shows of a configuration: flat names, and only the arguments a user changed."""

from callbacks.hparams import _flatten, _non_defaults


def test_flattening_names_nested_values_with_dots() -> None:
    values = {
        "lr": 0.01, "channels_last": True, "name": "run", "_instantiator": "lightning.pytorch.cli.instantiate",
        "data": {"batch_size": 32, "augment": {"flip": False}}, "sizes": [1, 2], "scheduler": None,
    }  # fmt: skip
    assert dict(_flatten(values)) == {
        "lr": 0.01, "channels_last": True, "name": "run", "data.batch_size": 32, "data.augment.flip": False,
        "sizes": "[1, 2]", "scheduler": "None",
    }  # fmt: skip


def test_a_class_shows_its_path_and_only_the_arguments_that_differ_from_its_defaults() -> None:
    optimizer = {
        "class_path": "torch.optim.SGD",
        "init_args": {"lr": 0.01, "momentum": 0.9, "dampening": 0, "nesterov": False, "weight_decay": 0},
    }
    assert dict(_flatten({"optimizer": optimizer})) == {
        "optimizer": "torch.optim.SGD", "optimizer.lr": 0.01, "optimizer.momentum": 0.9,
    }  # fmt: skip


def test_a_yaml_list_equals_a_tuple_default() -> None:
    assert _non_defaults("torch.optim.Adam", {"betas": [0.9, 0.999], "eps": 1e-8, "lr": 0.01}) == {"lr": 0.01}


def test_an_unknown_class_keeps_every_argument() -> None:
    arguments = {"size": 3, "mode": "x"}
    assert _non_defaults("no.such.Module", arguments) == arguments
    assert dict(_flatten({"thing": {"class_path": "no.such.Module", "init_args": arguments}})) == {
        "thing": "no.such.Module", "thing.size": 3, "thing.mode": "x",
    }  # fmt: skip


def test_a_class_without_arguments() -> None:
    assert dict(_flatten({"loss": {"class_path": "torch.nn.CrossEntropyLoss"}})) == {
        "loss": "torch.nn.CrossEntropyLoss"
    }
