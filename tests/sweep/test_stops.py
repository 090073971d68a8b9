"""A stopped sweep leaves nothing running: real signals to a real ``python -m fmnist sweep`` of two workers.

SIGTERM to the command, Ctrl-C to its process group, ``timeout`` and ``kill -9`` of the command: within
10 s no process of the sweep is left, the trials in flight are failed (none RUNNING), no traceback, and
the same command then finishes exactly n_trials. ``kill -9`` of one worker: its trial is failed and
run again, the worker started again, and the sweep ends as if nothing happened.
"""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import environment
from tests.sweep.helpers import SPACE, Server, finished, run_sweep, study, sweep_command, write

pytestmark = pytest.mark.slow  # real processes, stopped for real

N_TRIALS = 4
#: Each training batch 0.5 s longer (tests/fmnist/slow_steps.py): a trial trains for 4 to 8 s
SLOW = ["--trainer.callbacks+", "tests.fmnist.slow_steps.SlowSteps", "--trainer.callbacks.seconds", "0.5"]


def _command(data_dir: Path, fast: Path, tmp_path: Path, name: str) -> list[str]:
    space = write(tmp_path / f"{name}.yaml", {**SPACE, "n_trials": N_TRIALS})
    return sweep_command(data_dir, "--space", str(space), "--workers", "2", "--config", str(fast), *SLOW)


def _start(command: list[str], **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=environment(PYTHONWARNINGS="ignore"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        **kwargs,
    )  # fmt: skip


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, from /proc; not multiprocessing's resource tracker."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            tracker = b"resource_tracker" in (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and not tracker:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, ended but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _workers_training(sweep: subprocess.Popen, name: str, pid: int | None = None) -> list[int]:
    """Waits until both workers of the sweep (process ``pid``, else ``sweep``'s) run a trial; their process ids."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert sweep.poll() is None, sweep.communicate()[1][-3000:]
        running = [t for t in study_or_none(name) if t.state == TrialState.RUNNING and "run_dir" in t.user_attrs]
        workers = _children(pid or sweep.pid)
        if len(running) == 2 and len(workers) == 2:
            time.sleep(0.5)  # into the trials' training
            return workers
        time.sleep(0.2)
    raise AssertionError("the two workers never ran a trial at the same time")


def study_or_none(name: str) -> list:
    """The study's trials; none before its first trial began (reading it earlier would race the sweep that
    makes its tables: Optuna's storage makes any that are missing)."""
    return study(name).trials if Path(f"runs/{name}/trial_0").is_dir() else []


def _nothing_left(pids: list[int], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in pids if _alive(pid)], "a worker outlived its sweep by more than 10 s"


def _resumes(command: list[str], name: str) -> None:
    """No trial is left RUNNING; the same command finishes exactly n_trials, the failed ones run again."""
    trials = study(name).trials
    assert not [t.number for t in trials if t.state == TrialState.RUNNING], [(t.number, t.state) for t in trials]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped, "the trials in flight were failed"
    done = run_sweep(command, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = study(name).trials
    assert len(finished(trials)) == N_TRIALS and not [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.system_attrs.get("failed_trial") for t in finished(trials)}
    assert {t.system_attrs.get("failed_trial", t.number) for t in stopped} <= retried, "each stopped trial ran again"


@pytest.mark.parametrize(
    ("how", "status"),
    [("SIGTERM to the command", 143), ("Ctrl-C to the process group", 130)],
)
def test_a_stopped_sweep_leaves_nothing_running(
    how: str, status: int, data_dir: Path, fast: Path, tmp_path: Path
) -> None:
    name = "term" if status == 143 else "ctrlc"
    command = _command(data_dir, fast, tmp_path, name)
    sweep = _start(command, start_new_session=True)  # its own process group, as a terminal gives a command
    try:
        workers = _workers_training(sweep, name)
        if status == 143:
            sweep.send_signal(signal.SIGTERM)
        else:
            os.killpg(sweep.pid, signal.SIGINT)
        out, err = sweep.communicate(timeout=30)
    finally:
        sweep.kill()
    assert sweep.returncode == status, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("fmnist:")]
    signal_name = "SIGTERM" if status == 143 else "Ctrl-C (SIGINT)"
    assert line.startswith(f"fmnist: sweep stopped by {signal_name} (")
    assert line.endswith("the trials in flight are failed and run first when the same command runs again")
    _nothing_left(workers)
    _resumes(command, name)


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_timeout_ends_a_sweep_and_leaves_nothing_running(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    command = _command(data_dir, fast, tmp_path, "timed")
    sweep = _start(["timeout", "600", *command])
    try:
        deadline = time.monotonic() + 30
        while not _children(sweep.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        (child,) = _children(sweep.pid)  # timeout's child: the sweep
        workers = _workers_training(sweep, "timed", child)
        # a SIGTERM to timeout goes on to its command, as the SIGTERM timeout sends when its time is up
        sweep.send_signal(signal.SIGTERM)
        out, err = sweep.communicate(timeout=30)
    finally:
        sweep.kill()
    assert sweep.returncode == 143, err[-3000:]  # timeout passes on its command's status
    assert "Traceback" not in err and err.count("fmnist: sweep stopped by SIGTERM") == 1, err[-3000:]
    _nothing_left([child, *workers])
    _resumes(command, "timed")


def test_kill_9_of_the_sweep_leaves_no_worker_behind(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    command = _command(data_dir, fast, tmp_path, "killed")
    sweep = _start(command)
    try:
        workers = _workers_training(sweep, "killed")
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.communicate()
    _nothing_left(workers)  # each noticed its sweep gone, failed its trial and ended
    _resumes(command, "killed")


def test_a_killed_worker_is_started_again_and_its_trial_runs_again(data_dir: Path, fast: Path, tmp_path: Path) -> None:
    command = _command(data_dir, fast, tmp_path, "one")
    sweep = _start(command)
    try:
        first, _ = _workers_training(sweep, "one")
        os.kill(first, signal.SIGKILL)
        out, err = sweep.communicate(timeout=300)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, err[-3000:]
    trials = study("one").trials
    assert len(finished(trials)) == N_TRIALS and not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    # the killed worker's trial; on a loaded machine another trial's heartbeat may also fall silent past the
    # grace and be failed and queued again, which is the same recovery: every failed trial ran again
    (killed,) = [t for t in failed if t.user_attrs["worker"].endswith(f":{first}")]
    for trial in failed:
        retry = next(t for t in trials if t.system_attrs.get("failed_trial") == trial.number)
        assert retry.state == TrialState.COMPLETE and retry.params == trial.params
    assert f"{N_TRIALS} of {N_TRIALS} trials finished" in out


def test_two_sweeps_on_one_postgresql_study_are_stopped_and_go_on(
    data_dir: Path, fast: Path, tmp_path: Path, postgres: Server
) -> None:
    """docs/clusters.md's rehearsal: two machines' commands on one study, one stopped by SIGTERM, the other by
    Ctrl-C, both started again; the study ends with exactly n_trials and none running."""
    space = write(tmp_path / "shared.yaml", {**SPACE, "n_trials": 6})
    command = sweep_command(data_dir, "--space", str(space), "--config", str(fast), "--storage", postgres.url, *SLOW)
    started = time.monotonic()
    machines = [_start(command, start_new_session=True)]
    try:
        deadline = time.monotonic() + 180
        while not Path("runs/shared/trial_0").is_dir() and time.monotonic() < deadline:
            time.sleep(0.2)  # the second joins once the study is made: two first connections race to make its tables
        machines.append(_start(command, start_new_session=True))
        while time.monotonic() < deadline:
            load = optuna_study(postgres.url, "shared")
            if load and len([t for t in load if t.state == TrialState.RUNNING and "run_dir" in t.user_attrs]) == 2:
                break
            time.sleep(0.2)
        time.sleep(1)
        machines[0].send_signal(signal.SIGTERM)
        os.killpg(machines[1].pid, signal.SIGINT)
        ended = [machine.communicate(timeout=30) for machine in machines]
    finally:
        for machine in machines:
            machine.kill()
    assert [machine.returncode for machine in machines] == [143, 130], [err[-2000:] for _, err in ended]
    stopped = optuna_study(postgres.url, "shared")
    assert not [t for t in stopped if t.state == TrialState.RUNNING]
    again = [_start(command) for _ in range(2)]
    results = [machine.communicate(timeout=300) for machine in again]
    assert [machine.returncode for machine in again] == [0, 0], [err[-2000:] for _, err in results]
    trials = optuna_study(postgres.url, "shared")
    assert len(finished(trials)) == 6 and not [t for t in trials if t.state == TrialState.RUNNING]
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    print(
        f"\ntwo commands on one study: stopped after {len(finished(stopped))} finished trials, {len(failed)} failed"
        f" by the stop ({failed}); started again: 6 of 6 finished, none running, {time.monotonic() - started:.0f} s"
    )


def optuna_study(url: str, name: str) -> list:
    """The trials of study ``name`` in the database at ``url``; none before its first trial began (see above)."""
    return optuna.load_study(study_name=name, storage=url).trials if Path(f"runs/{name}/trial_0").is_dir() else []
