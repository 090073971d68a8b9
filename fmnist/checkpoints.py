"""``--ckpt_path best|last|FILE``: which checkpoint a shorthand names, and whether a file is one."""

from pathlib import Path

import torch
from jsonargparse import Namespace

from fmnist.errors import InputError

#: ``--ckpt_path`` values that name a checkpoint of the newest run with the same run name.
CHECKPOINT_SHORTHANDS = {"last": "last.ckpt", "best": "best-*.ckpt"}


def newest_checkpoint(shorthand: str, loggers: list[Namespace]) -> Path:
    """The newest ``last.ckpt`` or ``best-*.ckpt`` among the runs with the first logger's name."""
    if not loggers:
        raise InputError(f"--ckpt_path {shorthand} needs a TensorBoard logger to know where runs are")
    logger = loggers[0].init_args
    runs = Path(logger.save_dir) / (logger.name or "")
    pattern = f"*/checkpoints/{CHECKPOINT_SHORTHANDS[shorthand]}"
    found = sorted(runs.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not found:
        raise InputError(f"--ckpt_path {shorthand}: no checkpoint matches {runs / pattern}")
    return found[-1]


def checkpoint_step(path: Path) -> int:
    """The global step stored in a Lightning checkpoint; a clear error when it is not one."""
    if not path.is_file():
        raise InputError(f"--ckpt_path {path}: {'is a folder' if path.is_dir() else 'no such file'}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise InputError(f"--ckpt_path {path} is not a PyTorch checkpoint ({type(err).__name__})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise InputError(f"--ckpt_path {path} is not a Lightning checkpoint: it has no state_dict")
    return int(checkpoint.get("global_step", 0))
