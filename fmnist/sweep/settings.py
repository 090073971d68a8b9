"""The settings of ``python -m fmnist sweep``, each declared once: name, default, allowed values and help.

Every field of :class:`Settings` is both a flag (``--n_trials 40``) and a top-level key of the
space file (``n_trials: 40``); the flag wins. The flags, the keys a space file may use, and the
checks of the values are all built from these fields, so a new setting is one field here (and
where it is used).
"""

import argparse
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna

from fmnist.errors import InputError

#: Trials a study ends with when ``n_trials`` is not given and the sampler is not the grid.
DEFAULT_TRIALS = 20
#: Each pruner, given ``prune_after``: the complete trials the median rule waits for (why 2:
#: docs/results.md, "Why the median pruner waits for 2 complete trials").
PRUNERS = {
    "median": lambda after: optuna.pruners.MedianPruner(n_startup_trials=after, n_warmup_steps=0),
    "hyperband": lambda after: optuna.pruners.HyperbandPruner(min_resource=1),
    "none": lambda after: optuna.pruners.NopPruner(),
}
#: Each sampler, given the searched parameters (the grid sampler needs their values) and a seed.
SAMPLERS = {
    "tpe": lambda params, seed: optuna.samplers.TPESampler(seed=seed),
    "random": lambda params, seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda params, seed: optuna.samplers.GridSampler({p.key: p.grid() for p in params}, seed=seed),
}
DIRECTIONS = ("maximize", "minimize")


def default_storage(root: Path) -> str:
    """The study's database when no ``--storage`` is given: SQLite in the study's folder ``root``."""
    return f"sqlite:///{root / 'study.db'}"


@dataclass(frozen=True)
class Kind:
    """What values a setting takes: the flag's parser, a check, and how the check's error names it."""

    parse: Callable[[str], Any] | None  # None: a flag without a value (argparse's store_true)
    valid: Callable[[Any], bool]
    described: str


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


TEXT = Kind(str, lambda v: isinstance(v, str) and bool(v), "a non-empty string")
POSITIVE_INT = Kind(int, lambda v: _is_int(v) and v >= 1, "a positive integer")
POSITIVE_INT_OR_ZERO = Kind(int, lambda v: _is_int(v) and v >= 0, "a trial number (0 or more)")
SEED = Kind(int, lambda v: _is_int(v) and 0 <= v < 2**32, "an integer from 0 to 2**32 - 1")


def _names(text: str) -> str | list[str]:
    """A flag's value as one name, or several separated by commas: ``Accuracy/val_best,Model/params``."""
    names = [name.strip() for name in text.split(",")]
    return names[0] if len(names) == 1 else names


def _one_or_more(valid: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: valid(v) or isinstance(v, list) and bool(v) and all(valid(item) for item in v)


NAMES_KIND = Kind(_names, _one_or_more(lambda v: isinstance(v, str) and bool(v)), "a name or a list of names")
DIRECTION_KIND = Kind(_names, _one_or_more(lambda v: v in DIRECTIONS), "maximize or minimize, or a list of them")
SWITCH = Kind(None, lambda v: isinstance(v, bool), "true or false")
SECONDS = Kind(
    float, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0, "a positive number of seconds"
)


def setting(default: Any, help: str, kind: Kind = TEXT, choices: tuple[str, ...] = ()) -> Any:
    """A field of :class:`Settings`; ``None`` as default means "derived" (the help says from what)."""
    return field(default=default, metadata={"help": help, "kind": kind, "choices": choices})


@dataclass
class Settings:
    """The sweep's settings, with their defaults."""

    metric: str | list[str] = setting(
        "Accuracy/val_best",
        "logged scalar to optimize; two or more (a list, or separated by commas) make a multi-objective study",
        NAMES_KIND,
    )
    direction: str | list[str] = setting(
        "maximize", "maximize or minimize: one per metric (a list, or separated by commas)", DIRECTION_KIND
    )
    n_trials: int | None = setting(
        None,
        f"finished trials (complete + pruned) the study ends with (default: {DEFAULT_TRIALS}; grid: its size)",
        POSITIVE_INT,
    )
    workers: int = setting(1, "trials run at once on this machine, as processes sharing the cores", POSITIVE_INT)
    repeats: int = setting(
        1,
        "seeds per sampled configuration: a trial fits it with seed_everything, +1, ... (runs trial_<n>/seed_<s>/) "
        "and its value is their mean; pruning judges the first seed. 2 or more measure the seed noise",
        POSITIVE_INT,
    )
    storage: str | None = setting(
        None,
        f"Optuna storage URL (default: {default_storage(Path('<save_dir>/<study>'))}); postgresql://... "
        "or mysql://... to share one study between machines",
    )
    storage_wait: float = setting(
        120,
        "seconds the sweep waits for a storage that went away (a database restart, a failover) before the sweep "
        "stops; the same command then resumes it",
        SECONDS,
    )
    study: str | None = setting(
        None, "study name and folder under the logger's save_dir (default: the space file's name)"
    )
    pruner: str = setting("median", "stop hopeless trials after a validation epoch", choices=tuple(PRUNERS))
    prune_after: int = setting(2, "complete trials before the median pruner stops any", POSITIVE_INT)
    sampler: str = setting(
        "tpe",
        "how values are chosen; grid tries each combination of categorical/int/stepped values once",
        choices=tuple(SAMPLERS),
    )
    sampler_seed: int | None = setting(
        None, "seed of the sampler: a one-worker sweep with the same seed samples the same values again", SEED
    )
    timeout: float | None = setting(None, "seconds after which no new trial starts (default: none)", SECONDS)
    pick: int | None = setting(
        None,
        "the trial whose configuration best.yaml gets (default: the best trial; with several metrics, "
        "each Pareto-optimal trial gets best_<n>.yaml)",
        POSITIVE_INT_OR_ZERO,
    )
    verbose: bool = setting(
        False, "print Lightning's and Optuna's messages of every trial, not one line per trial", SWITCH
    )

    def check(self) -> None:
        """Each value against its declaration, however it was given (flag or space file)."""
        for spec in fields(self):
            value, kind, choices = getattr(self, spec.name), spec.metadata["kind"], spec.metadata["choices"]
            if value is None and spec.default is None:
                continue
            if choices and value not in choices:
                raise InputError(f"sweep: {spec.name} must be one of {', '.join(choices)}, got {value!r}")
            if not choices and not kind.valid(value):
                raise InputError(f"sweep: {spec.name} must be {kind.described}, got {value!r}")
        if len(self.directions) != len(self.metrics):
            raise InputError(
                f"sweep: {len(self.metrics)} metrics need {len(self.metrics)} directions, got {self.direction!r}"
            )

    @property
    def metrics(self) -> list[str]:
        """The metric, or the metrics of a multi-objective study, as a list."""
        return self.metric if isinstance(self.metric, list) else [self.metric]

    @property
    def directions(self) -> list[str]:
        return self.direction if isinstance(self.direction, list) else [self.direction]


NAMES = tuple(spec.name for spec in fields(Settings))


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--<name>`` flag per setting; unset flags are ``None``, so the space file's values stand."""
    for spec in fields(Settings):
        help, kind, choices = spec.metadata["help"], spec.metadata["kind"], spec.metadata["choices"]
        if spec.default not in (None, False, MISSING):
            help = f"{help} (default {spec.default})"
        if choices:
            parser.add_argument(f"--{spec.name}", choices=choices, help=help)
        elif kind.parse is None:
            parser.add_argument(f"--{spec.name}", action="store_true", default=None, help=help)
        else:
            parser.add_argument(f"--{spec.name}", type=kind.parse, help=help)
