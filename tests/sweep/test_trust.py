"""Trusting a sweep, on synthetic studies: the noise floor, importances with intervals, the significance line.

The sweep's own functions are fed real in-memory Optuna studies whose values are generated here:
one option changes the metric, another does not, and every trial has two seeds with noise added.
"""

import io
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

from fmnist.sweep import board, report
from fmnist.sweep.charts import BLUE, NOISE
from fmnist.sweep.settings import Settings
from fmnist.sweep.space import Param
from fmnist.sweep.study import Sweep
from fmnist.sweep.trust import SEED_VALUES, noise_floor, seed_values
from fmnist.sweep.verdict import significance_line
from tests.helpers import events

METRICS, DIRECTIONS = ["Accuracy/val_best", "Model/params"], ["maximize", "minimize"]
PARAMS = [
    Param("model.lr", "float", 1e-4, 1e-1, log=True),
    Param("model.hidden_size", "categorical", choices=(32, 64, 128)),
]
SIGMA = 0.003  # the seed noise of the accuracy


def synthetic(trials: int = 30, seeds: int = 2, seed: int = 0) -> optuna.Study:
    """Accuracy depends on the learning rate only, the parameter count on the width only; two seeds a trial."""
    study = optuna.create_study(directions=DIRECTIONS, sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        trial = study.ask()
        lr = trial.suggest_float("model.lr", 1e-4, 1e-1, log=True)
        width = trial.suggest_categorical("model.hidden_size", [32, 64, 128])
        accuracy = 0.90 - 0.03 * (math.log10(lr) + 2.5) ** 2
        runs = [[accuracy + rng.normal(0, SIGMA), 1000.0 * width + 5000] for _ in range(seeds)]
        trial.set_user_attr(SEED_VALUES, runs)
        study.tell(trial, [float(np.mean([run[0] for run in runs])), runs[0][1]])
    return study


def table_rows(text: str, metric: str) -> dict[str, str]:
    """The printed importance table of a metric: option name -> its line."""
    block = text.split(f"importance for {metric} (PED-ANOVA) above chance", 1)[1].split("\n")[2:]
    rows = {}
    for line in block:
        if not line.startswith("  "):
            break
        rows[line.split()[0]] = line
    return rows


def test_an_option_that_changes_the_metric_is_above_noise_and_one_that_does_not_is_not(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    study = synthetic()
    settings = Settings(metric=METRICS, direction=DIRECTIONS, n_trials=30, study="synthetic", storage="sqlite://")
    report.summary(study, Sweep(settings, PARAMS, [], tmp_path / "synthetic"))
    out = capsys.readouterr().out
    # the printed table: the learning rate for accuracy, the width for the parameter count; not the other way
    for metric, matters, inert in (
        (METRICS[0], "model.lr", "model.hidden_size"),
        (METRICS[1], "model.hidden_size", "model.lr"),
    ):
        rows = table_rows(out, metric)
        assert set(rows) == {matters, inert}, out
        assert "indistinguishable from noise" not in rows[matters] and "indistinguishable from noise" in rows[inert]
        found = board.importances(study, METRICS, DIRECTIONS)[metric]
        assert found[matters].low > 0 and found[inert].low <= 0 <= found[inert].high
    # the noise floor: the seeds' spread, pooled over 30 configurations; the parameter count has none
    measured = float(out.split("noise floor of Accuracy/val_best: ")[1].split()[0])
    assert 0.6 * SIGMA < measured < 1.4 * SIGMA
    assert (
        "noise floor of Model/params: 0 (std between seeds of one configuration; 60 runs of 30 configurations)" in out
    )
    assert "Accuracy/val_best: trial" in out and "seed noise of" in out
    # the study run: the same verdicts in the table (Text) and in the bars' colours (Images)
    run = events(tmp_path / "synthetic" / "study")
    for metric, matters, inert in (
        (METRICS[0], "model.lr", "model.hidden_size"),
        (METRICS[1], "model.hidden_size", "model.lr"),
    ):
        (text,) = run.Tensors(f"Importance/{metric}/text_summary")
        rows = {row.split(" | ")[0][2:]: row for row in text.tensor_proto.string_val[0].decode().splitlines()}
        assert rows[matters].endswith("| above noise |") and rows[inert].endswith("| indistinguishable from noise |")
        (image,) = run.Images(f"Importance/{metric}")
        pixels = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
        blue, grey = ((pixels == color).all(axis=2).nonzero()[0] for color in (BLUE, NOISE))
        assert blue.size > 50 and grey.size > 10  # the first bar blue (above noise), the second grey (noise)
        assert blue.max() < grey.min()
    (noise,) = run.Tensors("Noise floor/text_summary")
    assert b"noise floor of Accuracy/val_best" in noise.tensor_proto.string_val[0]
    assert run.Tensors("Significance/text_summary")


def test_without_the_permutation_null_the_inert_option_keeps_a_share(tmp_path: Path) -> None:
    # what the README's 0.55 was: Optuna's shares are never zero, so an inert option always gets some
    found = board.importances(synthetic(), METRICS, DIRECTIONS)[METRICS[0]]
    assert found["model.hidden_size"].share > 0 and found["model.hidden_size"].noise


def trial(number: int, runs: list[float]) -> optuna.trial.FrozenTrial:
    made = optuna.trial.create_trial(
        params={"model.lr": 0.001 * (number + 1)},
        distributions={"model.lr": optuna.distributions.FloatDistribution(0.0, 1.0)},
        value=float(np.mean(runs)),
        user_attrs={SEED_VALUES: [[r] for r in runs]} if len(runs) > 1 else {},
    )
    made.number = number
    return made


def test_the_significance_line_names_the_trials_within_the_noise_of_the_best() -> None:
    # seeds spread by 0.002 (std 0.00141 pooled): trials 1 and 2 are within 2 std errors of the best, 0 and 3 not
    trials = [trial(0, [0.880, 0.882]), trial(1, [0.902, 0.904]), trial(2, [0.900, 0.902]), trial(3, [0.910, 0.912])]
    assert noise_floor(trials).std == pytest.approx(math.sqrt(0.001**2 * 2))
    line = significance_line(trials, "Accuracy/val_best", "maximize", trials[3])
    assert (
        line
        == "trial 3 beats every other trial by more than the seed noise of 0.0028; best.yaml is trial 3, the best mean"
    )
    trials[1] = trial(1, [0.909, 0.911])
    line = significance_line(trials, "Accuracy/val_best", "maximize", trials[1])
    assert line == "trials 3 and 1 are within the seed noise of 0.0028 of the best; best.yaml is trial 1, as picked"
    once = [trial(0, [0.88]), trial(1, [0.90])]
    assert seed_values(once[1]) == [0.90] and noise_floor(once) is None
    assert significance_line(once, "Loss/val", "minimize", once[0]) == (
        "trial 0 has the best Loss/val; whether by more than the seed noise is not known (no noise floor);"
        " best.yaml is trial 0, the best value"
    )


def test_the_study_run_draws_the_best_so_far_with_its_noise_band(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    run = board.StudyRun(tmp_path, ["Accuracy/val_best"])
    for made in (trial(0, [0.880, 0.882]), trial(1, [0.902, 0.904]), trial(2, [0.900, 0.902])):
        study.add_trial(made)
        run.trial_finished(study, study.trials[-1])
    run.close()
    scalars = events(tmp_path / board.FOLDER)
    best = scalars.Scalars("Best/Accuracy/val_best")[-1].value
    half = 2 * 0.001 * math.sqrt(2) / math.sqrt(2)  # 2 standard errors of a mean of 2 seeds
    assert scalars.Scalars("Best/Accuracy/val_best/low")[-1].value == pytest.approx(best - half, abs=1e-6)
    assert scalars.Scalars("Best/Accuracy/val_best/high")[-1].value == pytest.approx(best + half, abs=1e-6)
    assert scalars.Scalars("Noise/Accuracy/val_best")[-1].value == pytest.approx(0.001 * math.sqrt(2), rel=1e-4)
    assert "custom_scalars__config__" in scalars.Tags()["tensors"]
