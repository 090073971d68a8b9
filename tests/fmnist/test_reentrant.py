"""``main()`` is re-entrant: called any number of times in one process, it leaves logging and warnings as one call does.

Tests, notebooks and the sweep's in-process worker call it again and again; a filter or a hook
added per call would pile up (and once did: 3 logging filters after one call, 63 after 21).
"""

import logging
import warnings
from pathlib import Path

import pytest
import yaml

from fmnist.main import main

LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed", "lightning.pytorch")


def _state() -> tuple:
    """What a call could leave behind: each logger's filters and level, the warning filters and hooks."""
    loggers = tuple((tuple(logging.getLogger(n).filters), logging.getLogger(n).level) for n in LOGGERS)
    # the filters as a set and a count: a call moves its own ignore filters to the front, which changes nothing
    return loggers, frozenset(warnings.filters), len(warnings.filters), warnings.showwarning, warnings.formatwarning


def _run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


@pytest.mark.slow  # fifty commands
def test_fifty_calls_leave_what_the_first_left(data_dir: Path, tmp_path: Path, capsys) -> None:
    data = ["--data.data_dir", str(data_dir), "--data.val_size", "128", "--data.download", "false"]
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"n_trials": 1, "space": {"model.lr": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    )
    tiny = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    levels = {name: logging.getLogger(name).level for name in LOGGERS}
    with warnings.catch_warnings():  # what the calls change is undone for the other tests
        calls = [
            lambda: _run("fit", *data, *quiet, *tiny, "--test_after_fit", "false"),
            lambda: _run("sweep", "--space", str(space), "--workers", "1", *data, *tiny),
            lambda: _run("validate", *data, "--ckpt_path", "no-such.ckpt"),
            lambda: _run("test", "--no-such-flag", "1"),
        ]
        try:
            assert [call() for call in calls[:2]] == [0, 0], capsys.readouterr().err
            after_first = _state()
            statuses = [calls[1 + number % 3]() for number in range(48)]  # the sweep: its study is complete
            after_last = _state()
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
    assert statuses == [0, 2, 2] * 16
    assert after_last == after_first, "a later call added a filter, a level or a hook"
