"""The search space file of ``python -m fmnist sweep``: read and checked before any trial runs.

A YAML file with the sweep's settings, fit options fixed for every trial, and a ``space`` of
searched fit options (``configs/sweep.yaml``)::

    metric: Accuracy/val_best
    direction: maximize
    fit:
      trainer.max_epochs: 2
    space:
      model.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      data.batch_size: {type: categorical, choices: [32, 64, 128]}
      model.hidden_size: {type: int, low: 64, high: 256, step: 64}

Each range becomes one of Optuna's ``trial.suggest_*`` calls. Whether a key is a fit option, and
whether its values are valid, is asked of the fit parser itself (:func:`check_against_fit`).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from jsonargparse import ArgumentError

from fmnist.cli import FashionCLI
from fmnist.errors import InputError
from fmnist.runs import tensorboard_configs
from fmnist.sweep.settings import NAMES

#: Fields each range type accepts (``type`` aside).
FIELDS = {"float": {"low", "high", "step", "log"}, "int": {"low", "high", "step", "log"}, "categorical": {"choices"}}


@dataclass(frozen=True)
class Param:
    """One searched fit option, e.g. ``model.lr`` from 1e-4 to 1e-2 on a log scale."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.type == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.type == "int":
            return optuna.distributions.IntDistribution(
                int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def probes(self) -> list[Any]:
        """Values the fit parser must accept: the ends of a range, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high]

    def grid(self) -> list[Any] | None:
        """Every value for the grid sampler; ``None`` for a continuous range."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [self.low + i * self.step for i in range(count)]


def load(path: Path) -> tuple[dict[str, Any], list[Param]]:
    """The settings and the ranges of a space file; an :class:`InputError` naming the problem otherwise."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(f"--space {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise InputError(f"--space {path} is not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(data, dict) or not isinstance(data.get("space"), dict) or not data["space"]:
        raise InputError(f"--space {path}: needs a 'space:' mapping of fit options to ranges, see configs/sweep.yaml")
    unknown = sorted(set(data) - {"space", "fit", *NAMES})
    if unknown:
        raise InputError(f"--space {path}: unknown setting {unknown[0]!r}; settings are space, fit, {', '.join(NAMES)}")
    fixed = data.get("fit") or {}
    if not isinstance(fixed, dict):
        raise InputError(f"--space {path}: 'fit:' must map fit options to values, e.g. trainer.max_epochs: 2")
    settings = {key: value for key, value in data.items() if key not in ("space", "fit")}
    settings["fit"] = [arg for key, value in fixed.items() for arg in (f"--{key}", as_flag(value))]
    return settings, [_param(path, str(key), spec) for key, spec in data["space"].items()]


def as_flag(value: Any) -> str:
    """A value as jsonargparse reads a flag's value (YAML): ``64``, ``true``, ``torch.optim.SGD``."""
    return value if isinstance(value, str) else json.dumps(value)


def _param(path: Path, key: str, spec: Any) -> Param:
    def fail(problem: str) -> InputError:
        return InputError(f"--space {path}: {key}: {problem}")

    if not isinstance(spec, dict):
        raise fail("needs a range such as {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")
    kind = spec.get("type")
    if kind not in FIELDS:
        raise fail(f"unknown type {kind!r}; types are float, int and categorical")
    extra = sorted(set(spec) - FIELDS[kind] - {"type"})
    if extra:
        raise fail(f"{kind} takes {', '.join(sorted(FIELDS[kind]))}, not {extra[0]!r}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail("categorical needs a non-empty list of choices")
        return Param(key, kind, choices=tuple(choices))
    number = int if kind == "int" else (int, float)
    low, high, step, log = spec.get("low"), spec.get("high"), spec.get("step"), spec.get("log", False)
    for name, value in (("low", low), ("high", high)):
        if not isinstance(value, number) or isinstance(value, bool):
            raise fail(f"{name} must be {'an integer' if kind == 'int' else 'a number'}, got {value!r}")
    if not low < high:
        raise fail(f"bad range: low ({low}) must be below high ({high})")
    if not isinstance(log, bool):
        raise fail(f"log must be true or false, got {log!r}")
    if log and low <= 0:
        raise fail(f"bad range: a log range needs low > 0, got {low}")
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        raise fail(f"step must be a positive {'integer' if kind == 'int' else 'number'}, got {step!r}")
    if step is not None and log:
        raise fail("step and log cannot be combined (Optuna samples either on a grid or on a log scale)")
    as_number = int if kind == "int" else float
    return Param(key, kind, as_number(low), as_number(high), step and as_number(step), log)


def check_against_fit(fit_options: list[str], params: list[Param]) -> str:
    """Ask the fit parser whether the fit options, each space key and each end of its range are valid.

    Returns the logger's ``save_dir``, under which the study's folder goes.
    """
    cli = FashionCLI(fit_options, run=False, instantiate=False)
    loggers = tensorboard_configs(cli.config.trainer.logger)
    if not loggers:
        raise InputError("sweep: trials need a TensorBoard logger (--trainer.logger), as in configs/default.yaml")
    for param in params:
        for value in param.probes():
            try:
                cli.parser.parse_args([*fit_options, f"--{param.key}", as_flag(value)])
            except ArgumentError as err:
                message = " ".join(str(err).split())
                if "nrecognized argument" in message or "not a valid" in message and "key" in message:
                    raise InputError(f"--space: {param.key} is not an option of python -m fmnist fit") from err
                raise InputError(f"--space: {param.key} = {value!r} is rejected by fit: {message}") from err
    return str(loggers[0]["save_dir"])


def check_same_space(study: optuna.Study, params: list[Param]) -> None:
    """A continued study keeps the ranges of its trials (Optuna cannot mix a changed categorical)."""
    earlier = {}
    for trial in study.get_trials(deepcopy=False):
        earlier.update(trial.distributions)
    for param in params:
        if param.key in earlier:
            try:
                optuna.distributions.check_distribution_compatibility(earlier[param.key], param.distribution())
            except ValueError as err:
                raise InputError(
                    f"--space: {param.key} differs from the range of study {study.study_name}'s earlier trials ({err});"
                    " use another --study for a new space"
                ) from err


def grid_size(params: list[Param]) -> int:
    size = 1
    for param in params:
        size *= len(param.grid() or [])
    return size
