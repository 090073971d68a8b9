"""The fit CLI: ``python -m fmnist fit|validate|test|predict [--config FILE] [--key value ...]``.

LightningCLI does the parsing; this file wires in fmnist's defaults (``default.yaml`` beside it,
the same file as ``configs/default.yaml``), its run folders (:mod:`fmnist.runs`), checkpoints read
as data (:mod:`fmnist.checkpoints`), its console output (:mod:`fmnist.console`) and a test after
``fit``; user errors are raised as :class:`~fmnist.errors.InputError`, which the entry point
(:mod:`fmnist.main`) turns into one line. The sweep (:mod:`fmnist.sweep`) builds its trials with this CLI.
"""

import contextlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks import AtomicCheckpointIO
from fmnist.checkpoints import allowed_imports, check_checkpoint, imports_only, read_checkpoint, user_imports
from fmnist.console import first_line, fit_summary, wants_progress_lines
from fmnist.data import FashionMNISTDataModule
from fmnist.errors import InputError
from fmnist.hardware import choose_precision
from fmnist.logger import RunLogger
from fmnist.module import FashionMNISTClassifier
from fmnist.progress import LineProgressBar
from fmnist.runs import (
    CHECKPOINT_SHORTHANDS,
    DiscardFailedRun,
    log_into,
    newest_checkpoint,
    run_name,
    run_of,
    tensorboard_configs,
)

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
#: What a checkpoint's hyperparameters build: the keys LightningCLI's classes are saved under.
CHECKPOINT_CLASSES = {"hyper_parameters": FashionMNISTClassifier, "datamodule_hyper_parameters": FashionMNISTDataModule}
SUBCOMMANDS = ("fit", "validate", "test", "predict")
#: One line per subcommand, for its own ``--help``.
SUBCOMMAND_HELP = {
    "fit": "train the model, then test it on the official 10k test split and print a summary",
    "validate": "evaluate a checkpoint (--ckpt_path best|last|FILE) on the validation split",
    "test": "evaluate a checkpoint (--ckpt_path best|last|FILE) on the official 10k test split",
    "predict": "classify the test split, or your own pictures (--data.predict_path), into predictions.csv",
}
# The list of subcommands in --help keeps LightningCLI's lines (from the Trainer methods' docstrings): it takes
# no argument for them, and changing them meant overriding its private _add_subcommands. What each does in
# fmnist is said here instead.
DESCRIPTION = (
    "fmnist: the TensorBoard-with-PyTorch tutorial's CNN on Fashion-MNIST, as a Lightning project. "
    + "; ".join(f"{name}: {line}" for name, line in SUBCOMMAND_HELP.items())
    + ". See everything in TensorBoard (tensorboard --logdir runs). Defaults: configs/default.yaml."
)


class FashionCLI(LightningCLI):
    """LightningCLI for :class:`FashionMNISTClassifier` on :class:`FashionMNISTDataModule`.

    ``python -m fmnist`` builds it with ``run=True``: the first argument is the subcommand. The
    sweep builds each trial with ``run=False`` (the arguments of ``fit`` alone), places the run
    with ``run_dir`` and calls ``trainer.fit`` and :meth:`test_after_fit` itself.

    Args:
        args: the command line without the program name; ``None`` reads ``sys.argv``.
        run: as in LightningCLI: parse a subcommand and run it.
        run_dir: log into this run folder (``<save_dir>/<name>/<version>``) instead of a new one.
        instantiate: ``False`` only parses and checks the arguments (``cli.parser``, ``cli.config``).
        kwargs: LightningCLI's other arguments, e.g. ``trainer_defaults``.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        run: bool = True,
        run_dir: Path | None = None,
        instantiate: bool = True,
        **kwargs: Any,
    ) -> None:
        self.run_dir, self.instantiate = run_dir, instantiate
        self._given_tta: list[str] | None = None  # --model.tta as given, over a checkpoint's (parse_arguments)
        # from the check of --ckpt_path to before_instantiate_classes: what LightningCLI's own parse of the
        # checkpoint's hyperparameters may import (fmnist.checkpoints.imports_only); closed on any error too
        self._checkpoint_imports = contextlib.ExitStack()
        # parse errors become one fmnist: error line, without argparse's usage wall
        defaults = {"default_config_files": [str(DEFAULT_CONFIG)], "exit_on_error": False}
        parser_kwargs: dict[str, Any] = {"exit_on_error": False, "prog": _prog(), "description": DESCRIPTION}
        if run:
            parser_kwargs["epilog"] = (
                "Also: python -m fmnist sweep --space FILE [fit options]: search hyperparameters with Optuna"
                " (python -m fmnist sweep --help); python -m fmnist export --ckpt_path best|last|FILE: the model as"
                " one ONNX or TorchScript file, proven equal to its checkpoint (python -m fmnist export --help)."
            )
            for name in SUBCOMMANDS:
                parser_kwargs[name] = {**defaults, "description": f"{name}: {SUBCOMMAND_HELP[name]}."}
        else:
            parser_kwargs.update(defaults)
        with self._checkpoint_imports:
            super().__init__(
                FashionMNISTClassifier,
                FashionMNISTDataModule,
                save_config_kwargs={"overwrite": True},  # a resumed run rewrites its own config.yaml
                seed_everything_default=42,
                parser_kwargs=parser_kwargs,
                auto_configure_optimizers=False,  # the optimizer is --model.optimizer, next to --model.lr
                args=args,
                run=run,
                **kwargs,
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
        parser.add_argument(
            "--bf16_where_it_pays",
            type=bool,
            default=False,
            help="when trainer.precision is not given: bf16-mixed on a GPU with bfloat16 or a CPU with AMX,"
            " 32-true elsewhere (fmnist.hardware); the choice and the hardware are printed",
        )

    def parse_arguments(self, parser: Any, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if "subcommand" in self.config and subcommand is None:
            return  # e.g. --help
        config = self.config[subcommand] if subcommand else self.config
        _check_trainer(config.trainer)
        choose_precision(config)
        _sync_learning_rate(config.model)
        loggers = tensorboard_configs(config.trainer.logger)
        for logger in loggers:
            logger["name"] = run_name(logger["name"], config)
        if config.get("ckpt_path"):
            self._use_checkpoint(config, loggers, resume=subcommand == "fit")
        if self.run_dir is not None:
            log_into(loggers, self.run_dir)
        self._given_tta = config.model.get("tta")
        self.save_config_kwargs["config_filename"] = (
            f"{subcommand}_config.yaml" if subcommand not in (None, "fit") else "config.yaml"
        )

    def _use_checkpoint(self, config: Namespace, loggers: list[Namespace], resume: bool) -> None:
        """Resolve ``--ckpt_path`` shorthands, check the file, and log into the run it came from.

        Runs before LightningCLI puts the checkpoint's hyperparameters over the configuration, where
        jsonargparse imports what they name: they are parsed first importing only the classes the
        options take and the names the user's configuration gives
        (:func:`~fmnist.checkpoints.check_checkpoint`), and LightningCLI's parse runs under the same
        policy, until :meth:`before_instantiate_classes`.
        """
        if config.ckpt_path in CHECKPOINT_SHORTHANDS:
            config.ckpt_path = str(newest_checkpoint(config.ckpt_path, loggers))
        path = Path(config.ckpt_path)
        checkpoint = read_checkpoint(path)
        allowed = allowed_imports(CHECKPOINT_CLASSES.values(), user_imports(config))
        check_checkpoint(checkpoint, path, CHECKPOINT_CLASSES, allowed)
        self._checkpoint_imports.enter_context(imports_only(allowed))
        run_dir = run_of(path)
        if self.run_dir is not None or run_dir is None:
            return  # a trial's own folder, or a checkpoint from outside any run: log into a new run
        log_into(loggers, run_dir)
        if resume and loggers and "purge_step" in loggers[0]:
            # events the interrupted run wrote after its last checkpoint are hidden, not duplicated
            loggers[0]["purge_step"] = int(checkpoint.get("global_step", 0))

    def before_instantiate_classes(self) -> None:
        self._checkpoint_imports.close()  # the checkpoint's hyperparameters are parsed: the user's classes build
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if self._given_tta is not None:
            # LightningCLI has just put the checkpoint's hyperparameters over the command line's
            # (its _parse_ckpt_path); the views to average are chosen at evaluation, not at training:
            # --model.tta on validate, test or predict applies to any checkpoint ('[]': none)
            config.model.tta = self._given_tta
        # every run: a run that stops on the user's input before its first step leaves no folder behind
        added = [DiscardFailedRun(), *([LineProgressBar()] if wants_progress_lines(config.trainer) else [])]
        given = self.trainer_defaults.get("callbacks", [])
        self.trainer_defaults = {
            **self.trainer_defaults,
            "callbacks": [*(given if isinstance(given, list) else [given]), *added],
        }

    def instantiate_classes(self) -> None:
        if not self.instantiate:
            return
        try:
            super().instantiate_classes()
        except (ValueError, MisconfigurationException) as err:
            raise InputError(str(err)) from err

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, writing checkpoints with :class:`~callbacks.AtomicCheckpointIO` unless the
        configuration names a ``CheckpointIO`` of its own: a full disk never leaves one cut short."""
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        given = config.trainer.get("plugins")
        plugins = [] if given is None else given if isinstance(given, list) else [given]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def before_fit(self) -> None:
        self._announce("fit")

    def before_validate(self) -> None:
        self._announce("validate")

    def before_test(self) -> None:
        self._announce("test")

    def before_predict(self) -> None:
        self._announce("predict")

    def _announce(self, subcommand: str) -> None:
        if self.trainer.is_global_zero:
            config = self.config[subcommand]
            print(
                first_line(self.trainer, subcommand, config.get("ckpt_path"), config.get("seed_everything")), flush=True
            )

    def after_fit(self) -> None:
        """Test the final model on the test split (``--test_after_fit``) and print the summary."""
        if self.trainer.interrupted:
            return
        metrics = self.test_after_fit()
        summary = fit_summary(self.trainer, metrics)  # on every rank: trainer.log_dir is a collective under DDP
        if self.trainer.is_global_zero:
            print(summary, flush=True)
        self.close_loggers()

    def close_loggers(self) -> None:
        """Close the run's event file after its last stage (the fit and its test share one file)."""
        for logger in self.trainer.loggers:
            if isinstance(logger, RunLogger):
                logger.close()

    def test_after_fit(self) -> Mapping[str, float] | None:
        """The test of the fitted model on the official test split, when ``--test_after_fit`` asks for it.

        ``None`` when it does not, or when the fit was interrupted.
        """
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        if self.trainer.interrupted or not config.get("test_after_fit", True):
            return None
        try:
            (metrics,) = self.trainer.test(self.model, datamodule=self.datamodule, verbose=False)
        except InputError as err:  # e.g. a damaged test file: the trained run stays (DiscardFailedRun)
            raise InputError(f"testing after fit: {err}") from err
        return metrics


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


def _prog() -> str:
    """``python -m fmnist`` or ``fmnist`` (the console script), as the user typed it."""
    return "python -m fmnist" if Path(sys.argv[0]).name == "__main__.py" else "fmnist"
