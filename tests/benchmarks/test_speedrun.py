"""``python -m benchmarks.speedrun`` on synthetic data: the table's columns, one row per config, seeds counted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.speedrun import COLUMNS
from tests.helpers import REPO


@pytest.mark.slow  # several fit processes
def test_speedrun_prints_the_time_to_accuracy_table(data_dir: Path, tmp_path: Path) -> None:
    tiny = ["--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false",
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"]  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.speedrun", "--config", "configs/smoke.yaml", "--seeds", "2",
               "--picture", str(tmp_path / "front.png"), "--json", str(tmp_path / "seeds.json"), "--", *tiny]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "cores" in lines[0]
    assert lines[1].startswith("matrix-multiply peak: fp32 ") and "bf16" in lines[1]
    header, smoke = lines[-2].split(), lines[-1]
    assert header == list(COLUMNS)
    assert smoke.startswith("smoke ") and " 2 " in smoke, "the config's name and its two seeds"
    accuracy = smoke.split()[4:7]
    assert accuracy[1] == "±" and 0 <= float(accuracy[0]) <= 1 and float(accuracy[2]) >= 0
    efficiency = float(smoke.split()[-1])
    assert 0 < efficiency < 2, "the achieved FLOP/s over the measured peak"
    seeds = json.loads((tmp_path / "seeds.json").read_text())["runs"]["configs/smoke.yaml"]
    assert len(seeds) == 2 and all(
        s["train_s"] > 0 and s["command_s"] > s["train_s"] and s["epochs"] == 1 for s in seeds
    )
    assert (tmp_path / "front.png").stat().st_size > 1000
    # an earlier run's figures, loaded: the same row again, nothing run (no peak measured)
    again = subprocess.run([sys.executable, "-m", "benchmarks.speedrun", "--load", str(tmp_path / "seeds.json")],
                           capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.splitlines()[-1] == smoke and "matrix-multiply peak" not in again.stdout
    nothing = subprocess.run([sys.executable, "-m", "benchmarks.speedrun"], capture_output=True, text=True, cwd=REPO)
    assert nothing.returncode == 2 and "give --config" in nothing.stderr.splitlines()[-1]
