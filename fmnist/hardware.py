"""Whether bfloat16 pays on this machine: ``bf16_where_it_pays: true`` in a config, as in ``configs/tuned.yaml``.

``python -m fmnist fit --config configs/tuned.yaml`` then trains in ``bf16-mixed`` on a GPU with
bfloat16 units or a CPU with AMX, in ``32-true`` elsewhere, and prints which and why. Why AMX and
not AVX512-BF16 alone: bfloat16 autocast against float32, timed for a training step, is much faster
with AMX, gains little or nothing with AVX512-BF16 alone, and is far slower with AVX2 alone, where
bfloat16 is emulated (docs/results.md, "bfloat16 on CPUs").
"""

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

CPUINFO = Path("/proc/cpuinfo")
#: The CPU flags that matter for bfloat16, and their names in prose.
BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16", "avx2": "AVX2"}


def cpu_description(cpuinfo: str | None = None) -> tuple[str, frozenset[str]]:
    """The CPU's model with its core count and bfloat16-related features, and all its flags.

    ``cpuinfo`` is the text of ``/proc/cpuinfo``, read when not given (empty where there is none).

    >>> text = "processor : 0\\nmodel name : AMD EPYC\\nflags : fpu avx2\\n\\nprocessor : 1\\n"
    >>> cpu_description(text)[0]
    'AMD EPYC, 2 cores: AVX2, no AVX512-BF16, no AMX'
    """
    if cpuinfo is None:
        cpuinfo = CPUINFO.read_text() if CPUINFO.is_file() else ""
    fields = [line.partition(":") for line in cpuinfo.splitlines()]
    values: dict[str, str] = {}
    for key, _, value in fields:
        values.setdefault(key.strip(), value.strip())
    flags = frozenset(values.get("flags", "").split())
    if not flags:
        return "model and features unknown: no /proc/cpuinfo", flags
    cores = sum(key.strip() == "processor" for key, _, _ in fields)
    model = values.get("model name", "unknown CPU") + (f", {cores} core{'s' * (cores > 1)}" if cores else "")
    features = [name if flag in flags else f"no {name}" for flag, name in reversed(BF16_FLAGS.items())]
    return f"{model}: {', '.join(features)}", flags


def bf16_pays(accelerator: str = "auto", cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether bfloat16 autocast trains faster than float32 here, and the hardware that decides it.

    A CUDA GPU with bfloat16 units (compute capability 8.0, Ampere, or newer): yes. A CPU with AMX
    (``amx_bf16``): yes. Any other CPU, AVX512-BF16 alone included, and Apple's GPUs: no.
    ``accelerator`` is the Trainer's; ``auto`` means the GPU when there is one. ``cpuinfo`` as
    for :func:`cpu_description`.

    >>> bf16_pays("cpu", "model name : Xeon\\nflags : avx2 avx512_bf16 amx_bf16\\n")
    (True, 'CPU (Xeon: AVX2, AVX512-BF16, AMX)')
    >>> bf16_pays("cpu", "model name : Xeon\\nflags : avx2 avx512_bf16\\n")[0]
    False
    """
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if gpu and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return major >= 8, f"GPU ({torch.cuda.get_device_name()}, compute capability {major}.{minor})"
    if accelerator == "mps" or (accelerator == "auto" and torch.backends.mps.is_available()):
        return False, "Apple GPU (MPS; bfloat16 not measured there)"
    description, flags = cpu_description(cpuinfo)
    return "amx_bf16" in flags, f"CPU ({description})"


def choose_precision(config: Any) -> None:
    """``bf16_where_it_pays``: fill the trainer's precision, when not given, from :func:`bf16_pays`; print why.

    ``config`` is a parsed fit (or validate, test, predict) configuration. A precision given in
    the configuration or on the command line wins; the run's ``config.yaml`` records the one used.
    """
    trainer = config.trainer
    if not config.get("bf16_where_it_pays") or trainer.get("precision") is not None:
        return
    accelerator = trainer.get("accelerator")
    pays, hardware = bf16_pays(accelerator if isinstance(accelerator, str) else "auto")
    trainer.precision = "bf16-mixed" if pays else "32-true"
    verdict = "pays" if pays else "does not pay"
    rank_zero_info(f"fmnist: precision {trainer.precision}: bfloat16 {verdict} on this {hardware}")
