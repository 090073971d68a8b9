"""``repeats``: each sampled configuration trained with k seeds, through the real ``python -m fmnist sweep``."""

import statistics
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from fmnist.sweep.trust import SEED_VALUES
from tests.helpers import events
from tests.sweep.helpers import FAST, SPACE, Server, run_sweep, session, study, sweep_command, write


def test_two_repeats_make_a_trial_the_mean_of_two_seeds_and_print_the_noise_floor(
    fmnist: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    fast = write(tmp_path / "fast.yaml", FAST)
    space = write(
        tmp_path / "r.yaml", {**SPACE, "n_trials": 2, "pruner": "none", "sampler": "random", "sampler_seed": 1}
    )
    # the flag, as the space file's repeats: 2 would; the fit's seed_everything 42 and the next one
    assert fmnist("sweep", "--space", str(space), "--config", str(fast), "--repeats", "2") == 0
    trials = study("r").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        seeds = [Path(f"runs/r/trial_{trial.number}/seed_{seed}") for seed in (42, 43)]
        logged = [events(run).Scalars("Accuracy/val_best")[-1].value for run in seeds]
        assert trial.value == pytest.approx(statistics.fmean(logged))  # the trial's value is the seeds' mean
        assert [run[0] for run in trial.user_attrs[SEED_VALUES]] == pytest.approx(logged)
        for seed, run in zip((42, 43), seeds):  # grouped under the trial's folder, a HParams row each
            values, _ = session(run)
            assert values["seed"] == seed and values["trial"] == trial.number and values["trial_state"] == "complete"
        assert trial.user_attrs["run_dir"] == str(seeds[0])
    out = capsys.readouterr().out
    assert out.count("(mean of 2 seeds)") == 2  # the line of each finished trial
    assert "noise floor of Accuracy/val_best: " in out and "(std between seeds of one configuration; 4 runs of 2" in out
    best = max(trials, key=lambda t: t.value)
    assert f"best.yaml is trial {best.number}, the best mean" in out
    # best.yaml trains the best trial's first seed, into runs/r/best/
    config = yaml.safe_load(Path("runs/r/best.yaml").read_text())
    assert config["seed_everything"] == 42 and config["trainer"]["logger"]["init_args"]["name"] == "r/best"
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs"
    board = events(Path("runs/r/study"))
    assert board.Scalars("Noise/Accuracy/val_best") and board.Scalars("Best/Accuracy/val_best/high")
    (noise,) = board.Tensors("Noise floor/text_summary")
    assert noise.tensor_proto.string_val[0].decode() in out
    (significance,) = board.Tensors("Significance/text_summary")
    assert significance.tensor_proto.string_val[0].decode() in out


def test_pruning_judges_the_first_seed_and_spares_the_others(fmnist: Callable[..., int], tmp_path: Path) -> None:
    fast = write(tmp_path / "fast.yaml", FAST)
    space = {"metric": "Loss/val", "direction": "minimize", "repeats": 2, "prune_after": 1}
    space = write(
        tmp_path / "p.yaml", {**space, "space": {"data.batch_size": {"type": "categorical", "choices": [64]}}}
    )
    one_epoch = ["--space", str(space), "--config", str(fast), "--trainer.max_epochs", "1"]
    assert fmnist("sweep", *one_epoch, "--n_trials", "1", "--model.lr", "0.01") == 0
    # the same study continued with a useless learning rate: its first seed is pruned, the second never runs
    assert fmnist("sweep", *one_epoch, "--n_trials", "2", "--model.lr", "1e-9") == 0
    trials = study("p").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert sorted(p.name for p in Path("runs/p/trial_1").iterdir()) == ["seed_42"]
    values, _ = session(Path("runs/p/trial_1/seed_42"))
    assert values["trial_state"] == "pruned"


def test_repeats_with_a_searched_seed_is_one_error_line(
    fmnist: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = write(
        tmp_path / "s.yaml", {"repeats": 3, "space": {"seed_everything": {"type": "categorical", "choices": [1, 2]}}}
    )
    assert fmnist("sweep", "--space", str(space)) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "fmnist: error: sweep: repeats 3 trains each configuration with seed_everything, +1, ...;"
        " a space that searches seed_everything runs with repeats: 1"
    )
    assert not Path("runs").exists()


def test_a_resumed_study_counts_the_seeds_of_every_earlier_trial(
    fmnist: Callable[..., int], fast: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    space = write(tmp_path / "again.yaml", {**SPACE, "n_trials": 1, "pruner": "none", "repeats": 2})
    assert fmnist("sweep", "--space", str(space), "--config", str(fast)) == 0
    assert "2 runs of 1 configuration" in capsys.readouterr().out
    # the same command with more trials resumes the study: the noise floor pools the old trial's seeds too
    assert fmnist("sweep", "--space", str(space), "--config", str(fast), "--n_trials", "2") == 0
    out = capsys.readouterr().out
    assert "study again: 2 of 2 trials finished" in out
    assert "(std between seeds of one configuration; 4 runs of 2 configurations)" in out
    assert all(len(t.user_attrs[SEED_VALUES]) == 2 for t in study("again").trials)


@pytest.mark.slow  # real processes and a real database server
def test_repeats_with_two_workers_on_postgresql(data_dir: Path, fast: Path, tmp_path: Path, postgres: Server) -> None:
    space = write(tmp_path / "pgr.yaml", {**SPACE, "n_trials": 3, "pruner": "none", "repeats": 2})
    command = sweep_command(
        data_dir, "--space", str(space), "--workers", "2", "--config", str(fast), "--storage", postgres.url
    )
    done = run_sweep(command)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(study_name="pgr", storage=postgres.url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:  # each seed's value in the shared study, the trial's value their mean
        seeds = [values[0] for values in trial.user_attrs[SEED_VALUES]]
        assert len(seeds) == 2 and trial.value == pytest.approx(statistics.fmean(seeds))
        assert {p.name for p in Path(f"runs/pgr/trial_{trial.number}").iterdir() if p.is_dir()} == {
            "seed_42",
            "seed_43",
        }
    assert "(std between seeds of one configuration; 6 runs of 3 configurations)" in done.stdout
