"""The callbacks on a classifier that is not fmnist's: RGB 32x32 images, four named classes, another layout.

Every visual callback at its default arguments; every dashboard read back from the event and
projector files with the class names it must show. Nothing here imports fmnist.
"""

import io
import math
import warnings
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassConfusionMatrix

import callbacks
from callbacks.render import captioned_grid, confusion_matrix_image, prediction_captions, to_unit_range
from callbacks.sampling import fixed_sample
from tests.helpers import events, run_dirs

NAMES = ("cat", "dog", "ship", "frog")
VAL_IMAGES = 40
HIDDEN = 24


class ColourShapes(pl.LightningDataModule):
    """RGB 32x32 images whose dominant colour channel (and brightness) gives one of four classes.

    Batches are ``(images, labels, index)``: a third element the callbacks must ignore. A fifth
    of the labels are random, so the model makes mistakes to show. No ``value_range``: the
    pictures stretch each image from its min to its max.
    """

    class_names = NAMES

    def __init__(self, train: int = 160, val: int = VAL_IMAGES) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)

        def make(count: int) -> TensorDataset:
            labels = torch.randint(0, 4, (count,), generator=generator)
            images = torch.rand(count, 3, 32, 32, generator=generator) * 3 - 1.5  # not in [-1, 1]
            images[torch.arange(count), labels % 3, 8:24, 8:24] += 2.0 + labels[:, None, None] // 3
            noisy = torch.rand(count, generator=generator) < 0.2
            labels[noisy] = torch.randint(0, 4, (int(noisy.sum()),), generator=generator)
            return TensorDataset(images, labels, torch.arange(count))

        self.train_set, self.val_set = make(train), make(val)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=16, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=16)


class TinyRGBNet(pl.LightningModule):
    """``features`` (conv, pool) and ``head`` (two linear layers); no ``net.fc1``, no ``example_input_array``."""

    def __init__(self, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8 * 16, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, len(NAMES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        images, labels, _ = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("Loss/train", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        images, labels, _ = batch
        logits = self(images)
        self.log("Loss/val", F.cross_entropy(logits, labels))
        return logits  # a bare tensor, where fmnist returns a dict

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def visual_callbacks() -> list[pl.Callback]:
    return [
        callbacks.MultilineCharts(), callbacks.ModelGraph(), callbacks.SampleImages(), callbacks.MisclassifiedImages(),
        callbacks.ConfusionMatrixImage(), callbacks.ParameterHistograms(), callbacks.EmbeddingProjector(),
        callbacks.PRCurves(), callbacks.HyperparameterTable(),
    ]  # fmt: skip


def train(model: pl.LightningModule, extra: list[pl.Callback], epochs: int = 2) -> pl.Trainer:
    pl.seed_everything(3)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=pl.loggers.TensorBoardLogger("runs", name="foreign"), callbacks=extra,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, accelerator="cpu",
        log_every_n_steps=1,
    )  # fmt: skip
    trainer.fit(model, ColourShapes())
    return trainer


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory):
    """One two-epoch fit of the foreign model with every visual callback; what it wrote, and the model."""
    root = tmp_path_factory.mktemp("foreign")
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patch.chdir(root)
        model = TinyRGBNet()
        train(model, visual_callbacks())
    (run,) = run_dirs(root / "runs")
    return run, events(run), model, [str(w.message) for w in caught]


def png(image) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))


def test_no_callback_gave_up(foreign) -> None:
    *_, messages = foreign
    assert not [m for m in messages if "write nothing" in m or "no graph" in m], messages


def test_graph_from_the_first_validation_batch(foreign) -> None:
    _, board, _, _ = foreign
    nodes = [node.name for node in board.Graph().node]
    assert any("features" in name for name in nodes) and any("head" in name for name in nodes)


def test_sample_and_misclassified_grids_of_rgb_images(foreign) -> None:
    _, board, _, _ = foreign
    sample = board.Images("Sample Images")
    assert len(sample) == 2
    grid = png(sample[-1])
    tile = 32 * 4 + 4  # 32 px images drawn 4x, 4 px apart
    assert grid.shape[1] == 4 + 8 * tile, "16 images, 8 a row, at their own size"
    first = grid[4 : 4 + 128, 4 : 4 + 128].astype(int)
    assert (first.max(axis=2) - first.min(axis=2)).max() > 50, "in colour, not grey"
    assert first.min() <= 5 and first.max() >= 250, "each image stretched from its min to its max"
    assert board.Images("Misclassified Images"), "a fifth of the labels are random: there are mistakes"


def test_sample_grid_captions_name_the_classes_with_probabilities(foreign) -> None:
    _, board, model, _ = foreign
    images, labels = fixed_sample(ColourShapes().val_set, 16, seed=0)
    with torch.no_grad():
        probabilities = model.eval()(images).float().softmax(dim=1)

    def drawn(names) -> np.ndarray:
        captions, colors = prediction_captions(probabilities, labels, names)
        return captioned_grid(to_unit_range(images, None), captions, colors, nrow=8).permute(1, 2, 0).numpy()

    written = png(board.Images("Sample Images")[-1])
    assert np.array_equal(written, drawn(NAMES)), "'cat 97.1%' / 'true: cat' under each image"
    assert not np.array_equal(written, drawn(["0", "1", "2", "3"]))


def test_confusion_matrix_is_four_by_four_with_the_class_names(foreign) -> None:
    _, board, model, _ = foreign
    data = ColourShapes()
    matrix = MulticlassConfusionMatrix(len(NAMES))
    model.eval()
    with torch.no_grad():
        for images, labels, _ in data.val_dataloader():
            matrix.update(model(images).argmax(dim=1), labels)
    expected = confusion_matrix_image(matrix.compute(), NAMES).permute(1, 2, 0).numpy()
    written = png(board.Images("Confusion Matrix")[-1])
    assert int(matrix.compute().sum()) == VAL_IMAGES
    assert np.array_equal(written, expected), "the matrix of the final model, drawn with cat/dog/ship/frog"
    numbered = confusion_matrix_image(matrix.compute(), ["0", "1", "2", "3"]).permute(1, 2, 0).numpy()
    assert written.shape != numbered.shape or not np.array_equal(written, numbered)


def test_pr_curve_per_named_class(foreign) -> None:
    _, board, _, _ = foreign
    assert {tag for tag in board.Tags()["tensors"] if tag.startswith("PR/")} == {f"PR/{name}" for name in NAMES}
    counts = np.array(board.Tensors("PR/ship")[-1].tensor_proto.float_val).reshape(6, -1)
    assert counts.shape[1] == 127 and counts[:4, 0].sum() == VAL_IMAGES


def test_projector_shows_the_last_linear_input_with_class_names(foreign) -> None:
    run, *_ = foreign
    (folder,) = [path.parent for path in run.glob("*/head.2.input/tensors.tsv")]
    assert np.loadtxt(folder / "tensors.tsv", delimiter="\t").shape == (VAL_IMAGES, HIDDEN)
    header, *rows = (folder / "metadata.tsv").read_text().splitlines()
    assert header == "label\tpredicted" and len(rows) == VAL_IMAGES
    assert {row.split("\t")[0] for row in rows} == set(NAMES)
    assert {row.split("\t")[1] for row in rows} <= set(NAMES)
    sprite = Image.open(folder / "sprite.png")
    assert sprite.size == (math.ceil(math.sqrt(VAL_IMAGES)) * 32,) * 2
    assert np.asarray(sprite.convert("RGB")).std(axis=2).max() > 20, "colour thumbnails"


def test_histograms_hparams_and_charts(foreign) -> None:
    _, board, model, _ = foreign
    for name, _ in model.named_parameters():
        assert len(board.Histograms(f"weights/{name}")) == 2 and len(board.Histograms(f"grads/{name}")) == 2
    content = board.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(0.01)
    layout = layout_pb2.Layout()
    layout.ParseFromString(board.Tensors(custom_scalar_metadata.CONFIG_SUMMARY_TAG)[0].tensor_proto.string_val[0])
    assert [chart.title for category in layout.category for chart in category.chart] == ["Losses"]


# --- a model the callbacks cannot work on: they warn once, write nothing, and training goes on ----------


class NoLinearNoLogits(TinyRGBNet):
    """Convolutions only (no nn.Linear), and a validation_step that returns only the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, len(NAMES), 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Identity()

    def validation_step(self, batch, batch_idx):
        images, labels, _ = batch
        return F.cross_entropy(self(images), labels)


def test_a_model_without_logits_or_linear_layer_is_warned_about_once(tmp_path: Path) -> None:
    picky = [callbacks.EmbeddingProjector(), callbacks.MisclassifiedImages(), callbacks.ConfusionMatrixImage(),
             callbacks.PRCurves()]  # fmt: skip
    with pytest.warns(UserWarning) as caught:
        trainer = train(NoLinearNoLogits(), picky, epochs=2)
    assert trainer.current_epoch == 2, "training went on"
    messages = [str(w.message) for w in caught]
    assert sum("EmbeddingProjector found no nn.Linear" in m for m in messages) == 1
    for name in ("MisclassifiedImages", "ConfusionMatrixImage", "PRCurves"):
        assert sum(m.startswith(f"{name} needs the model's logits") for m in messages) == 1, name
    (run,) = run_dirs()
    board = events(run)
    assert not board.Tags()["images"] and not board.Tags()["tensors"]
    assert not list(run.rglob("tensors.tsv")) and not (run / "projector_config.pbtxt").exists()


def test_class_names_argument_wins_and_a_wrong_count_is_numbered(tmp_path: Path) -> None:
    given = callbacks.PRCurves(class_names=["a", "b", "c", "d"])
    wrong = callbacks.ConfusionMatrixImage(class_names=["only", "two"])
    with pytest.warns(UserWarning, match="ConfusionMatrixImage has 2 class names for 4 logits"):
        train(TinyRGBNet(), [given, wrong], epochs=1)
    (run,) = run_dirs()
    board = events(run)
    assert set(board.Tags()["tensors"]) == {"PR/a", "PR/b", "PR/c", "PR/d"}
    assert board.Images("Confusion Matrix")


class DictForward(TinyRGBNet):
    """``forward`` returns a dict: nothing to trace for the graph, no logits for a forward pass."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"scores": self.head(self.features(x))}

    def training_step(self, batch, batch_idx):
        images, labels, _ = batch
        return F.cross_entropy(self(images)["scores"], labels)

    def validation_step(self, batch, batch_idx):
        return None


def test_a_model_whose_forward_returns_a_dict_is_warned_about_once(tmp_path: Path) -> None:
    picky = [callbacks.ModelGraph(), callbacks.SampleImages(), callbacks.EmbeddingProjector()]
    with pytest.warns(UserWarning) as caught:
        trainer = train(DictForward(), picky, epochs=2)
    assert trainer.current_epoch == 2, "training went on"
    messages = [str(w.message) for w in caught]
    assert sum(m.startswith("ModelGraph could not trace the model") for m in messages) == 1
    for name in ("SampleImages", "EmbeddingProjector"):
        assert sum(m.startswith(f"{name} needs the model's logits") for m in messages) == 1, name
    (run,) = run_dirs()
    board = events(run)
    assert not board.Tags()["graph"] and not board.Tags()["images"]
    assert not list(run.rglob("tensors.tsv"))
