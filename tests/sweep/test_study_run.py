"""What a sweep teaches: the study run (scalars, importances, best trial) and multi-objective studies."""

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from tests.helpers import events
from tests.sweep.helpers import FAST, study, write

#: Only the learning rate matters: ``trainer.log_every_n_steps`` changes how often scalars are logged, not the result.
LR_MATTERS = {
    "n_trials": 6,
    "pruner": "none",
    "sampler": "random",
    "sampler_seed": 3,
    "space": {
        "model.lr": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
        "trainer.log_every_n_steps": {"type": "categorical", "choices": [1, 2, 3]},
    },
}


def test_the_study_run_shows_each_trial_the_best_so_far_and_what_mattered(
    fmnist: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fast = write(tmp_path / "fast.yaml", FAST)
    assert fmnist("sweep", "--space", str(write(tmp_path / "lr.yaml", LR_MATTERS)), "--config", str(fast)) == 0
    trials = [t for t in study("lr").trials if t.state == optuna.trial.TrialState.COMPLETE]
    board = events(Path("runs/lr/study"))
    per_trial = board.Scalars("Trial/Accuracy/val_best")
    assert sorted((e.step, round(e.value, 6)) for e in per_trial) == sorted(
        (t.number, round(t.value, 6)) for t in trials
    )
    best = [e.value for e in sorted(board.Scalars("Best/Accuracy/val_best"), key=lambda e: e.step)]
    assert best == sorted(best) and best[-1] == pytest.approx(max(t.value for t in trials))
    assert board.Images("Importance/Accuracy/val_best")
    (table,) = board.Tensors("Importance/Accuracy/val_best/text_summary")
    rows = [row for row in table.tensor_proto.string_val[0].decode().splitlines() if row.startswith("| ")]
    assert rows[1].startswith("| model.lr |"), rows  # the header, then the most important parameter
    (text,) = board.Tensors("Best trial/text_summary")
    assert b"python -m fmnist fit --config runs/lr/best.yaml" in text.tensor_proto.string_val[0]
    out = capsys.readouterr().out
    assert "what mattered for Accuracy/val_best (PED-ANOVA importance): model.lr " in out


TWO_METRICS = {
    "n_trials": 4,
    "sampler": "random",
    "sampler_seed": 0,
    "metric": ["Accuracy/val_best", "Loss/val"],
    "direction": ["maximize", "minimize"],
    "space": {"model.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True}},
}


def test_a_two_metric_study_prints_its_pareto_front_and_writes_each_trials_yaml(
    fmnist: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fast = write(tmp_path / "fast.yaml", FAST)
    assert fmnist("sweep", "--space", str(write(tmp_path / "two.yaml", TWO_METRICS)), "--config", str(fast)) == 0
    loaded = study("two")
    assert [d.name for d in loaded.directions] == ["MAXIMIZE", "MINIMIZE"]
    front = sorted(loaded.best_trials, key=lambda t: t.number)
    out = capsys.readouterr().out
    assert "Pareto-optimal trials (Accuracy/val_best maximize, Loss/val minimize):" in out
    for trial in front:
        assert f"trial {trial.number}, Accuracy/val_best {trial.values[0]:.4f}, Loss/val {trial.values[1]:.4f}" in out
        assert Path(f"runs/two/best_{trial.number}.yaml").is_file()
    assert events(Path("runs/two/study")).Images("Pareto front")
    # a Pareto trial's configuration trains it again
    chosen = front[0]
    config = f"runs/two/best_{chosen.number}.yaml"
    assert (
        yaml.safe_load(Path(config).read_text())["trainer"]["logger"]["init_args"]["name"]
        == f"two/best_{chosen.number}"
    )
    assert fmnist("fit", "--config", config) == 0
    (rerun,) = Path(f"runs/two/best_{chosen.number}").iterdir()
    assert events(rerun).Scalars("Accuracy/val_best")[-1].value == pytest.approx(chosen.values[0])
    assert events(rerun).Scalars("Loss/val")[-1].value == pytest.approx(chosen.values[1], rel=1e-5)


def test_a_pruner_with_two_metrics_is_one_error_line(
    fmnist: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = write(tmp_path / "p.yaml", {**TWO_METRICS, "pruner": "median"})
    assert fmnist("sweep", "--space", str(space)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fmnist: error: sweep: pruner median cannot judge a trial by 2 metrics")
    space = write(tmp_path / "d.yaml", {**TWO_METRICS, "direction": "maximize"})
    assert fmnist("sweep", "--space", str(space)) == 2
    assert "2 metrics need 2 directions" in capsys.readouterr().err
    assert not Path("runs").exists()
