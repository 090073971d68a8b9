"""``make benchmark`` (``python -m benchmarks.bench``): a tool beside the package that fails out loud."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # benchmark subprocesses
def test_a_failing_part_stops_the_benchmark_with_its_own_message(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("x")
    done = bench("--parts", "step", "--epochs", "1", "--repeat", "1", "--data_dir", str(not_a_folder))
    assert done.returncode == 2
    assert "benchmark part 'step' failed (exit status 2)" in done.stderr
    assert f"fmnist: error: data.data_dir {not_a_folder} is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr and "s/epoch" not in done.stdout


@pytest.mark.slow  # a benchmark subprocess
def test_an_unknown_part_is_refused() -> None:
    done = bench("--parts", "fit,nope")
    assert done.returncode == 2 and "--parts: no part nope; choose from tutorial, fit, fit_plain, step" in done.stderr


@pytest.mark.slow  # a benchmark subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU check runs here")
def test_the_gpu_check_says_in_one_line_that_there_is_no_gpu() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "benchmarks.gpu: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine\n"
    )
