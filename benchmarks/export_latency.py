"""How fast the shipped model predicts on this CPU: ``python -m benchmarks.export_latency``.

For the networks of configs/default.yaml and configs/tuned.yaml, each with the test-time views its
config sets (tuned: ``shift``, five passes an image), the model ``python -m fmnist export`` ships
(:class:`fmnist.export.shipped.ShippedModel`: normalisation, network, views) runs three ways: eager
PyTorch (the module itself, as ``predict`` runs it, in ``torch.inference_mode``), TorchScript (the
traced file, ``torch.jit.load``) and ONNX Runtime (the ONNX file, its CPU provider with default
threads, as tools/classify.py runs it). Latency at batch 1 (median and 99th percentile of
``--repeats`` calls) and throughput at batch 256 (images/s, at the median of ``--batches`` calls),
measured round-robin (``--rounds``) so that a drift of the machine's speed hits the three alike, with
a pause between runtimes so that one's idle threads do not slow the next.
Weights are random: the speed does not depend on them. The three answers are compared as a check.

Prints the CPU and a Markdown table for docs/results.md ("Export: latency and throughput"). Run it
alone on the machine: about a minute and a half with the defaults on two cores.
"""

import argparse
import inspect
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch
import yaml

from fmnist.export.shipped import FORMATS, Outputs, ShippedModel
from fmnist.hardware import cpu_description
from fmnist.model import FashionCNN
from fmnist.module import FashionMNISTClassifier

REPO = Path(__file__).resolve().parents[1]
NETWORKS = {"default": "default.yaml", "tuned": "tuned.yaml"}
#: The classifier's options that shape the shipped model: the network's, its memory format, its views.
OPTIONS = (
    *(name for name in inspect.signature(FashionCNN).parameters if name != "num_classes"),
    "channels_last",
    "tta",
)
RUNTIMES = ("eager PyTorch", "TorchScript", "ONNX Runtime")
THROUGHPUT_BATCH = 256
#: Seconds between runtimes: the last one's idle threads (ONNX Runtime's spin after each call, OpenMP's
#: wait) would otherwise take the cores from the next one's first calls.
PAUSE = 0.5


def shipped(config: str) -> ShippedModel:
    """The shipped model of ``configs/<config>`` on top of the defaults, with random weights."""
    files = [yaml.safe_load((REPO / "configs" / name).read_text()) for name in ("default.yaml", config)]
    model = {**files[0]["model"], **files[1].get("model", {})}
    torch.manual_seed(0)
    classifier = FashionMNISTClassifier(**{key: model[key] for key in OPTIONS if key in model}).eval()
    return ShippedModel(classifier, classifier.hparams.tta or []).eval()


def runners(model: ShippedModel, folder: Path) -> dict[str, Callable[[np.ndarray], Outputs]]:
    """The model three ways, each taking and giving numpy arrays as a server would."""

    def eager(images: np.ndarray) -> Outputs:
        with torch.inference_mode():
            logits, probabilities = model(torch.from_numpy(images))
        return logits.numpy(), probabilities.numpy()

    found = {RUNTIMES[0]: eager}
    for runtime, name in zip(RUNTIMES[1:], ("torchscript", "onnx")):
        fmt = FORMATS[name]
        path = folder / f"model{fmt.suffix}"
        fmt.write(model, path)
        found[runtime] = fmt.run(path)
    return found


def timed(run: Callable[[np.ndarray], Outputs], images: np.ndarray, calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        run(images)
        seconds.append(time.perf_counter() - start)
    return seconds


def measure(network: str, args: argparse.Namespace, folder: Path) -> list[str]:
    """The table's rows of one network."""
    model = shipped(NETWORKS[network])
    runs = runners(model, folder)
    rng = np.random.default_rng(0)
    one, many = (rng.random((n, 1, 28, 28), dtype=np.float32) for n in (1, THROUGHPUT_BATCH))
    reference = runs[RUNTIMES[0]](many)[1]
    differences = {runtime: float(np.abs(run(many)[1] - reference).max()) for runtime, run in runs.items()}
    latencies: dict[str, list[float]] = {runtime: [] for runtime in runs}
    batches: dict[str, list[float]] = {runtime: [] for runtime in runs}
    for run in runs.values():  # warm-up: first calls allocate, plan and pick kernels
        timed(run, one, args.warmup)
        timed(run, many, max(1, args.warmup // 10))
    for _ in range(args.rounds):
        for runtime, run in runs.items():
            time.sleep(PAUSE)
            latencies[runtime] += timed(run, one, max(1, args.repeats // args.rounds))
            batches[runtime] += timed(run, many, max(1, args.batches // args.rounds))
    views = ", ".join(model.views) or "none"
    rows = []
    for runtime in runs:
        median = statistics.median(latencies[runtime]) * 1000
        p99 = float(np.percentile(latencies[runtime], 99)) * 1000
        per_second = THROUGHPUT_BATCH / statistics.median(batches[runtime])
        rows.append(
            f"| {network} (TTA: {views}) | {runtime} | {median:.2f} | {p99:.2f} | {per_second:,.0f}"
            f" | {differences[runtime]:.0e} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", default="default,tuned", help="comma-separated: default, tuned")
    parser.add_argument("--repeats", type=int, default=600, help="batch-1 calls timed per runtime (default 600)")
    parser.add_argument("--batches", type=int, default=30, help="batch-256 calls timed per runtime (default 30)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed batch-1 calls first (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="round-robin rounds over the runtimes (default 3)")
    args = parser.parse_args(argv)
    networks = args.networks.split(",")
    unknown = sorted(set(networks) - set(NETWORKS))
    if unknown:
        parser.error(f"--networks: no network {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    description, flags = cpu_description()
    print(f"CPU: {description}; avx512f: {'yes' if 'avx512f' in flags else 'no'}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; onnxruntime {onnxruntime.__version__},"
        " default threads; float32"
    )
    print(
        f"batch 1: median and 99th percentile of {args.repeats} calls; batch {THROUGHPUT_BATCH}: the median of"
        f" {args.batches} calls; round-robin in {args.rounds} rounds\n"
    )
    print("| network | runtime | batch 1 median (ms) | batch 1 p99 (ms) | batch 256 (images/s) | max diff |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for network in networks:
            for row in measure(network, args, Path(folder)):
                print(row, flush=True)
    print("\nmax diff: the largest difference of probabilities from eager PyTorch's on the batch of 256")


if __name__ == "__main__":
    main()
