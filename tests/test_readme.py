"""The README's example "Use the callbacks in your own project" runs as printed and fills the dashboards."""

import re
from pathlib import Path

from tests.helpers import events, run_dirs

REPO = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Use the callbacks in your own project", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_own_project_example_runs_and_shows_its_class_names() -> None:
    code = readme_example()
    assert "fmnist" not in code
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    (run,) = run_dirs()
    assert run == Path("runs/shapes/version_0")
    board = events(run)
    assert {"Sample Images", "Confusion Matrix"} <= set(board.Tags()["images"])
    assert {f"PR/{name}" for name in ("circle", "square", "star")} <= set(board.Tags()["tensors"])
    assert board.Tags()["graph"] and board.Tags()["histograms"]
    (metadata,) = run.glob("*/net.4.input/metadata.tsv")
    assert {row.split("\t")[0] for row in metadata.read_text().splitlines()[1:]} <= {"circle", "square", "star"}
