"""Lightning's own tests of ``TorchCheckpointIO``, run on :class:`~callbacks.AtomicCheckpointIO`.

A port of the cases that use ``TorchCheckpointIO`` (by name, or as the plugin a Trainer saves with)
from Lightning-AI/pytorch-lightning at tag 2.6.5 (commit be98784a1a03581b7051a355ae1084fd352d7cea;
there is no 2.6.6 tag in the mirror, and the installed 2.6.6 ships the same ``torch_io.py`` and
``cloud_io.py`` as 2.6.5), under Lightning's Apache-2.0 licence:

- ``tests/tests_pytorch/plugins/test_checkpoint_io_plugin.py``: all three cases;
- ``tests/tests_pytorch/checkpointing/test_trainer_checkpoint.py``:
  ``test_trainer_save_checkpoint_storage_options``;
- ``tests/tests_pytorch/accelerators/test_cpu.py``: ``test_restore_checkpoint_after_pre_setup``;
- ``tests/tests_pytorch/trainer/connectors/test_accelerator_connector.py``:
  ``test_plugin_only_one_instance_for_one_type`` (its ``CheckpointIO`` row) and
  ``test_accelerator_specific_checkpoint_io``;
- ``tests/tests_fabric/test_connector.py``: ``test_plugin_only_one_instance_for_one_type`` (its
  ``CheckpointIO`` row), as ``TestFabricConnector.test_plugin_only_one_instance_for_one_type``, a
  class only so that its name can stay beside the Trainer's case of the same name.

Every case keeps its name and its assertions; what changed is only what the swap needs:

- ``TorchCheckpointIO()`` is ``AtomicCheckpointIO()``; a Trainer that saves with the default
  ``TorchCheckpointIO`` gets ``plugins=[AtomicCheckpointIO()]`` (``AsyncCheckpointIO()`` wraps one),
  and ``mock.patch`` patches ``AtomicCheckpointIO.save_checkpoint``;
- ``test_checkpoint_plugin_called`` wraps ``AtomicCheckpointIO`` in its ``MagicMock`` where Lightning
  wraps its test's ``CustomCheckpointIO`` (a plain ``torch.save``);
- ``test_multi_wrapped_checkpoint_io_initialization``'s second half keeps Lightning's
  ``AsyncCheckpointIO()``: it checks the Trainer's default, which is ``TorchCheckpointIO`` itself;
- ``Union[str, Path]`` is spelled ``str | Path`` (ruff's ``UP007``); ``@pytest.mark.flaky(reruns=3)``
  is dropped (pytest-rerunfailures is not a dependency, and markers are strict); the
  ``xla_available`` fixture of Lightning's conftest is the one line of it that ``XLACheckpointIO()``
  reads.

Before ``AtomicCheckpointIO`` raised Lightning's own ``storage_options`` message,
``test_trainer_save_checkpoint_storage_options`` failed on the wording alone; now no case is expected
to fail. Left out: the ``ClusterEnvironment`` and ``Precision`` rows of the two
``test_plugin_only_one_instance_for_one_type`` (no checkpoint IO in them); the tests of the private
``_atomic_save`` in ``tests_fabric/utilities/test_cloud_io.py`` (their local case is in
``test_checkpoint_io.py``); Fabric's strategy tests, which replace the plugin's methods with mocks;
and ``tests_fabric/plugins/io/test_torch_io.py``, which 2.6.5 does not have.

Run with ``pytest tests/callbacks/test_checkpoint_io_lightning.py``.
"""

# Copyright The Lightning AI team.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
import os
from pathlib import Path
from typing import Any
from unittest import mock
from unittest.mock import ANY, MagicMock, Mock

import lightning.pytorch as pl
import pytest
import torch
from lightning.fabric.connector import _Connector
from lightning.fabric.plugins import TorchCheckpointIO, XLACheckpointIO
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.plugins.io.async_plugin import AsyncCheckpointIO
from lightning.pytorch.plugins.precision.precision import Precision
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from callbacks import AtomicCheckpointIO


@pytest.fixture
def xla_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lightning.fabric.plugins.io.xla._XLA_AVAILABLE", True)


# tests/tests_pytorch/plugins/test_checkpoint_io_plugin.py


def test_checkpoint_plugin_called(tmp_path):
    """Ensure that the custom checkpoint IO plugin and torch checkpoint IO plugin is called when saving/loading."""
    checkpoint_plugin = AtomicCheckpointIO()
    checkpoint_plugin = MagicMock(wraps=checkpoint_plugin, spec=AtomicCheckpointIO)

    ck = ModelCheckpoint(dirpath=tmp_path, save_last=True)

    model = BoringModel()
    trainer = Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        strategy=SingleDeviceStrategy("cpu", checkpoint_io=checkpoint_plugin),
        callbacks=ck,
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=0,
        limit_test_batches=1,
    )
    trainer.fit(model)

    ckpt_files = {fn.name for fn in Path(tmp_path).glob("*.ckpt")}
    assert ckpt_files == {"epoch=1-step=2.ckpt", "last.ckpt"}
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "epoch=1-step=2.ckpt")
    assert trainer.checkpoint_callback.last_model_path == str(tmp_path / "last.ckpt")
    assert checkpoint_plugin.save_checkpoint.call_count == 4
    assert checkpoint_plugin.remove_checkpoint.call_count == 1

    trainer.test(model, ckpt_path=ck.last_model_path)
    checkpoint_plugin.load_checkpoint.assert_called_with(str(tmp_path / "last.ckpt"), weights_only=None)

    checkpoint_plugin.reset_mock()
    ck = ModelCheckpoint(dirpath=tmp_path, save_last=True)

    model = BoringModel()
    trainer = Trainer(
        default_root_dir=tmp_path,
        accelerator="cpu",
        strategy=SingleDeviceStrategy("cpu"),
        plugins=[checkpoint_plugin],
        callbacks=ck,
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=0,
        limit_test_batches=1,
    )
    trainer.fit(model)

    ckpt_files = {fn.name for fn in Path(tmp_path).glob("*.ckpt")}
    assert ckpt_files == {"epoch=1-step=2.ckpt", "last.ckpt", "epoch=1-step=2-v1.ckpt", "last-v1.ckpt"}
    assert trainer.checkpoint_callback.best_model_path == str(tmp_path / "epoch=1-step=2-v1.ckpt")
    assert trainer.checkpoint_callback.last_model_path == str(tmp_path / "last-v1.ckpt")
    assert checkpoint_plugin.save_checkpoint.call_count == 4
    assert checkpoint_plugin.remove_checkpoint.call_count == 1

    trainer.test(model, ckpt_path=ck.last_model_path)
    checkpoint_plugin.load_checkpoint.assert_called_once()
    checkpoint_plugin.load_checkpoint.assert_called_with(str(tmp_path / "last-v1.ckpt"), weights_only=None)


def test_async_checkpoint_plugin(tmp_path):
    """Ensure that the custom checkpoint IO plugin and torch checkpoint IO plugin is called when async saving and
    loading."""

    checkpoint_plugin = AsyncCheckpointIO(AtomicCheckpointIO())

    checkpoint_plugin.save_checkpoint = Mock(wraps=checkpoint_plugin.save_checkpoint)
    checkpoint_plugin.remove_checkpoint = Mock(wraps=checkpoint_plugin.remove_checkpoint)

    class CustomBoringModel(BoringModel):
        def on_fit_start(self):
            base_ckpt_io = self.trainer.strategy.checkpoint_io.checkpoint_io
            base_ckpt_io.save_checkpoint = Mock(wraps=base_ckpt_io.save_checkpoint)
            base_ckpt_io.remove_checkpoint = Mock(wraps=base_ckpt_io.remove_checkpoint)

    ck = ModelCheckpoint(dirpath=tmp_path, save_top_k=2, monitor="step", mode="max")

    model = CustomBoringModel()
    trainer = Trainer(
        default_root_dir=tmp_path,
        plugins=[checkpoint_plugin],
        callbacks=ck,
        max_epochs=3,
        limit_train_batches=1,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )

    # We add a validate step to test that async works when fit or validate is called multiple times.
    trainer.validate(model)

    trainer.fit(model)

    assert checkpoint_plugin.save_checkpoint.call_count == 3
    assert checkpoint_plugin.remove_checkpoint.call_count == 1

    base_ckpt_io = trainer.strategy.checkpoint_io.checkpoint_io
    assert base_ckpt_io.save_checkpoint.call_count == 3
    assert base_ckpt_io.remove_checkpoint.call_count == 1


def test_multi_wrapped_checkpoint_io_initialization():
    base_ckpt_io = AtomicCheckpointIO()
    wrap_ckpt = AsyncCheckpointIO(base_ckpt_io)
    ckpt_io = AsyncCheckpointIO(wrap_ckpt)
    assert ckpt_io.checkpoint_io is wrap_ckpt
    assert ckpt_io.checkpoint_io.checkpoint_io is base_ckpt_io
    assert ckpt_io._base_checkpoint_io_configured is True
    assert ckpt_io.checkpoint_io._base_checkpoint_io_configured is True

    wrap_ckpt = AsyncCheckpointIO()
    ckpt_io = AsyncCheckpointIO(wrap_ckpt)
    trainer = Trainer(accelerator="cpu", plugins=[ckpt_io])
    trainer.strategy.checkpoint_io  # noqa: B018 (reading it sets the wrapped plugins up)
    assert ckpt_io.checkpoint_io is wrap_ckpt
    assert isinstance(ckpt_io.checkpoint_io.checkpoint_io, TorchCheckpointIO)
    assert ckpt_io._base_checkpoint_io_configured is True
    assert ckpt_io.checkpoint_io._base_checkpoint_io_configured is True


# tests/tests_pytorch/checkpointing/test_trainer_checkpoint.py


def test_trainer_save_checkpoint_storage_options(tmp_path, xla_available):
    """This test validates that storage_options argument is properly passed to ``CheckpointIO``"""
    model = BoringModel()
    trainer = Trainer(
        default_root_dir=tmp_path,
        fast_dev_run=True,
        enable_checkpointing=False,
        plugins=[AtomicCheckpointIO()],
    )
    trainer.fit(model)
    instance_path = tmp_path / "path.ckpt"
    instance_storage_options = "my instance storage options"

    with mock.patch("callbacks.checkpoint_io.AtomicCheckpointIO.save_checkpoint") as io_mock:
        trainer.save_checkpoint(instance_path, storage_options=instance_storage_options)
        io_mock.assert_called_with(ANY, instance_path, storage_options=instance_storage_options)
        trainer.save_checkpoint(instance_path)
        io_mock.assert_called_with(ANY, instance_path, storage_options=None)

    checkpoint_mock = Mock()
    with (
        mock.patch.object(trainer.strategy, "save_checkpoint") as save_mock,
        mock.patch.object(trainer._checkpoint_connector, "dump_checkpoint", return_value=checkpoint_mock) as dump_mock,
    ):
        trainer.save_checkpoint(instance_path, True)
        dump_mock.assert_called_with(True)
        save_mock.assert_called_with(checkpoint_mock, instance_path, storage_options=None)
        trainer.save_checkpoint(instance_path, False, instance_storage_options)
        dump_mock.assert_called_with(False)
        save_mock.assert_called_with(checkpoint_mock, instance_path, storage_options=instance_storage_options)

    torch_checkpoint_io = AtomicCheckpointIO()
    with pytest.raises(
        TypeError,
        match=r"`Trainer.save_checkpoint\(..., storage_options=...\)` with `storage_options` arg"
        f" is not supported for `{torch_checkpoint_io.__class__.__name__}`. Please implement your custom `CheckpointIO`"
        " to define how you'd like to use `storage_options`.",
    ):
        torch_checkpoint_io.save_checkpoint({}, instance_path, storage_options=instance_storage_options)
    xla_checkpoint_io = XLACheckpointIO()
    with pytest.raises(
        TypeError,
        match=r"`Trainer.save_checkpoint\(..., storage_options=...\)` with `storage_options` arg"
        f" is not supported for `{xla_checkpoint_io.__class__.__name__}`. Please implement your custom `CheckpointIO`"
        " to define how you'd like to use `storage_options`.",
    ):
        xla_checkpoint_io.save_checkpoint({}, instance_path, storage_options=instance_storage_options)


# tests/tests_pytorch/accelerators/test_cpu.py


@pytest.mark.parametrize("restore_after_pre_setup", [True, False])
def test_restore_checkpoint_after_pre_setup(tmp_path, restore_after_pre_setup):
    """Test to ensure that if restore_checkpoint_after_setup is True, then we only load the state after pre- dispatch
    is called."""

    class TestPlugin(SingleDeviceStrategy):
        setup_called = False

        def setup(self, trainer: "pl.Trainer") -> None:
            super().setup(trainer)
            self.setup_called = True

        @property
        def restore_checkpoint_after_setup(self) -> bool:
            return restore_after_pre_setup

        def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool) -> dict[str, Any]:
            assert self.setup_called == restore_after_pre_setup
            return super().load_checkpoint(checkpoint_path, weights_only)

    model = BoringModel()
    trainer = Trainer(default_root_dir=tmp_path, fast_dev_run=True, plugins=[AtomicCheckpointIO()])
    trainer.fit(model)

    checkpoint_path = os.path.join(tmp_path, "model.pt")
    trainer.save_checkpoint(checkpoint_path)

    plugin = TestPlugin(
        accelerator=CPUAccelerator(),
        precision_plugin=Precision(),
        device=torch.device("cpu"),
        checkpoint_io=AtomicCheckpointIO(),
    )
    assert plugin.restore_checkpoint_after_setup == restore_after_pre_setup

    trainer = Trainer(default_root_dir=tmp_path, strategy=plugin, fast_dev_run=True)
    trainer.fit(model, ckpt_path=checkpoint_path)
    for func in (trainer.test, trainer.validate, trainer.predict):
        plugin.setup_called = False
        func(model, ckpt_path=checkpoint_path)


# tests/tests_pytorch/trainer/connectors/test_accelerator_connector.py


@pytest.mark.parametrize(("plugins", "expected"), [([AtomicCheckpointIO(), AtomicCheckpointIO()], "CheckpointIO")])
def test_plugin_only_one_instance_for_one_type(plugins, expected):
    with pytest.raises(MisconfigurationException, match=f"Received multiple values for {expected}"):
        Trainer(plugins=plugins)


def test_accelerator_specific_checkpoint_io():
    ckpt_plugin = AtomicCheckpointIO()
    trainer = Trainer(accelerator="cpu", strategy=DDPStrategy(), plugins=[ckpt_plugin])
    assert trainer.strategy.checkpoint_io is ckpt_plugin


# tests/tests_fabric/test_connector.py


class TestFabricConnector:
    @pytest.mark.parametrize(("plugins", "expected"), [([AtomicCheckpointIO(), AtomicCheckpointIO()], "CheckpointIO")])
    def test_plugin_only_one_instance_for_one_type(self, plugins, expected):
        with pytest.raises(ValueError, match=f"Received multiple values for {expected}"):
            _Connector(plugins=plugins)
