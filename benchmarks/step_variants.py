"""What pays for a training step on this machine: ``python -m benchmarks.step_variants``.

The side-by-side figures behind docs/results.md's "Where a step's time goes": the bare training
step (forward, loss with the configuration's label smoothing, backward, AdamW) of a configuration's
network, on random inputs, as fmnist trains it (``eager``: channels-last, AdamW's default foreach
step) and changed one way at a time:

- ``fused``: AdamW with ``fused=True``;
- ``contiguous``: the usual NCHW memory order instead of channels-last;
- ``batch2x``: twice the configuration's batch (compared per image; the learning rate would scale);
- ``compile``: the network through ``torch.compile`` (inductor), its compile time shown apart.

All variants of a network are built first, then timed round-robin, so a drift of the machine's
speed hits them alike; each prints the median of the rounds. Example::

    python -m benchmarks.step_variants --config tuned.yaml --config speed/5min.yaml
"""

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from benchmarks.precision import REPO, network
from fmnist.model import FashionCNN

VARIANTS = ("eager", "fused", "contiguous", "batch2x", "compile")


def make_step(kwargs: dict, batch_size: int, smoothing: float, variant: str) -> tuple[Callable[[], None], int]:
    """A training step of ``variant`` and its batch size."""
    torch.manual_seed(0)
    memory = torch.contiguous_format if variant == "contiguous" else torch.channels_last
    batch = batch_size * 2 if variant == "batch2x" else batch_size
    model = FashionCNN(**kwargs).to(memory_format=memory)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True if variant == "fused" else None)
    forward = torch.compile(model) if variant == "compile" else model
    images = torch.randn(batch, 1, 28, 28).to(memory_format=memory)
    labels = torch.randint(0, 10, (batch,))

    def step() -> None:
        loss = F.cross_entropy(forward(images), labels, label_smoothing=smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="configs/<name> (default: tuned.yaml, speed/5min.yaml)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default: 5)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round (default: 20)")
    options = parser.parse_args()
    variants = [name for name in options.variants.split(",") if name]
    if not variants or set(variants) - set(VARIANTS):
        parser.error(f"--variants: choose from {', '.join(VARIANTS)} (got {options.variants!r})")
    configs = options.config or ["tuned.yaml", "speed/5min.yaml"]
    missing = [name for name in configs if not (REPO / "configs" / name).is_file()]
    if missing:
        parser.error(f"--config: no configs/{missing[0]} (give a name under configs/, e.g. tuned.yaml)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; bare training steps, median of the rounds")
    for name in configs:
        kwargs, batch_size, smoothing = network(name)
        steps, first = {}, {}
        for variant in variants:  # built and warmed first: compiling happens here, timed apart
            start = time.perf_counter()
            steps[variant] = make_step(kwargs, batch_size, smoothing, variant)
            for _ in range(3):
                steps[variant][0]()
            first[variant] = time.perf_counter() - start
        seconds: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(options.rounds):
            for variant, (step, _batch) in steps.items():
                start = time.perf_counter()
                for _ in range(options.steps):
                    step()
                seconds[variant].append((time.perf_counter() - start) / options.steps)
        widths = "/".join(str(kwargs[key]) for key in ("conv1_channels", "conv2_channels", "conv3_channels"))
        print(f"{name} (channels {widths}, batch {batch_size}):")
        per_step = {variant: statistics.median(times) for variant, times in seconds.items()}
        rates = {variant: steps[variant][1] / per_step[variant] for variant in variants}
        print(f"  {'variant':<11} {'ms/step':>8} {'images/s':>9} {'vs ' + variants[0]:>14} {'first 3 steps, s':>17}")
        for variant, rate in rates.items():
            speed_up = rate / rates[variants[0]]
            print(
                f"  {variant:<11} {per_step[variant] * 1e3:>8.2f} {rate:>9,.0f} {speed_up:>13.2f}x {first[variant]:>17.1f}"
            )


if __name__ == "__main__":
    main()
