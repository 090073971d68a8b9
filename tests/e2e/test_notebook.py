"""``notebooks/quickstart.ipynb`` executed headless, as Jupyter would run it, on synthetic data."""

import json
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO, events, run_dirs, write_dataset


def kernel(tmp_path: Path, data: Path) -> Path:
    """A Jupyter kernel of this test's Python, with the repository importable, the synthetic data,
    and a temporary folder of its own, where ``%tensorboard`` notes the servers it starts."""
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "FMNIST_DATA_DIR": str(data), "TMPDIR": str(tmp_path), "PATH": os.environ["PATH"]}  # fmt: skip
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "fmnist test", "language": "python", "env": env}  # fmt: skip
    folder = tmp_path / "jupyter"
    (folder / "kernels" / "fmnist-test").mkdir(parents=True)
    (folder / "kernels" / "fmnist-test" / "kernel.json").write_text(json.dumps(spec))
    return folder


def stop(pid: int) -> None:
    """Stop the TensorBoard server ``%tensorboard`` started, and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


@pytest.mark.slow  # a real Jupyter kernel
def test_the_quickstart_notebook_runs_and_shows_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_dataset(tmp_path / "data", train=5100, test=64)  # the default split holds out 5000
    monkeypatch.setenv("JUPYTER_PATH", str(kernel(tmp_path, data)))
    notebook = nbformat.read(REPO / "notebooks/quickstart.ipynb", as_version=4)
    client = NotebookClient(
        notebook, kernel_name="fmnist-test", timeout=300, resources={"metadata": {"path": str(tmp_path)}}
    )
    infos: list[dict] = []
    try:
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells):
                client.execute_cell(cell, index)
            # while the kernel lives: its TensorBoard server, noted in the kernel's own TMPDIR
            infos = [json.loads(path.read_text()) for path in (tmp_path / ".tensorboard-info").glob("pid-*.info")]
            assert len(infos) == 1, "one TensorBoard server started"
            with urllib.request.urlopen(f"http://localhost:{infos[0]['port']}/data/runs", timeout=30) as response:
                served = json.load(response)
    finally:
        for info in infos:
            stop(info["pid"])  # the kernel's shutdown stops it too; this makes sure

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every cell ran"
    assert not [out for cell in code for out in cell.outputs if out.output_type == "error"]
    (run,) = run_dirs(tmp_path / "runs")
    board = events(run)
    assert {"Loss/val", "Accuracy/test"} <= set(board.Tags()["scalars"])
    assert "Sample Images" in board.Tags()["images"]
    assert "notebook/version_0" in served, "the server shows the notebook's run"
    tensorboard_cell = json.dumps(code[-1].outputs)
    assert str(infos[0]["port"]) in tensorboard_cell and "iframe" in tensorboard_cell, "the dashboard is embedded"
