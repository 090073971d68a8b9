"""``python -m benchmarks.step_variants``: one row per variant, bad input named in one line."""

import subprocess
import sys

import pytest

from tests.helpers import REPO


def run(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "benchmarks.step_variants", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.mark.slow  # a real benchmark process
def test_step_variants_prints_a_row_per_variant_against_the_first() -> None:
    done = run("--config", "speed/5min.yaml", "--variants", "eager,fused,batch2x", "--rounds", "1", "--steps", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[1] == "speed/5min.yaml (channels 16/64/64, batch 128):"
    assert lines[2].split() == ["variant", "ms/step", "images/s", "vs", "eager", "first", "3", "steps,", "s"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    assert list(rows) == ["eager", "fused", "batch2x"]
    assert rows["eager"][2] == "1.00x", "the first variant is the yardstick"
    for ms, images, _ratio, first in rows.values():
        assert float(ms) > 0 and float(images.replace(",", "")) > 0 and float(first) > 0


@pytest.mark.slow  # real benchmark processes
def test_step_variants_names_bad_input_in_one_line() -> None:
    done = run("--variants", "eager,jit")
    assert done.returncode == 2 and done.stderr.splitlines()[-1].endswith(
        "--variants: choose from eager, fused, contiguous, batch2x, compile (got 'eager,jit')"
    )
    assert "Traceback" not in done.stderr
    done = run("--config", "nope.yaml")
    assert done.returncode == 2 and "no configs/nope.yaml" in done.stderr.splitlines()[-1]
