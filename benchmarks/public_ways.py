"""What leaving torch's private names cost ``callbacks/``: from the repository root
``python -m benchmarks.public_ways [--repeats 200]`` (its figures: ``docs/results.md``, "Public ways only").

- **Weight averaging**: ``callbacks.WarmupEMA`` updates the average with one in-place ``lerp_`` per
  tensor; torch's ``get_ema_multi_avg_fn`` fuses them with its private ``_foreach`` ops. Both are timed
  on the default and the tuned network's parameters and buffers, beside a training step of that network
  at its batch size, in this process, alternating.
- **Model graph**: ``callbacks.graph.trace`` writes ``SummaryWriter.add_graph``'s records into a scratch
  event file and reads them back, so that a graph traced once can be written into later runs; timed
  beside ``add_graph`` into a writer of its own, which is what the trace itself costs.

Prints the CPU, the figures (median milliseconds) and the ratios.
"""

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn
from torch.utils.tensorboard import SummaryWriter

from callbacks.averaging import WarmupEMA
from callbacks.graph import trace
from fmnist.model import FashionCNN

NETWORKS = {
    "default (tutorial)": ({}, 64),
    "tuned": ({"padding": 1, "conv3_channels": 128, "hidden_size": 256, "batch_norm": True}, 128),
}


def cpu() -> str:
    name = next(
        (line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")),
        "unknown CPU",
    )  # fmt: skip
    flags = sorted(set(re.findall(r"avx512f|amx_bf16|avx512_bf16|avx2", Path("/proc/cpuinfo").read_text())))
    return f"{name}; {torch.get_num_threads()} torch threads; flags {' '.join(flags)}"


def median_ms(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def averaging_row(name: str, options: dict, batch: int, repeats: int) -> str:
    model = FashionCNN(**options)
    weights = [*model.parameters(), *model.buffers()]
    ours = [w.detach().clone() for w in weights]
    floats = [w.detach() for w in weights if w.is_floating_point()]
    fused = [w.detach().clone() for w in floats]
    warmup, torchs = WarmupEMA(0.999), get_ema_multi_avg_fn(0.999)
    count = torch.tensor(100)
    optimizer = torch.optim.Adam(model.parameters())
    images, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def update_ours() -> None:
        warmup(ours, [w.detach() for w in weights], count)

    def update_torchs() -> None:
        torchs(fused, floats, count)

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for _ in range(20):  # warm-up
        update_ours(), update_torchs(), step()
    a, b, s = [], [], []
    for _ in range(5):  # alternate, so that a slow spell hits all three
        a.append(median_ms(update_ours, repeats))
        b.append(median_ms(update_torchs, repeats))
        s.append(median_ms(step, max(repeats // 10, 5)))
    a_ms, b_ms, s_ms = statistics.median(a), statistics.median(b), statistics.median(s)
    return f"| {name} | {len(weights)} | {a_ms:.3f} | {b_ms:.3f} | {a_ms / b_ms:.2f} | {s_ms:.1f} | {a_ms / s_ms:.2%} |"


def graph_row(name: str, options: dict, repeats: int) -> str:
    model, example = FashionCNN(**options).eval(), torch.zeros(1, 1, 28, 28)
    with tempfile.TemporaryDirectory() as folder, SummaryWriter(folder) as writer:
        direct, ours = [], []
        for _ in range(repeats):  # alternate
            direct.append(median_ms(lambda: writer.add_graph(model, example), 1))
            ours.append(median_ms(lambda: trace(model, example), 1))
    d, o = statistics.median(direct), statistics.median(ours)
    return f"| {name} | {d:.1f} | {o:.1f} | {o / d:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200, help="calls per timing of an averaging update")
    parser.add_argument("--graphs", type=int, default=10, help="traces of each network, each way")
    args = parser.parse_args()
    print(f"CPU: {cpu()}\n")
    print(
        "| network | tensors | per-tensor lerp_ (ms) | torch's fused _foreach (ms) | ratio | training step (ms) | lerp_ share of a step |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (options, batch) in NETWORKS.items():
        print(averaging_row(name, options, batch, args.repeats))
    print("\n| network | add_graph into its own writer (ms) | callbacks.graph.trace (ms) | ratio |")
    print("|---|---|---|---|")
    for name, (options, _) in NETWORKS.items():
        print(graph_row(name, options, args.graphs))


if __name__ == "__main__":
    main()
