"""``python -m fmnist sweep``: trials as runs, HParams rows with state, pruning, workers, resume, errors."""

import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from tensorboard.plugins.hparams import api_pb2

from fmnist.sweep.space import check_against_fit, load
from tests.helpers import REPO, environment, events
from tests.sweep.helpers import SPACE, Server, finished, run_sweep, session, study, sweep_command, write


def test_three_trials_are_runs_with_hparams_rows_and_a_best_config(
    fmnist: Callable[..., int], fast: Path, tmp_path: Path, capsys
) -> None:
    space = write(tmp_path / "three.yaml", SPACE)
    # no pruning: every trial runs to its end (the median pruner could stop the third)
    assert fmnist("sweep", "--space", str(space), "--config", str(fast), "--pruner", "none") == 0
    trials = study("three").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert study("three").metric_names == ["Accuracy/val_best"], "Optuna's own tools name the objective"
    for trial in trials:
        run_dir = Path("runs/three") / f"trial_{trial.number}"
        assert (run_dir / "config.yaml").is_file() and list((run_dir / "checkpoints").glob("*.ckpt"))
        values, status = session(run_dir)
        assert values["trial"] == trial.number and values["trial_state"] == "complete"
        assert (
            values["lr"] == pytest.approx(trial.params["model.lr"])
            and values["batch_size"] == trial.params["data.batch_size"]
        )
        assert status == api_pb2.Status.Value("STATUS_SUCCESS")
        assert events(run_dir).Scalars("Accuracy/val_best")[-1].value == pytest.approx(trial.value)
    out = capsys.readouterr().out
    best = max(trials, key=lambda t: t.value)
    assert f"best: trial {best.number}, Accuracy/val_best {best.value:.4f}" in out and " ± " in out
    # best.yaml is the best trial's configuration, logging into runs/three/best/ ...
    config = yaml.safe_load(Path("runs/three/best.yaml").read_text())
    trial_config = yaml.safe_load(Path(f"runs/three/trial_{best.number}/config.yaml").read_text())
    assert config["model"] == trial_config["model"] and config["data"] == trial_config["data"]
    assert config["trainer"]["logger"]["init_args"]["name"] == "three/best"
    # ... a fit as fit runs by default: the test after fit that trials skip is on again, and what the
    # sweep's own flags set (the fixture's --trainer.enable_progress_bar false) stays as they set it ...
    assert trial_config["test_after_fit"] is False and config["test_after_fit"] is True
    assert config["trainer"]["enable_progress_bar"] is False
    # ... and fit with it alone reproduces the trial's metric, then tests
    assert fmnist("fit", "--config", "runs/three/best.yaml") == 0
    (rerun,) = Path("runs/three/best").iterdir()
    assert events(rerun).Scalars("Accuracy/val_best")[-1].value == pytest.approx(best.value)
    assert events(rerun).Scalars("Accuracy/test")


def test_a_multi_seed_study_measures_each_seed_on_the_test_split(
    fmnist: Callable[..., int], fast: Path, tmp_path: Path, capsys, recwarn: pytest.WarningsRecorder
) -> None:
    # configs/seeds.yaml's way: a grid over seed_everything alone, each trial tested after fit
    seeds = {"metric": "Accuracy/test", "sampler": "grid", "pruner": "none", "fit": {"test_after_fit": True}}
    seeds["space"] = {"seed_everything": {"type": "categorical", "choices": [1, 2]}}
    assert fmnist("sweep", "--space", str(write(tmp_path / "seeds.yaml", seeds)), "--config", str(fast)) == 0
    trials = study("seeds").trials
    assert sorted(t.params["seed_everything"] for t in trials) == [1, 2]
    for trial in trials:
        assert events(Path(f"runs/seeds/trial_{trial.number}")).Scalars("Accuracy/test")[-1].value == pytest.approx(
            trial.value
        )
    values = [t.value for t in trials]
    mean, std = statistics.mean(values), statistics.stdev(values)
    out = capsys.readouterr().out
    assert f"Accuracy/test over 2 complete trials: {mean:.4f} ± {std:.4f}" in out
    assert "what mattered" not in out, "one searched option takes all the importance: nothing to learn"
    # with pruner none nothing is reported per epoch, so no warning that Accuracy/test is not there yet
    assert not [w for w in recwarn if "not in the evaluation logs" in str(w.message)]


def test_a_hopeless_trial_is_pruned_and_keeps_its_logs(fmnist: Callable[..., int], fast: Path, tmp_path: Path) -> None:
    # two trials with a working learning rate, then the same study continued with a useless one, which
    # --prune_after 3 lets finish; then another useless one, which the median pruner (after its
    # default 2 complete trials) must stop after its first epoch
    space = write(
        tmp_path / "p.yaml",
        {
            "metric": "Loss/val",
            "direction": "minimize",
            "space": {"seed_everything": {"type": "categorical", "choices": [42]}},
        },
    )
    assert (
        fmnist(
            "sweep",
            "--space",
            str(space),
            "--n_trials",
            "2",
            "--config",
            str(fast),
            "--model.lr",
            "0.01",
            "--trainer.max_epochs",
            "1",
        )
        == 0
    )
    useless = ["--space", str(space), "--config", str(fast), "--model.lr", "1e-9"]
    assert fmnist("sweep", *useless, "--n_trials", "3", "--prune_after", "3") == 0
    assert fmnist("sweep", *useless, "--n_trials", "4") == 0
    trials = study("p").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3 + [TrialState.PRUNED]
    pruned = Path("runs/p/trial_3")
    assert len(events(pruned).Scalars("Loss/val")) == 1  # one of two epochs
    values, _ = session(pruned)
    assert values["trial_state"] == "pruned" and values["lr"] == pytest.approx(1e-9)


def test_no_trial_starts_after_the_timeout(fmnist: Callable[..., int], fast: Path, tmp_path: Path, capsys) -> None:
    space = write(tmp_path / "t.yaml", SPACE)
    assert (
        fmnist("sweep", "--space", str(space), "--timeout", "0.001", "--config", str(fast), "--trainer.max_epochs", "1")
        == 0
    )
    assert len(study("t").trials) == 1  # the first trial always runs; no other starts after the time
    assert "study t: 1 of 3 trials finished" in capsys.readouterr().out


def test_the_same_sampler_seed_samples_the_same_values_again(
    fmnist: Callable[..., int], fast: Path, tmp_path: Path
) -> None:
    space = write(tmp_path / "seeded.yaml", {**SPACE, "n_trials": 2, "pruner": "none", "sampler_seed": 7})
    one_epoch = ["--config", str(fast), "--trainer.max_epochs", "1"]
    for name, seed in (("first", []), ("again", []), ("other", ["--sampler_seed", "8"])):
        assert fmnist("sweep", "--space", str(space), "--study", name, *seed, *one_epoch) == 0
    first, again, other = ([t.params for t in study(name).trials] for name in ("first", "again", "other"))
    assert first == again and len(first) == 2  # the space file's seed, twice
    assert other != first  # the flag's seed wins over the file's


SPACE_FILES = sorted(p for p in (REPO / "configs").glob("*.yaml") if "space" in yaml.safe_load(p.read_text()))


@pytest.mark.parametrize("path", SPACE_FILES, ids=[p.name for p in SPACE_FILES])
def test_every_space_file_in_configs_passes_the_checks(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # where their commands run: configs/seeds.yaml names configs/tuned.yaml
    settings, params = load(path)
    assert check_against_fit(settings["fit"], params) == "runs" and params


@pytest.mark.parametrize(
    "path",  # the first in the fast suite, every one in the full suite
    [pytest.param(path, marks=[pytest.mark.slow] if i else []) for i, path in enumerate(SPACE_FILES)],
    ids=[p.name for p in SPACE_FILES],
)
def test_every_space_file_in_configs_runs_its_first_trial(path: Path, fmnist: Callable[..., int]) -> None:
    """A space file is only as good as the fits it starts: each one's first trial, cut to 2 batches, must end."""
    Path("configs").symlink_to(REPO / "configs")  # the files name their fit configs as configs/...
    cut = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
           "--trainer.limit_test_batches", "1"]  # fmt: skip
    assert fmnist("sweep", "--space", f"configs/{path.name}", "--study", "first", "--n_trials", "1", *cut) == 0
    assert [t.state for t in study("first").trials] == [TrialState.COMPLETE]


@pytest.mark.slow  # real processes
def test_two_workers_share_one_study(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    space = write(tmp_path / "two.yaml", {**SPACE, "n_trials": 4})
    done = run_sweep(
        sweep_command(data_dir, "--space", str(space), "--workers", "2", "--config", str(fast)), timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    trials = study("two").trials
    assert len(finished(trials)) == 4
    folders = [t.user_attrs["run_dir"] for t in finished(trials)]
    assert len(set(folders)) == 4 and all((Path(f) / "config.yaml").is_file() for f in folders)


@pytest.mark.slow  # real processes, and a wait for the killed trial's heartbeat to go stale
def test_a_killed_sweep_continues_to_exactly_n_trials(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    space = write(tmp_path / "killed.yaml", {**SPACE, "n_trials": 2})
    command = sweep_command(data_dir, "--space", str(space), "--config", str(fast))
    process = subprocess.Popen(
        command, env=environment(PYTHONWARNINGS="ignore"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not list(Path("runs/killed/trial_1").glob("events.*")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert process.poll() is None, "the sweep ended before its second trial could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = study("killed").trials
    assert len(finished(trials)) == 2
    killed = next(t for t in trials if t.number == 1)
    assert killed.state == TrialState.FAIL  # found by its stopped heartbeat
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    values, status = session(Path("runs/killed/trial_1"))  # the killed trial's row, written on restart
    assert values["trial_state"] == "failed" and status == api_pb2.Status.Value("STATUS_FAILURE")
    assert values["model.lr"] == pytest.approx(killed.params["model.lr"])
    assert "failed" in done.stdout and "2 of 2 trials finished" in done.stdout


@pytest.mark.slow  # real processes, and a wait of ORPHANED seconds for the orphan
def test_a_trial_that_never_beat_does_not_stall_the_resumed_sweep(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    """A process that dies between starting a trial and its first heartbeat (the database went away
    then) leaves a running trial Optuna's own check never calls stale; the resumed sweep waited on it."""
    space = write(tmp_path / "orphan.yaml", {**SPACE, "n_trials": 1})
    command = sweep_command(data_dir, "--space", str(space), "--config", str(fast))
    first = run_sweep(command, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    orphan = study("orphan").ask()  # running, and no heartbeat ever
    write(space, {**SPACE, "n_trials": 2})
    done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = study("orphan").trials
    assert trials[orphan.number].state == TrialState.FAIL
    assert len(finished(trials)) == 2 and "2 of 2 trials finished" in done.stdout


BAD_SPACES = {
    "unknown key": (
        {"space": {"model.nope": {"type": "float", "low": 0.1, "high": 0.2}}},
        "model.nope is not an option of python -m fmnist fit",
    ),
    "bad range": (
        {"space": {"model.lr": {"type": "float", "low": 0.1, "high": 0.01}}},
        "bad range: low (0.1) must be below high (0.01)",
    ),
    "unknown type": ({"space": {"model.lr": {"type": "gaussian", "low": 0.1, "high": 0.2}}}, "unknown type 'gaussian'"),
    "value fit rejects": (
        {"space": {"model.dropout": {"type": "float", "low": 0.1, "high": 1.5}}},
        "model.dropout = 1.5 is rejected by fit",
    ),
    "log from zero": (
        {"space": {"model.lr": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
        "a log range needs low > 0",
    ),
    "int with float bounds": (
        {"space": {"model.hidden_size": {"type": "int", "low": 1.5, "high": 8}}},
        "low must be an integer",
    ),
    "step and log": (
        {"space": {"model.lr": {"type": "float", "low": 0.1, "high": 0.2, "step": 0.1, "log": True}}},
        "step and log cannot be combined",
    ),
    "empty choices": (
        {"space": {"data.batch_size": {"type": "categorical", "choices": []}}},
        "non-empty list of choices",
    ),
    "extra field": ({"space": {"data.batch_size": {"type": "categorical", "choices": [1], "low": 1}}}, "not 'low'"),
    "not a range": ({"space": {"model.lr": 0.1}}, "needs a range"),
    "no space": ({"metric": "Loss/val"}, "needs a 'space:' mapping"),
    "unknown setting": ({"trials": 3, "space": SPACE["space"]}, "unknown setting 'trials'"),
    "bad n_trials": ({"n_trials": 0, "space": SPACE["space"]}, "n_trials must be a positive integer"),
    "bad pruner": ({"pruner": "mean", "space": SPACE["space"]}, "pruner must be one of"),
    "bad prune_after": ({"prune_after": 0, "space": SPACE["space"]}, "prune_after must be a positive integer"),
    "bad sampler_seed": ({"sampler_seed": -1, "space": SPACE["space"]}, "sampler_seed must be an integer from 0"),
    "grid on a float": (
        {"sampler": "grid", "space": SPACE["space"]},
        "the grid sampler needs a step for the float range of model.lr",
    ),
    "grid too small": (
        {"sampler": "grid", "n_trials": 3, "space": {"data.batch_size": {"type": "categorical", "choices": [32, 64]}}},
        "exceeds the grid's 2 combinations",
    ),
    "fit section not a mapping": ({"fit": ["x"], "space": SPACE["space"]}, "'fit:' must map fit options to values"),
}


@pytest.mark.parametrize("name", BAD_SPACES)
def test_a_bad_space_is_one_error_line_and_no_runs(
    name: str, fmnist: Callable[..., int], tmp_path: Path, capsys
) -> None:
    content, message = BAD_SPACES[name]
    assert fmnist("sweep", "--space", str(write(tmp_path / "bad.yaml", content))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error:") and message in err[0], err
    assert not Path("runs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "missing.yaml"], "--space missing.yaml: No such file or directory"),
        (["--space", "SPACE", "--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot open it"),
        (["--space", "SPACE", "--workers", "x"], "argument --workers: invalid int value"),
        (["--space", "SPACE", "--trainer.logger", "false"], "trials need a TensorBoard logger"),
    ],
)
def test_bad_flags_are_one_error_line_and_no_runs(
    args: list[str], message: str, fmnist: Callable[..., int], tmp_path: Path, capsys
) -> None:
    space = str(write(tmp_path / "s.yaml", SPACE))
    assert fmnist("sweep", *[space if arg == "SPACE" else arg for arg in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fmnist: error:") and message in err[0], err
    assert not Path("runs").exists()


def test_a_metric_that_is_not_logged_stops_the_sweep(
    fmnist: Callable[..., int], fast: Path, tmp_path: Path, capsys
) -> None:
    space = write(tmp_path / "m.yaml", {**SPACE, "metric": "Accuracy/nope"})
    assert fmnist("sweep", "--space", str(space), "--config", str(fast), "--trainer.max_epochs", "1") == 2
    assert (
        "fmnist: error: metric 'Accuracy/nope' was not logged by the trial; logged scalars: Accuracy/train"
        in capsys.readouterr().err
    )
    assert [t.state for t in study("m").trials] == [TrialState.FAIL]


@pytest.mark.slow  # real processes and a real database server
def test_two_workers_on_a_postgresql_study(data_dir: Path, fast: Path, tmp_path: Path, postgres: Server) -> None:
    space = write(tmp_path / "pg.yaml", {**SPACE, "n_trials": 4})
    command = sweep_command(
        data_dir, "--space", str(space), "--workers", "2", "--config", str(fast), "--storage", postgres.url
    )
    done = run_sweep(command)
    assert done.returncode == 0, done.stderr[-2000:]
    trials = optuna.load_study(study_name="pg", storage=postgres.url).trials
    assert len(finished(trials)) == 4
    assert len({t.user_attrs["run_dir"] for t in finished(trials)}) == 4
    assert not Path("runs/pg/study.db").exists()
