"""Training step in float32 against bfloat16 autocast: ``python -m benchmarks.precision``.

The figure behind ``trainer.precision: bf16-mixed`` in configs/tuned.yaml. Times the bare training
step (forward, loss with the configuration's label smoothing, backward, AdamW) of the networks of
configs/default.yaml and configs/tuned.yaml (read from the files), channels-last as fmnist trains
them, on random inputs, in both precisions, round-robin so that a drift of the machine's speed
hits both alike; prints the seconds a
55,000-image epoch takes (median of the rounds) and the speed-up. What the CPU offers for bfloat16
(AMX, AVX512-BF16) decides the result: without them, bfloat16 is emulated and usually slower.
What it measured, where, and how long it took: ``docs/results.md``.
"""

import argparse
import inspect
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from fmnist.model import FashionCNN

REPO = Path(__file__).resolve().parents[1]
#: The network's arguments among the model options of a configuration: FashionCNN's own, so a new
#: option of the network is measured without being listed here.
NETWORK_OPTIONS = tuple(name for name in inspect.signature(FashionCNN).parameters if name != "num_classes")


def network(name: str) -> tuple[dict, int, float]:
    """FashionCNN's arguments, the batch size and the label smoothing of ``configs/<name>`` on top of the defaults."""
    configs = [yaml.safe_load((REPO / "configs" / file).read_text()) for file in ("default.yaml", name)]
    model = {**configs[0]["model"], **configs[1].get("model", {})}
    data = {**configs[0]["data"], **configs[1].get("data", {})}
    return {key: model[key] for key in NETWORK_OPTIONS}, data["batch_size"], model["label_smoothing"]


TRAIN_IMAGES = 55_000


def epoch_seconds(kwargs: dict, batch_size: int, smoothing: float, bf16: bool, steps: int) -> float:
    """Seconds of a training epoch at the speed of ``steps`` timed steps, after 3 warm-up steps."""
    torch.manual_seed(0)
    model = FashionCNN(**kwargs).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(batch_size, 1, 28, 28).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), labels, label_smoothing=smoothing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * TRAIN_IMAGES / batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds (default: 3)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per measurement (default: 40)")
    options = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds per epoch of 55,000 images")
    for name in ("default.yaml", "tuned.yaml"):
        kwargs, batch_size, smoothing = network(name)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(options.rounds):
            for bf16 in (False, True):
                times[bf16].append(epoch_seconds(kwargs, batch_size, smoothing, bf16, options.steps))
        fp32, bf16 = statistics.median(times[False]), statistics.median(times[True])
        shown = ", ".join(f"{key} {value}" for key, value in kwargs.items())
        print(
            f"{name} ({shown}, batch {batch_size}): float32 {fp32:.1f} s, bf16 autocast {bf16:.1f} s: {fp32 / bf16:.2f}x"
        )


if __name__ == "__main__":
    main()
