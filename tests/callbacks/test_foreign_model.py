"""The callbacks on a classifier that is not fmnist's: RGB 32x32 images, four named classes, another layout.

Every visual callback at its default arguments; every dashboard read back from the event and
projector files with the class names it must show. Nothing here imports fmnist.
"""

import io
import math
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalar_metadata
from tensorboard.plugins.hparams import plugin_data_pb2
from torchmetrics.classification import MulticlassConfusionMatrix

import callbacks
from callbacks.render import captioned_grid, confusion_matrix_image, prediction_captions, to_unit_range
from callbacks.sampling import fixed_sample
from tests.callbacks.foreign import HIDDEN, NAMES, VAL_IMAGES, ColourShapes, TinyRGBNet, train
from tests.helpers import events, run_dirs


def visual_callbacks() -> list[pl.Callback]:
    return [
        callbacks.MultilineCharts(), callbacks.ModelGraph(), callbacks.SampleImages(), callbacks.MisclassifiedImages(),
        callbacks.ConfusionMatrixImage(), callbacks.ParameterHistograms(), callbacks.EmbeddingProjector(),
        callbacks.PRCurves(), callbacks.HyperparameterTable(),
    ]  # fmt: skip


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
