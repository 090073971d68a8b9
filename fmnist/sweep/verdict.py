"""What the end of a sweep says about trusting it: the noise floor, importances with intervals, the significance line.

Text only, printed by :func:`fmnist.sweep.report.summary` and written into the study run by
:func:`fmnist.sweep.board.write_end`; the numbers come from :mod:`~fmnist.sweep.trust`::

    noise floor of Accuracy/val_best: 0.0011 (std between seeds of one configuration; 32 runs of 16 configurations)
    trials 12, 7 and 3 are within the seed noise of 0.0022 of the best; best.yaml is trial 12, the best mean
"""

from collections.abc import Mapping, Sequence

from optuna.trial import FrozenTrial, TrialState

from fmnist.sweep.trust import LEVEL, Importance, noise_floor, seed_values, within_noise

NOISE = "indistinguishable from noise"
#: The trials a significance line names before it counts the rest.
NAMED = 8


def amount(value: float) -> str:
    """A metric's spread or difference: counts whole, others to 4 decimals, zero as 0.

    >>> amount(0.00112), amount(1234.4), amount(0.0)
    ('0.0011', '1234', '0')
    """
    if value == 0:
        return "0"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.4f}"


def noise_lines(trials: Sequence[FrozenTrial], metrics: Sequence[str]) -> list[str]:
    """One line per metric with its noise floor, or one line saying that none was measured."""
    lines = []
    for index, metric in enumerate(metrics):
        noise = noise_floor(trials, index)
        if noise is None:
            return ["noise floor: not measured, no configuration was trained with two seeds (--repeats 2 measures it)"]
        lines.append(
            f"noise floor of {metric}: {amount(noise.std)} (std between seeds of one configuration; "
            f"{noise.runs} runs of {noise.configurations} configurations)"
        )
    return lines


def significance_line(
    trials: Sequence[FrozenTrial], metric: str, direction: str, chosen: FrozenTrial | None, prefix: str = ""
) -> str:
    """Whether the best trial beats the next ones by more than the seed noise, and which trial ``best.yaml`` is."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    noise = noise_floor(complete, 0)
    best = sorted(complete, key=lambda t: ((-1 if direction == "maximize" else 1) * t.values[0], t.number))[0]
    seeds = len(seed_values(best, 0))
    if chosen is None:
        tail = ""
    elif chosen.number == best.number:
        tail = f"; best.yaml is trial {best.number}, the best {'mean' if seeds > 1 else 'value'}"
    else:
        tail = f"; best.yaml is trial {chosen.number}, as picked"
    if noise is None:
        return (
            f"{prefix}trial {best.number} has the best {metric}; whether by more than the seed noise is not known"
            f" (no noise floor){tail}"
        )
    tied = within_noise(complete, noise, 0, direction)
    margin = amount(noise.margin(seeds, seeds))
    if len(tied) == 1:
        return f"{prefix}trial {best.number} beats every other trial by more than the seed noise of {margin}{tail}"
    return f"{prefix}trials {_listed([t.number for t in tied])} are within the seed noise of {margin} of the best{tail}"


def _listed(numbers: list[int]) -> str:
    """Trial numbers as a sentence names them.

    >>> _listed([12, 7, 3]), _listed(list(range(10)))
    ('12, 7 and 3', '0, 1, 2, 3, 4, 5, 6, 7 and 2 more')
    """
    if len(numbers) > NAMED:
        return f"{', '.join(map(str, numbers[:NAMED]))} and {len(numbers) - NAMED} more"
    return f"{', '.join(map(str, numbers[:-1]))} and {numbers[-1]}"


def importance_lines(metric: str, found: Mapping[str, Importance], trials: int) -> list[str]:
    """The table printed at the end of a sweep: each option's share, importance above chance, interval, verdict."""
    header = ["option", "share", "above chance", f"{LEVEL:.0%} interval", ""]
    rows = [
        [name, f"{v.share:.2f}", f"{v.estimate:.3f}", f"[{v.low:.3f}, {v.high:.3f}]", NOISE if v.noise else ""]
        for name, v in found.items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [f"importance for {metric} (PED-ANOVA) above chance, {trials} complete trials:"]
    for row in [header, *rows]:
        lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return lines


def importance_markdown(found: Mapping[str, Importance]) -> str:
    """The same table for the study run's Text tab."""
    rows = "\n".join(
        f"| {name} | {v.share:.3f} | {v.estimate:.4f} | [{v.low:.4f}, {v.high:.4f}] | {NOISE if v.noise else 'above noise'} |"
        for name, v in found.items()
    )
    header = f"| parameter | share | above chance | {LEVEL:.0%} interval | |\n|---|---|---|---|---|"
    return f"{header}\n{rows}"
