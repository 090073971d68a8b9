"""``--config configs/profile.yaml``: bounded traces, and where a step's time goes, readable with no plugin."""

import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmnist.profiler import PART_ORDER, StepTimer
from tests.helpers import REPO, events, fit_in, write_dataset
from tools.tensorboard_server import TensorBoardServer

BREAKDOWN = {f"Profiler/{part}_ms" for part in PART_ORDER} | {"Profiler/step_ms"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One profiled fit: 16 training batches, enough for wait 1, warm-up 1 and 3 active steps."""
    root = tmp_path_factory.mktemp("profiled")
    data = write_dataset(root / "data")
    (run_dir,) = fit_in(root, "--config", str(REPO / "configs/profile.yaml"), "--data.data_dir", str(data),
                        "--data.download", "false", "--data.val_size", "128", "--data.batch_size", "16",
                        "--trainer.max_epochs", "1")  # fmt: skip
    return run_dir


def test_profiled_fit_writes_traces_and_summary(run: Path) -> None:
    traces = sorted(run.glob("*.pt.trace.json"))
    stages = {"training_step", "validation_step"}
    assert {stage for stage in stages for trace in traces if stage in trace.name} == stages
    for trace in traces:
        data = json.loads(trace.read_text())
        names = {event.get("name", "") for event in data["traceEvents"]}
        assert any(name.startswith("aten::") for name in names), "operator events"
        assert trace.stat().st_size < 20e6
    steps = json.loads(next(t for t in traces if "training_step" in t.name).read_text())["traceEvents"]
    recorded = {e["name"] for e in steps if e.get("name", "").startswith("ProfilerStep#")}
    assert 3 <= len(recorded) <= 4, "3 active steps (and the warm-up's), not all 16 of the epoch"
    for stage, hook in (("training_step", "run_training_batch"), ("validation_step", "Strategy.validation_step")):
        (trace,) = (t for t in traces if stage in t.name)
        names = {event.get("name", "") for event in json.loads(trace.read_text())["traceEvents"]}
        assert any(name.startswith("[pl][profile]") and hook in name for name in names), f"{hook} in the {stage} trace"

    # the summary is the top row_limit (20) rows by CPU time: which rows make it depends on the machine's
    # load, so only its shape is asserted, not its rows
    table = (run / "fit-profile.txt").read_text()
    assert "Self CPU" in table and "aten::" in table and "Self CPU time total:" in table
    rows = [line for line in table.splitlines() if re.search(r"\d+\.\d+%.*\s\d+\s*$", line)]  # "... 36.32% ... 5"
    assert 1 <= len(rows) <= 20, rows
    (text,) = events(run).Tensors("Profiler/fit/text_summary")
    assert b"aten::" in text.tensor_proto.string_val[0]


def test_breakdown_scalars_per_part_add_up_to_the_step(run: Path) -> None:
    board = events(run)
    assert set(board.Tags()["scalars"]) >= BREAKDOWN
    last_epoch_step = board.Scalars("Loss/val")[-1].step
    ms = {}
    for tag in BREAKDOWN:
        (point,) = board.Scalars(tag)
        assert point.step == last_epoch_step, tag
        assert math.isfinite(point.value) and point.value >= 0, tag
        ms[tag.removeprefix("Profiler/").removesuffix("_ms")] = point.value
    assert all(ms[part] > 0 for part in ("data", "forward", "backward", "optimizer", "callbacks", "step"))
    assert sum(ms[part] for part in PART_ORDER) == pytest.approx(ms["step"])


def test_breakdown_bar_chart(run: Path) -> None:
    (picture,) = events(run).Images("Profiler/step_breakdown")
    image = np.asarray(Image.open(io.BytesIO(picture.encoded_image_string)).convert("RGB"))
    assert image.shape[1] == 640 and image.shape[0] > 6 * 26, "a row per part"
    bars = (image == (25, 85, 160)).all(axis=2)
    assert bars.sum() > 1000, "bars drawn"


def test_top_operators_as_a_markdown_table(run: Path) -> None:
    (text,) = events(run).Tensors("Profiler/fit/operators/text_summary")
    markdown = text.tensor_proto.string_val[0].decode()
    assert "| operator | calls | self CPU ms | share | with children ms |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| `")]
    assert len(rows) == 20, "row_limit in configs/profile.yaml"
    assert any("`aten::" in row for row in rows) and not any("[pl][profile]" in row for row in rows)
    assert "self CUDA" not in markdown, "no CUDA table on a CPU"


def test_step_timer_leaves_out_the_steps_torch_records() -> None:
    timer = StepTimer()
    timer.start("run_training_epoch", 0.0, training=True)
    for step, idle in enumerate((False, True)):  # the first step is being recorded by torch's profiler
        timer.start("run_training_batch", 10.0 * step, training=True, idle=idle)
        timer.start("[Strategy]S.training_step", 10.0 * step + 1, training=True, idle=idle)
        timer.stop("[Strategy]S.training_step", 10.0 * step + (9 if not idle else 3), idle=idle)
        timer.stop("run_training_batch", 10.0 * step + 9.5, idle=True)
    timer.stop("run_training_epoch", 20.0)
    assert timer.batches == 1
    assert timer.breakdown()["forward"] == 2000.0, "the recorded step's 8 s are left out"


def test_setup_and_hooks_outside_the_epoch_loop_are_no_part_of_a_step() -> None:
    timer = StepTimer()
    timer.start("[Callback]ModelGraph.on_fit_start", 0.0, training=True)
    timer.stop("[Callback]ModelGraph.on_fit_start", 5.0)
    timer.start("run_training_epoch", 5.0, training=True)
    timer.start("run_training_batch", 5.0, training=True)
    timer.stop("run_training_batch", 6.0)
    timer.stop("run_training_epoch", 6.0)
    assert timer.breakdown()["callbacks"] == 0.0 and timer.breakdown()["logging"] == 1000.0


@pytest.mark.slow
def test_tensorboard_without_the_plugin_shows_the_breakdown(run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "docs"))  # docs/profiler_screenshot.py is a script, not a package
    from profiler_screenshot import without_profiler_plugin

    environment = without_profiler_plugin(tmp_path / "no-plugin")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    hidden = subprocess.run([sys.executable, "-c", "import torch_tb_profiler"], capture_output=True, text=True)
    assert "ModuleNotFoundError" in hidden.stderr or "ImportError" in hidden.stderr, "the plugin is not importable"

    name = str(run.relative_to(run.parents[1]))
    with TensorBoardServer(run.parents[1], tmp_path / "tensorboard.log", runs=[name]) as server:
        assert "pytorch_profiler" not in server.json("/data/plugins_listing")
        assert set(server.json("/data/plugin/scalars/tags")[name]) >= BREAKDOWN
        (point,) = server.json("/data/plugin/scalars/scalars", run=name, tag="Profiler/step_ms")
        assert point[2] > 0
        (entry,) = server.json("/data/plugin/images/images", run=name, tag="Profiler/step_breakdown", sample="0")
        png = Image.open(io.BytesIO(server.get("/data/plugin/images/individualImage?" + entry["query"])))
        assert png.format == "PNG" and png.width == 640
        assert "Profiler/fit/operators/text_summary" in server.json("/data/plugin/text/tags")[name]
        (text,) = server.json("/data/plugin/text/text", run=name, tag="Profiler/fit/operators/text_summary")
        assert "<table>" in text["text"] and "aten::" in text["text"], "a Markdown table, rendered"
    assert list(run.glob("*.pt.trace.json")), "the traces stay, for the plugin and Perfetto"
