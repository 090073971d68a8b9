"""How often ``callbacks.TimeBudget`` changes its plan, and how often a run ends past its budget, on
simulated epoch times: from the repository root ``python -m benchmarks.budget_replans [--runs 500]``
(a second; no training).

Replays :func:`callbacks.budget.replan` (the pace of the last two epochs; shortening past 95% of the
budget) against the rule it replaced (the last epoch's pace; shortening past 100%), for a 14-minute
budget, a 10% margin and at most 30 epochs, as ``configs/tuned.yaml`` has. Each scenario draws
``--runs`` series of epoch times; the first plan is made 25 s into ``fit`` from the forecast.
"""

import argparse
import math
import random
import statistics
from collections.abc import Callable

from callbacks.budget import replan

BUDGET, MARGIN, MOST, SPENT = 14 * 60.0, 0.1, 30, 25.0

#: name -> a function of a random generator giving (epoch seconds, the forecast)
SCENARIOS: dict[str, Callable[[random.Random], tuple[list[float], float]]] = {
    "45 s, one epoch of 82 s anywhere": lambda r: ([82.0 if i == r.randrange(14) else 45.0 for i in range(40)], 45.0),
    "45 s +-10%, 1 in 10 at 80 s": lambda r: (
        [45 * r.uniform(0.9, 1.1) * (80 / 45 if r.random() < 0.1 else 1) for _ in range(40)],
        45.0,
    ),
    "45 s +-10%, forecast 8% short": lambda r: ([45 * r.uniform(0.9, 1.1) for _ in range(40)], 45 / 1.08),
    "40 s, then 56 s from a random epoch": lambda r: ([40.0] * (k := r.randrange(2, 16)) + [56.0] * (40 - k), 40.0),
    "drift: 40 s, 1.5 s more each epoch": lambda r: ([40 + 1.5 * i + r.uniform(-2, 2) for i in range(40)], 40.0),
}


def last_epoch_rule(planned: int, done: int, elapsed: float, paces: list[float], budget: float, margin: float) -> int:
    """The rule before: the last epoch's pace; shorten past the whole budget, lengthen below 1 - margin."""
    pace, target = paces[-1], budget * (1 - margin)
    if elapsed + (planned - done) * pace > budget:
        return min(planned, max(done + 1, done + math.floor((target - elapsed) / pace)))
    return max(planned, min(MOST, done + math.floor((target - elapsed) / pace)))


def simulate(epoch_s: list[float], forecast: float, rule: Callable[..., int]) -> tuple[int, int, float]:
    """Plan changes, epochs trained and the seconds ``fit`` took."""
    planned = min(MOST, math.floor((BUDGET * (1 - MARGIN) - SPENT) / forecast))
    changes, elapsed, paces, done = 0, SPENT, [forecast], 0
    while done < planned:
        elapsed += epoch_s[done]
        paces.append(epoch_s[done])
        done += 1
        epochs = rule(planned, done, elapsed, paces, BUDGET, MARGIN) if done < planned else planned
        changes, planned = changes + (epochs != planned), epochs
    return changes, planned, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500, help="series drawn for each scenario")
    runs = parser.parse_args().runs
    print(f"{'scenario':38s} {'rule':18s} changes  over budget  epochs  fit (s)")
    for name, draw in SCENARIOS.items():
        for rule_name, rule in (("last epoch, 100%", last_epoch_rule), ("last two, 95%", replan)):
            results = [simulate(*draw(random.Random(seed)), rule) for seed in range(runs)]
            changes, epochs, seconds = zip(*results)
            over = sum(s > BUDGET for s in seconds)
            print(
                f"{name:38s} {rule_name:18s} {statistics.mean(changes):7.2f}  {over:4d}/{runs:<6d}"
                f" {statistics.mean(epochs):6.1f}  {statistics.mean(seconds):7.0f}"
            )


if __name__ == "__main__":
    main()
