"""``python -m fmnist sweep`` on a real PostgreSQL server with a password: Optuna's own tools read the
study with the same URL, the password is shown nowhere, and an outage of the database is waited out:
the workers that lose it end, the sweep waits for it, and the trials they held run again."""

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import environment
from tests.sweep.helpers import PASSWORD, SPACE, Server, finished, run_sweep, sweep_command, write

pytestmark = pytest.mark.slow  # real processes and a real database server


def start_sweep(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=environment(PYTHONWARNINGS="ignore"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def when_trial_starts(folder: Path, process: subprocess.Popen) -> None:
    """Waits until the sweep's first trial has its run folder (it then trains)."""
    deadline = time.monotonic() + 120
    while not (folder / "trial_0").is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the sweep ended before its first trial started"


def test_optuna_reads_the_study_with_the_same_url_and_the_password_is_shown_nowhere(
    postgres: Server, data_dir: Path, fast: Path, tmp_path: Path
) -> None:
    space = write(tmp_path / "pg.yaml", {**SPACE, "n_trials": 2})
    command = sweep_command(data_dir, "--space", str(space), "--config", str(fast), "--storage", postgres.url)
    done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the URL as the user gave it, in Optuna's own API and its command-line tool (SQLAlchemy's default
    # driver for postgresql://, psycopg 3)
    trials = optuna.load_study(study_name="pg", storage=postgres.url).trials
    assert len(finished(trials)) == 2
    assert all((Path(t.user_attrs["run_dir"]) / "config.yaml").is_file() for t in trials)
    listed = subprocess.run(
        [
            Path(sys.executable).parent / "optuna",
            "trials",
            "--study-name",
            "pg",
            "--storage",
            postgres.url,
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert len(json.loads(listed.stdout)) == 2
    # nothing the sweep printed or wrote has the password: summary, logs, best.yaml, event files, HParams
    assert f"storage {postgres.shown}" in done.stdout
    for line in (done.stdout + done.stderr).splitlines():
        assert PASSWORD not in line, line
    files = [path for path in Path("runs").rglob("*") if path.is_file()]
    assert Path("runs/pg/best.yaml") in files and any(path.name.startswith("events.") for path in files)
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path
    # nor does the error line of a wrong password
    wrong = postgres.url.replace(PASSWORD, PASSWORD[::-1])
    refused = run_sweep([*command[:-1], wrong], timeout=120)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"fmnist: error: --storage {postgres.shown}: cannot open it"), line
    assert "password authentication failed" in line and PASSWORD[::-1] not in line


@pytest.mark.parametrize(("seconds", "workers", "n_trials"), [(20, 2, 5), (60, 2, 5), (20, 1, 3)])
def test_a_database_crash_in_the_middle_of_a_sweep_is_waited_out(
    seconds: int, workers: int, n_trials: int, postgres: Server, data_dir: Path, fast: Path, tmp_path: Path
) -> None:
    space = write(tmp_path / "outage.yaml", {**SPACE, "n_trials": n_trials})
    command = sweep_command(
        data_dir, "--space", str(space), "--workers", str(workers), "--config", str(fast), "--storage", postgres.url
    )
    sweep = start_sweep(command)
    try:
        when_trial_starts(Path("runs/outage"), sweep)
        stopped = datetime.now()
        postgres.stop("immediate")
        time.sleep(seconds)
        postgres.start()
        out, err = sweep.communicate(timeout=600)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "fmnist: error" not in err and PASSWORD not in out + err, err[-3000:]
    trials = optuna.load_study(study_name="outage", storage=postgres.url).trials
    assert len(finished(trials)) == n_trials  # exactly n_trials, as without the outage
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # the trials in flight count as killed: failed, and their values ran again
    lost = [t for t in trials if t.state == TrialState.FAIL and t.datetime_start < stopped]
    # each ran again to its end: a retry names the first trial of its chain (a retry lost in turn is retried
    # again), and has the lost trial's values; a trial asked for just as the database went has none yet
    # (it never began), and its retry samples them
    again = [f for f in finished(trials) if f.system_attrs.get("failed_trial") is not None]
    states = [(t.number, t.state, t.params, t.system_attrs.get("failed_trial")) for t in trials]
    assert lost, states
    for t in lost:
        retries = [f for f in again if f.system_attrs["failed_trial"] == t.system_attrs.get("failed_trial", t.number)]
        assert retries and all(f.params == t.params for f in retries if t.params), states
    assert f"{n_trials} of {n_trials} trials finished" in out


def test_a_database_gone_for_good_is_one_error_line_and_the_same_command_resumes(
    postgres: Server, data_dir: Path, fast: Path, tmp_path: Path
) -> None:
    space = write(tmp_path / "gone.yaml", {**SPACE, "n_trials": 3})
    command = sweep_command(
        data_dir, "--space", str(space), "--workers", "2", "--config", str(fast), "--storage", postgres.url
    )
    sweep = start_sweep([*command, "--storage_wait", "5"])
    try:
        when_trial_starts(Path("runs/gone"), sweep)
        postgres.stop("immediate")
        out, err = sweep.communicate(timeout=120)
    finally:
        sweep.kill()
    assert sweep.returncode == 2, err[-3000:]
    assert "Traceback" not in err and PASSWORD not in out + err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("fmnist: error:")]
    assert line.startswith(f"fmnist: error: --storage {postgres.shown}: still unreachable after 5 s"), line
    assert "run the same command again to resume" in line
    postgres.start()
    done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = optuna.load_study(study_name="gone", storage=postgres.url).trials
    assert len(finished(trials)) == 3 and not [t for t in trials if t.state == TrialState.RUNNING]
    # the trials that were in flight count as killed: failed, and their values run again
    assert [t for t in finished(trials) if t.system_attrs.get("failed_trial") is not None]
    assert "3 of 3 trials finished" in done.stdout
