"""What a user reads and finds, wherever fmnist runs: output to a pipe or a terminal, first lines, one event file."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.helpers import environment, run_dirs

SHORT = ["--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1", "--data.val_size", "128"]


def command(data_dir: Path, subcommand: str, *args: str) -> list[str]:
    data = ["--data.data_dir", str(data_dir), "--data.download", "false"]
    return [sys.executable, "-m", "fmnist", subcommand, *data, *args]


def run_to_pipe(args: list[str]) -> tuple[int, str]:
    """The command with standard output and error into one pipe, as ``make fit > log 2>&1`` does."""
    done = subprocess.run(args, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    return done.returncode, done.stdout.decode()


def run_on_terminal(args: list[str]) -> tuple[int, str]:
    """The command with a pseudo-terminal as its standard output and error."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column window
    process = subprocess.Popen(args, env=environment(), stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # real processes
def test_fit_into_a_pipe_writes_lines_and_on_a_terminal_the_bar(data_dir: Path) -> None:
    code, out = run_to_pipe(command(data_dir, "fit", *SHORT))
    assert code == 0, out[-2000:]
    assert "\r" not in out, "no carriage returns in a log file"
    lines = out.splitlines()
    assert lines[0].startswith("fmnist fit: 2 epochs, seed 42, on 1 cpu (32-true); run folder runs/")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all("Accuracy/val " in line and " images/s" in line for line in epochs)
    assert not [line for line in epochs if "Model/" in line or "Time/" in line], "speed once, costs in Scalars"
    assert lines[-1].startswith("TensorBoard ") and len(out) < 20_000
    code, out = run_on_terminal(command(data_dir, "fit", *SHORT))
    assert code == 0, out[-2000:]
    assert "\r" in out and "Epoch 1: 100%" in out, "Lightning's bar, as it is"
    assert not [line for line in out.splitlines() if line.startswith("epoch ")], "no plain lines on a terminal"


@pytest.mark.slow  # real processes
def test_no_command_starts_with_a_warning(data_dir: Path, tmp_path: Path) -> None:
    code, out = run_to_pipe(command(data_dir, "fit", *SHORT))
    assert code == 0 and out.startswith("fmnist fit: "), out[:500]
    firsts = {"fit": "fmnist fit: "}
    for subcommand in ("validate", "test", "predict"):
        code, out = run_to_pipe(command(data_dir, subcommand, "--ckpt_path", "last", "--data.val_size", "128"))
        assert code == 0, out[-2000:]
        firsts[subcommand] = out.splitlines()[0]
        assert firsts[subcommand].startswith(f"fmnist {subcommand}: the model from runs/"), out[:500]
    for args in (["--help"], ["fit", "--help"], ["sweep", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "fmnist", *args], env=environment(), capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stderr == "" and done.stdout.startswith("usage: "), done.stderr[:500]
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"n_trials": 3, "space": {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    )
    code, out = run_to_pipe(command(data_dir, "sweep", "--space", str(space), *SHORT, "--trainer.max_epochs", "1"))
    assert code == 0, out[-2000:]
    before_table = out[: out.index("\ntrial  model.lr")].splitlines()
    trials = [line for line in before_table if line.startswith("trial ")]
    assert len(trials) == 3 and all(line.endswith("worker 1") for line in trials)
    assert all(" complete " in line or " pruned " in line for line in trials)
    # the one warning of these tiny trials (the projector's 1000 images of a 128-image split), once, not per trial
    others = [line for line in before_table if not line.startswith("trial ")]
    assert len(others) == 2 and "UserWarning: EmbeddingProjector" in others[0], out[:2000]


def test_a_fit_run_is_one_event_file_with_every_tag_and_the_choices_in_hparams(fmnist) -> None:
    assert fmnist("fit", "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1", "--model.lr", "0.002") == 0
    (run,) = run_dirs()
    (events_file,) = run.glob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events_file), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert {"Loss/train", "Accuracy/val", "Accuracy/test", "Loss/test"} <= set(accumulator.Tags()["scalars"])
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert {"lr", "batch_size", "optimizer", "optimizer.lr", "seed", "precision"} <= set(hparams)
    assert hparams["seed"].number_value == 42 and hparams["precision"].string_value == "32-true"
    internals = {"predict_path", "_instantiator", "optimizer.capturable", "optimizer.fused", "optimizer.foreach"}
    assert not internals & set(hparams), sorted(hparams)
    saved = yaml.safe_load((run / "hparams.yaml").read_text())
    assert not {"predict_path", "_instantiator"} & set(saved)
    assert saved["optimizer"] == {
        "class_path": "torch.optim.Adam",
        "init_args": {"lr": 0.002},
    }  # not Adam's other defaults
