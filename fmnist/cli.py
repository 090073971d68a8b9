"""The command line: ``python -m fmnist fit|validate|test|predict [--config FILE] [--key value ...]``.

``python -m fmnist sweep`` (fmnist/sweep.py) searches fit options with Optuna.

LightningCLI does the parsing; this file adds fmnist's defaults (``default.yaml`` beside it, the
same file as ``configs/default.yaml``), run names built from hyperparameters, checkpoint
shorthands, runs that continue in their own folder, a test and a summary after ``fit``, and
one-line errors instead of tracebacks.
"""

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks.divergence import TrainingDivergedError
from fmnist.checkpoints import CHECKPOINT_SHORTHANDS, checkpoint_step, newest_checkpoint
from fmnist.data import FashionMNISTDataModule
from fmnist.errors import InputError
from fmnist.logger import RunLogger
from fmnist.module import FashionMNISTClassifier
from fmnist.summary import fit_summary

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
SUBCOMMANDS = ("fit", "validate", "test", "predict")
DESCRIPTION = (
    "fmnist: the TensorBoard-with-PyTorch tutorial's CNN on Fashion-MNIST, as a Lightning project."
    " Train it, evaluate it, classify your own pictures, and see everything in TensorBoard"
    " (tensorboard --logdir runs). Defaults: configs/default.yaml."
)
#: One line per subcommand, for ``--help`` (Lightning's would describe Trainer methods).
SUBCOMMAND_HELP = {
    "fit": "train the model, then test it on the official 10k test split and print a summary",
    "validate": "evaluate a checkpoint (--ckpt_path best|last|FILE) on the validation split",
    "test": "evaluate a checkpoint (--ckpt_path best|last|FILE) on the official 10k test split",
    "predict": "classify the test split, or your own pictures (--data.predict_path), into predictions.csv",
}


class FashionCLI(LightningCLI):
    """LightningCLI for :class:`FashionMNISTClassifier` on :class:`FashionMNISTDataModule`."""

    def __init__(self, args: list[str] | None = None) -> None:
        super().__init__(
            FashionMNISTClassifier,
            FashionMNISTDataModule,
            save_config_kwargs={"overwrite": True},  # a resumed run rewrites its own config.yaml
            seed_everything_default=42,
            parser_kwargs={
                "exit_on_error": False,  # main() prints parse errors as one line, without the usage wall
                "prog": _prog(),
                "description": DESCRIPTION,
                "epilog": "Also: python -m fmnist sweep --space FILE [fit options]: search hyperparameters with Optuna"
                " (python -m fmnist sweep --help).",
                **{
                    name: {
                        "default_config_files": [str(DEFAULT_CONFIG)],
                        "exit_on_error": False,
                        "description": f"{name}: {SUBCOMMAND_HELP[name]}.",
                    }
                    for name in SUBCOMMANDS
                },
            },
            auto_configure_optimizers=False,  # the optimizer is --model.optimizer, next to --model.lr
            args=args,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        # every subcommand's parser gets it, because all read the same default.yaml; only fit uses it
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="fit only: after training, test the final model (the averaged weights when WeightEMA"
            " is on) on the official 10k test split, log Loss/test and Accuracy/test into the run,"
            " and print the test accuracy in the summary",
        )

    def _add_subcommands(self, parser: Any, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        for choice in parser._subcommands_action._choices_actions:
            choice.help = SUBCOMMAND_HELP.get(choice.dest, choice.help)

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand is None:
            return
        config = self.config[subcommand]
        _check_trainer(config.trainer)
        _sync_learning_rate(config.model)
        loggers = _tensorboard_configs(config.trainer.logger)
        for logger in loggers:
            logger.init_args.name = _run_name(logger.init_args.name, config)
        if config.get("ckpt_path"):
            self._use_checkpoint(config, loggers, resume=subcommand == "fit")
        self.save_config_kwargs["config_filename"] = (
            "config.yaml" if subcommand == "fit" else f"{subcommand}_config.yaml"
        )

    def _use_checkpoint(self, config: Namespace, loggers: list[Namespace], resume: bool) -> None:
        """Resolve ``--ckpt_path`` shorthands, check the file, and log into the run it came from."""
        if config.ckpt_path in CHECKPOINT_SHORTHANDS:
            config.ckpt_path = str(newest_checkpoint(config.ckpt_path, loggers))
        path = Path(config.ckpt_path)
        step = checkpoint_step(path)
        run_dir = path.parent.parent
        if not loggers or path.parent.name != "checkpoints" or not (run_dir / "hparams.yaml").is_file():
            return  # not inside an fmnist run folder: log into a new run
        logger = loggers[0].init_args
        logger.save_dir, logger.name, logger.version = str(run_dir.parent.parent), run_dir.parent.name, run_dir.name
        if resume and "purge_step" in logger:
            # events the interrupted run wrote after its last checkpoint are hidden, not duplicated
            logger.purge_step = step

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as err:
            raise InputError(str(err)) from err

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except (InputError, MisconfigurationException) as err:
            self._discard_created_runs()
            raise err if isinstance(err, InputError) else InputError(str(err)) from err

    def after_fit(self) -> None:
        """Test the final model on the test split (``--test_after_fit``) and print the summary."""
        if self.trainer.interrupted:
            return
        metrics = None
        if self.config.fit.get("test_after_fit", True):
            try:
                (metrics,) = self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
            except InputError as err:  # e.g. a damaged test file: the trained run stays
                print(f"fmnist: error: testing after fit: {err}", file=sys.stderr)
                raise SystemExit(2) from None
        summary = fit_summary(self.trainer, metrics)  # on every rank: trainer.log_dir is a collective under DDP
        if self.trainer.is_global_zero:
            print(summary, flush=True)

    def _discard_created_runs(self) -> None:
        for logger in self.trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.discard()


def _check_trainer(trainer: Namespace) -> None:
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and (max_epochs == 0 or max_epochs < -1):
        raise InputError(f"trainer.max_epochs must be a positive number of epochs (or -1: no limit), got {max_epochs}")


def _sync_learning_rate(model: Namespace) -> None:
    # --model.lr is the learning rate; copy it into the optimizer's own ``lr`` so that config.yaml
    # and the HParams table show the value used, not the optimizer's default
    optimizer = model.get("optimizer")
    init_args = optimizer.get("init_args") if isinstance(optimizer, Namespace) else None
    if isinstance(init_args, Namespace) and "lr" in init_args:
        init_args.lr = float(model.lr)


def _tensorboard_configs(logger: Any) -> list[Namespace]:
    """The ``trainer.logger`` entries that take TensorBoardLogger's ``save_dir``, ``name`` and ``version``."""
    entries = logger if isinstance(logger, list) else [logger]
    return [
        entry
        for entry in entries
        if isinstance(entry, Namespace)
        and isinstance(entry.get("init_args"), Namespace)
        and all(key in entry.init_args for key in ("save_dir", "name", "version"))
    ]


def _run_name(template: str | None, config: Namespace) -> str | None:
    """Fill ``{model.lr}``-style placeholders of a run name from the parsed configuration."""
    if not template or "{" not in template:
        return template
    try:
        return template.format(model=config.model, data=config.data, trainer=config.trainer)
    except (AttributeError, KeyError, IndexError, ValueError) as err:
        raise InputError(
            f"trainer.logger name {template!r}: cannot fill it in ({err}); placeholders look like"
            " {model.lr} or {data.batch_size}"
        ) from err


def _prog() -> str:
    """``python -m fmnist`` or ``fmnist`` (the console script), as the user typed it."""
    return "python -m fmnist" if Path(sys.argv[0]).name == "__main__.py" else "fmnist"


def _quiet_lightning() -> None:
    """Drop messages a user cannot act on, so the ones that matter stand out."""
    # fmnist's batches are slices of in-memory tensors, for which workers only add overhead
    warnings.filterwarnings("ignore", r".*does not have many workers.*")
    # test/validate/predict from a checkpoint: it holds the averaged weights already (Lightning saves the
    # average as the model's state); only resuming a fit needs the averaging state, and fit restores it
    warnings.filterwarnings("ignore", r".*The WeightAveraging state cannot be restored.*")
    # raised inside Lightning 2.6 by torch >= 2.10's pytree module, not by fmnist's code
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: "litlogger" not in record.getMessage()  # an advertisement for a cloud service
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``python -m fmnist``; tests call ``main([...])`` in-process.

    Mistakes a user can fix exit with status 2 and one ``fmnist: error:`` line (set
    ``FMNIST_DEBUG=1`` for the traceback); a diverged run exits with status 1.
    """
    _quiet_lightning()
    args = sys.argv[1:] if args is None else args
    try:
        if args[:1] == ["sweep"]:
            from fmnist.sweep import sweep  # Optuna is imported only by the command that uses it

            sweep(args[1:])
        else:
            FashionCLI(args)
    except (InputError, ArgumentError, TrainingDivergedError) as err:
        if os.environ.get("FMNIST_DEBUG"):
            raise
        message = " ".join(str(err).split()) if isinstance(err, ArgumentError) else str(err)
        print(f"fmnist: error: {message}", file=sys.stderr)
        if isinstance(err, ArgumentError):
            print("fmnist: see the options with: python -m fmnist <fit|validate|test|predict> --help", file=sys.stderr)
        raise SystemExit(1 if isinstance(err, TrainingDivergedError) else 2) from None
