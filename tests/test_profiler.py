"""``--config configs/profile.yaml``: bounded traces in the run folder and the summary as text."""

import json
from pathlib import Path

from tests.helpers import events, run_dirs

REPO = Path(__file__).resolve().parents[1]


def test_profiled_fit_writes_traces_and_summary(fmnist) -> None:
    args = ("--config", str(REPO / "configs/profile.yaml"), "--data.batch_size", "16", "--trainer.max_epochs", "1")
    assert fmnist("fit", *args) == 0  # 16 training batches: enough for wait 1, warm-up 1, 3 active steps
    (run,) = run_dirs()
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

    table = (run / "fit-profile.txt").read_text()
    assert "Self CPU" in table and "aten::" in table
    assert "run_training_batch" in table and "Strategy.validati" in table, "the summary covers both stages"
    (text,) = events(run).Tensors("Profiler/fit/text_summary")
    assert b"aten::" in text.tensor_proto.string_val[0]
