"""What ``fit`` reports when it is done, and what ``--help`` says."""

import sys
from pathlib import Path

import pytest
from tensorboard.plugins.hparams import plugin_data_pb2

from fmnist import cli
from fmnist.main import main
from tests.helpers import events, run_dirs


def test_fit_tests_the_final_model_and_prints_a_summary(fmnist, capsys) -> None:
    assert fmnist("fit", "--trainer.max_epochs", "2") == 0
    out = capsys.readouterr().out
    (run,) = run_dirs()
    board = events(run)
    (accuracy,) = board.Scalars("Accuracy/test")
    (loss,) = board.Scalars("Loss/test")
    assert accuracy.step == board.Scalars("Loss/val")[-1].step + 1, "at the final global step, after the curves"
    best_val = max(event.value for event in board.Scalars("Accuracy/val"))
    (best,) = (run / "checkpoints").glob("best-*.ckpt")
    summary = out[out.index("test accuracy") :].splitlines()
    assert summary == [
        f"test accuracy      {accuracy.value:.4f}  (loss {loss.value:.4f}, official 10k test split)",
        f"best val accuracy  {best_val:.4f}",
        f"run folder         {run}",
        f"best checkpoint    {best}",
        f"TensorBoard        {Path(sys.executable).with_name('tensorboard')} --logdir runs --samples_per_plugin images=100",
    ]
    # the final model is the weight average, the one last.ckpt holds: `test` on it measures the same
    assert fmnist("test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")) == 0
    after_fit, from_checkpoint = events(run).Scalars("Loss/test")
    assert after_fit.value == pytest.approx(from_checkpoint.value, rel=1e-5)
    # the HParams table lists the test accuracy as one of its metric columns
    content = board.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "Accuracy/test" in [metric.name.tag for metric in experiment.metric_infos]


def test_the_test_after_fit_can_be_turned_off(fmnist, capsys) -> None:
    assert fmnist("fit", "--trainer.max_epochs", "1", "--test_after_fit", "false") == 0
    out = capsys.readouterr().out
    (run,) = run_dirs()
    assert "Accuracy/test" not in events(run).Tags()["scalars"]
    assert "test accuracy" not in out and out.splitlines()[-4].startswith("best val accuracy  0.")


@pytest.mark.parametrize("subcommand", [None, "fit", "predict"])
def test_help_names_fmnist_and_describes_it(subcommand: str | None, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", [str(Path(cli.__file__).with_name("__main__.py"))])  # as python -m sets it
    with pytest.raises(SystemExit) as exit:
        main([*([subcommand] if subcommand else []), "--help"])
    assert exit.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: python -m fmnist {'[options] ' + subcommand if subcommand else '[-c CONFIG]'}")
    assert "Lightning Trainer command line tool" not in out and "__main__.py" not in out
    if subcommand is None:
        assert "fmnist: the TensorBoard-with-PyTorch tutorial's CNN on Fashion-MNIST" in out
        assert "fit: train the model, then test it on the official 10k test split and print a summary" in out
        assert "predict: classify the test split, or your own pictures (--data.predict_path)" in out
        assert "validate: evaluate a checkpoint (--ckpt_path best|last|FILE) on the validation split" in out
        assert all(f" {name} " in out.split("Available subcommands:")[1] for name in ("fit", "validate", "test"))
    elif subcommand == "fit":
        assert "--test_after_fit {true,false} fit only: after training, test the final model" in out
    else:
        assert "--data.predict_path PREDICT_PATH" in out


def test_the_console_script_is_called_fmnist(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/fmnist"])
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: fmnist [-c CONFIG]")
