"""``python -m fmnist export --ckpt_path best|last|FILE [--format onnx|torchscript]``: write, prove, keep.

The checkpoint is found and read as ``test`` finds and reads it (the same ``best``/``last``, the same
refusals, fmnist.checkpoints); the model is written beside a temporary name, run on the official test
split against the checkpoint (:mod:`fmnist.export.proof`), and only then renamed into place with its
JSON (:mod:`fmnist.export.card`). A failure at any point leaves nothing behind.
"""

import argparse
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmnist.checkpoints import allowed_imports, check_checkpoint, read_checkpoint, user_imports
from fmnist.cli import CHECKPOINT_CLASSES, FashionCLI
from fmnist.errors import InputError
from fmnist.export.card import describe, logged_test_accuracy
from fmnist.export.proof import TOLERANCE, Proof, TestSplit, prove
from fmnist.export.shipped import FORMATS, INPUT_RANGE, TORCHSCRIPT_NOTE, Format, ShippedModel
from fmnist.module import FashionMNISTClassifier
from fmnist.runs import CHECKPOINT_SHORTHANDS, newest_checkpoint, run_of, tensorboard_configs

#: The exit status of an exported model that does not answer as its checkpoint (what the issue asked for).
NOT_EQUAL = 1
#: Where a run's exported models go: ``<run folder>/export/``.
EXPORT_FOLDER = "export"

HELP = f"""Write a checkpoint's model as ONNX or TorchScript, with a JSON description beside it, and prove it equal.

The file holds the network, its normalisation and the checkpoint's test-time augmentation (--model.tta '[]'
leaves it out, --model.tta '[shift, flip]' chooses others). It reads images (N, 1, 28, 28), float32,
pixel / 255 in [{INPUT_RANGE[0]:g}, {INPUT_RANGE[1]:g}], any batch size, and answers logits and probabilities.
After writing, the command runs the file (onnxruntime, torch.jit.load) and the checkpoint on the official
test split; it keeps the file only when every predicted class is the same and no output differs by more
than --tolerance, and otherwise ends with exit status {NOT_EQUAL} and writes nothing.
Other options are fit options, as for `test`: --config (its run name finds best and last), --data.data_dir.
Serve the ONNX file without torch: python tools/classify.py MODEL.onnx PICTURES. More: docs/export.md."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one error line (fmnist.exits), like every other mistake
        raise InputError(f"export: {message} (see python -m fmnist export --help)")


def _tolerance(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(text)
    return value


_tolerance.__name__ = "positive number"  # argparse names the type in its message


def _model_file(text: str) -> Path:
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the model file")
    return Path(text)


def parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fmnist export", description=HELP, allow_abbrev=False)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--ckpt_path",
        required=True,
        help="best or last (of the newest run with the configuration's run name), or a file",
    )
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx", help="the file's format (default: onnx)")
    parser.add_argument(
        "--output",
        type=_model_file,
        help=f"the model file; default: <run folder>/{EXPORT_FOLDER}/<checkpoint name>.onnx or .pt (beside a"
        " checkpoint that is in no run folder). Its JSON is the same name with .json added",
    )
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        default=TOLERANCE,
        help=f"the largest absolute difference of logits and of probabilities allowed (default: {TOLERANCE:g})",
    )
    return parser


def export(args: list[str]) -> None:
    """``python -m fmnist export ...``: check everything, write, prove, keep or remove."""
    flags, fit_options = parser().parse_known_args(args)
    fmt = FORMATS[flags.format]
    fmt.check_installed()
    # export computes in float32: bf16_where_it_pays would only print a choice that nothing uses
    with warnings.catch_warnings():  # the fit options are given as args on purpose, as the sweep gives them
        warnings.filterwarnings("ignore", r".*LightningCLI's args parameter is intended.*")
        config = FashionCLI([*fit_options, "--bf16_where_it_pays", "false"], run=False, instantiate=False).config
    path, checkpoint = _checked_checkpoint(flags.ckpt_path, config)
    trained_with = (checkpoint.get("hyper_parameters") or {}).get("tta") or []
    views = trained_with if config.model.get("tta") is None else list(config.model.tta)
    target = _target(flags.output, path, fmt)
    split = TestSplit.found_by(config.data.as_dict())  # before writing: a missing dataset writes nothing
    classifier = FashionMNISTClassifier.load_from_checkpoint(path, map_location="cpu", tta=views).eval()
    print(f"export: {path} -> {target} ({fmt.name}; {_views_said(views, trained_with)})", flush=True)
    if fmt.name == "torchscript":
        print(TORCHSCRIPT_NOTE, flush=True)
    logged = logged_test_accuracy(run_of(path), checkpoint.get("global_step"))
    card = functools.partial(describe, fmt, target, views, path, checkpoint, split.file, logged)
    try:
        _write_proven(fmt, ShippedModel(classifier, views).eval(), classifier, target, flags.tolerance, split, card)
    except NotEqual as err:
        print(f"fmnist: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(NOT_EQUAL) from None
    print(f"wrote {target} and {_card(target).name}", flush=True)


class NotEqual(Exception):
    """The exported file does not answer as its checkpoint; the message says by how much."""


def _checked_checkpoint(given: str, config: Any) -> tuple[Path, dict[str, Any]]:
    """``--ckpt_path`` found (``best``, ``last``) and read as data, refused as ``test`` refuses it."""
    if given in CHECKPOINT_SHORTHANDS:
        path = newest_checkpoint(given, tensorboard_configs(config.trainer.logger))
    else:
        path = Path(given)
    checkpoint = read_checkpoint(path)
    check_checkpoint(
        checkpoint, path, CHECKPOINT_CLASSES, allowed_imports(CHECKPOINT_CLASSES.values(), user_imports(config))
    )
    return path, checkpoint


def _target(output: Path | None, checkpoint: Path, fmt: Format) -> Path:
    if output is not None:
        return output
    run_dir = run_of(checkpoint)
    folder = run_dir / EXPORT_FOLDER if run_dir is not None else checkpoint.parent
    return folder / f"{checkpoint.stem}{fmt.suffix}"


def _card(target: Path) -> Path:
    return target.with_name(f"{target.name}.json")


def _views_said(views: list[str], trained_with: list[str]) -> str:
    if views == list(trained_with):
        return f"tta: {', '.join(views)}" if views else "no tta: the checkpoint has none"
    return f"tta: {', '.join(views) or 'none'} (--model.tta; the checkpoint's: {', '.join(trained_with) or 'none'})"


def _write_proven(
    fmt: Format,
    shipped: ShippedModel,
    classifier: FashionMNISTClassifier,
    target: Path,
    tolerance: float,
    split: TestSplit,
    card: Callable[[Proof], dict[str, Any]],
) -> None:
    """Write the model and its JSON under temporary names, prove the file, then rename both into place.

    On any failure (or a stop) the temporary files and any folder made for them are removed.
    """
    made = [folder for folder in (target.parent, *target.parent.parents) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp{target.suffix}")
    temporary_card = _card(temporary)
    try:
        fmt.write(shipped, temporary)
        proof = prove(classifier, fmt.run(temporary), split, tolerance)
        print(proof.line(split.file), flush=True)
        if not proof.equal:
            worst = max(proof.largest, key=proof.largest.__getitem__)
            raise NotEqual(
                f"export: the {fmt.name} file does not answer as its checkpoint: {proof.differing} of {proof.images}"
                f" predicted classes differ, the largest difference of {worst} is {proof.largest[worst]:.1e}"
                f" (tolerance {tolerance:.0e}); nothing was written"
            )
        temporary_card.write_text(json.dumps(card(proof), indent=2) + "\n")
        for file in (temporary, temporary_card):
            _sync(file)
        os.replace(temporary, target)
        os.replace(temporary_card, _card(target))
    except BaseException:
        for file in (temporary, temporary_card):
            file.unlink(missing_ok=True)
        for folder in made:  # innermost first; only what this command made, and only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _sync(file: Path) -> None:
    with open(file, "rb") as handle:
        os.fsync(handle.fileno())
