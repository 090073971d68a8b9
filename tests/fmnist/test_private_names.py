"""The private names of other libraries that fmnist still uses, each checked on the installed version.

``python3 ../shared/tools/private_uses.py .`` lists them (two, none in ``callbacks/``); each comes with a
comment naming the public way tried. When an upgrade removes one, the test here fails with the name and
the version, before a user's run does. The jsonargparse one is guarded beside its use:
``tests/fmnist/test_checkpoint_safety.py::test_the_private_settings_imports_only_restores_are_there``.
"""

import lightning
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.demos.boring_classes import BoringModel

from fmnist.profiler import TensorBoardProfiler


class Look(Callback):
    """What the profiler makes of the running trainer, seen from inside the run."""

    def __init__(self, profiler: TensorBoardProfiler) -> None:
        self.profiler, self.seen = profiler, {}

    def on_train_start(self, trainer: Trainer, pl_module: BoringModel) -> None:
        self.seen = {
            "attribute": hasattr(self.profiler, "_lightning_module"),
            "trainer": self.profiler._running_trainer(),
        }


def test_lightning_still_hands_the_profiler_the_module_as__lightning_module(tmp_path) -> None:
    profiler = TensorBoardProfiler(dirpath=str(tmp_path))
    look = Look(profiler)
    trainer = Trainer(
        default_root_dir=tmp_path, max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, profiler=profiler, callbacks=[look],
    )  # fmt: skip
    trainer.fit(BoringModel())
    assert look.seen["attribute"] and look.seen["trainer"] is trainer, (
        f"Lightning {lightning.__version__} no longer sets Profiler._lightning_module during a run:"
        " fmnist.profiler.TensorBoardProfiler cannot find the trainer, and writes no Profiler/* tags into TensorBoard"
    )
