"""Each visual callback in a real fit, checked by reading back what TensorBoard would read."""

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2
from tensorboard.plugins.pr_curve import metadata as pr_metadata

import callbacks
from fmnist import CLASS_NAMES, FashionMNISTClassifier, FashionMNISTDataModule
from tests.helpers import events, fit_in, run_dirs, write_dataset

EPOCHS = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One default fit (every callback on), shared by the tests that only read its files."""
    root = tmp_path_factory.mktemp("callbacks")
    data = write_dataset(root / "data", train=640, test=200)
    (run_dir,) = fit_in(root, "--data.data_dir", str(data), "--data.val_size", "160", "--data.batch_size", "32",
                        "--trainer.max_epochs", str(EPOCHS))  # fmt: skip
    return run_dir


@pytest.fixture(scope="module")
def board(run: Path):
    return events(run)


def epoch_steps(board) -> list[int]:
    return [event.step for event in board.Scalars("Loss/val")]


def test_graph_is_written_once(board, run: Path) -> None:
    files = sorted(run.glob("events.out.tfevents.*"))  # the fit's, and the test after it's
    assert sum(event.HasField("graph_def") for file in files for event in EventFileLoader(str(file)).Load()) == 1
    nodes = [node.name for node in board.Graph().node]
    assert any("conv1" in name for name in nodes) and any("fc2" in name for name in nodes)


@pytest.mark.parametrize("tag", ["Sample Images", "Misclassified Images", "Confusion Matrix"])
def test_images_once_per_epoch_at_the_scalars_steps(board, tag: str) -> None:
    images = board.Images(tag)
    assert [image.step for image in images] == epoch_steps(board)
    assert all(image.width > 200 and image.height > 100 for image in images)


def test_sample_grid_shows_the_same_images_every_epoch(board, tmp_path: Path) -> None:
    first, last = (np.asarray(_png(image, tmp_path)) for image in board.Images("Sample Images"))
    assert first.shape == last.shape
    side, pad = 28 * 4, 4  # each image drawn 4x, with its two caption lines below it
    tile_h = (first.shape[0] - pad) // 2  # 16 images in 2 rows of 8
    for index in range(16):
        y, x = pad + (index // 8) * tile_h, pad + (index % 8) * (side + pad)
        assert np.array_equal(first[y : y + side, x : x + side], last[y : y + side, x : x + side]), index
    assert first.std() > 10, "not a blank picture"


def test_histograms_of_every_weight_and_gradient(board, run: Path) -> None:
    module = FashionMNISTClassifier()
    for name, parameter in module.named_parameters():
        for kind in ("weights", "grads"):
            histograms = board.Histograms(f"{kind}/{name}")
            assert [h.step for h in histograms] == epoch_steps(board), (kind, name)
            assert all(h.histogram_value.num == parameter.numel() for h in histograms)
    assert set(board.Tags()["distributions"]) == set(board.Tags()["histograms"])
    grads = board.Histograms("grads/net.fc2.weight")[-1].histogram_value
    assert grads.sum_squares > 0, "gradients were captured before they were zeroed"


def test_projector_files(run: Path) -> None:
    config = (run / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "net.fc1' in config and "sprite" in config
    (folder,) = [path.parent for path in run.glob("*/net.fc1/tensors.tsv")]
    tensors = np.loadtxt(folder / "tensors.tsv", delimiter="\t")
    assert tensors.shape == (160, 128), "all 160 validation images, 128-d fc1 features"
    header, *rows = (folder / "metadata.tsv").read_text().splitlines()
    assert header.split("\t") == ["label", "predicted"] and len(rows) == 160
    assert {row.split("\t")[0] for row in rows} <= set(CLASS_NAMES) and len({row.split("\t")[0] for row in rows}) > 5
    sprite = Image.open(folder / "sprite.png")
    assert sprite.size == (math.ceil(math.sqrt(160)) * 28,) * 2


def test_pr_curve_per_class_per_epoch(board) -> None:
    tags = {f"PR/{name}" for name in CLASS_NAMES}
    assert tags <= set(board.Tags()["tensors"])
    positives = 0
    for tag in tags:
        curves = board.Tensors(tag)
        assert [curve.step for curve in curves] == epoch_steps(board)
        data = torch.tensor(np.array(curves[-1].tensor_proto.float_val)).view(6, -1)  # tp fp tn fn precision recall
        tp, fp, tn, fn, precision, recall = data
        assert data.shape[1] == 127 and (tp + fp + tn + fn == 160).all()
        assert ((precision >= 0) & (precision <= 1) & (recall >= 0) & (recall <= 1)).all()
        assert (recall[:-1] >= recall[1:]).all(), "recall falls as the threshold rises"
        positives += int(tp[0] + fn[0])
    assert positives == 160, "every validation image is a positive of exactly one class"
    assert set(board.PluginTagToContent(pr_metadata.PLUGIN_NAME)) == tags


def test_hparams_session_with_metrics_and_no_placeholder(board) -> None:
    content = board.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert [m.name.tag for m in experiment.metric_infos] == ["Accuracy/val_best", "Loss/val", "Accuracy/test"]
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert session.hparams["lr"].number_value == pytest.approx(0.001)
    assert session.hparams["batch_size"].number_value == 32
    assert session.hparams["optimizer"].string_value == "torch.optim.Adam"
    scalars = board.Tags()["scalars"]
    assert "hp_metric" not in scalars and {"Accuracy/val_best", "Loss/val"} <= set(scalars)
    best = [event.value for event in board.Scalars("Accuracy/val_best")]
    assert best == list(np.maximum.accumulate([event.value for event in board.Scalars("Accuracy/val")]))


def _png(image, tmp_path: Path) -> Image.Image:
    path = tmp_path / "image.png"
    path.write_bytes(image.encoded_image_string)
    return Image.open(path).convert("RGB")


# --- in-process Trainer tests, for what the CLI run above cannot show --------------------------


def visual_callbacks() -> list[pl.Callback]:
    return [
        callbacks.MultilineCharts(), callbacks.ModelGraph(), callbacks.SampleImages(), callbacks.MisclassifiedImages(),
        callbacks.ConfusionMatrixImage(), callbacks.ParameterHistograms(), callbacks.EmbeddingProjector(num_images=64),
        callbacks.PRCurves(), callbacks.HyperparameterTable(),
    ]  # fmt: skip


def fit(data_dir: Path, logger, extra: list[pl.Callback], epochs: int = 2) -> pl.Trainer:
    pl.seed_everything(7)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=logger, callbacks=extra, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, accelerator="cpu", devices=1,
    )  # fmt: skip
    trainer.fit(FashionMNISTClassifier(), FashionMNISTDataModule(str(data_dir), batch_size=32, val_size=96))
    return trainer


def test_callbacks_never_change_training(data_dir: Path) -> None:
    with_visuals = fit(data_dir, pl.loggers.TensorBoardLogger("with"), visual_callbacks())
    without = fit(data_dir, pl.loggers.TensorBoardLogger("without"), [])
    for key in ("Loss/val", "Accuracy/val", "Loss/train"):
        assert with_visuals.callback_metrics[key] == without.callback_metrics[key], key
    (visual_run,), (plain_run,) = run_dirs(Path("with")), run_dirs(Path("without"))
    assert [e.value for e in events(visual_run).Scalars("Loss/val")] == [
        e.value for e in events(plain_run).Scalars("Loss/val")
    ]


def test_without_tensorboard_each_callback_warns_once_and_training_goes_on(data_dir: Path) -> None:
    with pytest.warns(UserWarning) as warnings:
        trainer = fit(data_dir, pl.loggers.CSVLogger("csv"), visual_callbacks())
    assert trainer.current_epoch == 2 and "Loss/val" in trainer.callback_metrics
    messages = [str(w.message) for w in warnings if "has no TensorBoardLogger" in str(w.message)]
    for callback in visual_callbacks():
        assert sum(type(callback).__name__ in m for m in messages) == 1, type(callback).__name__


def test_gradients_are_those_of_the_last_training_step(data_dir: Path) -> None:
    class RecordLastGradient(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.grad = pl_module.net.conv2.weight.grad.detach().clone()

    recorder = RecordLastGradient()
    fit(data_dir, pl.loggers.TensorBoardLogger("tb"), [callbacks.ParameterHistograms(), recorder], epochs=1)
    (run,) = run_dirs(Path("tb"))
    histogram = events(run).Histograms("grads/net.conv2.weight")[-1].histogram_value
    assert histogram.sum == pytest.approx(float(recorder.grad.sum()), rel=1e-4, abs=1e-7)
    assert histogram.sum_squares == pytest.approx(float((recorder.grad**2).sum()), rel=1e-4)


def test_projector_every_epoch_uses_distinct_steps(data_dir: Path) -> None:
    fit(
        data_dir,
        pl.loggers.TensorBoardLogger("tb"),
        [callbacks.EmbeddingProjector(num_images=50, every_n_epochs=1)],
        epochs=2,
    )
    (run,) = run_dirs(Path("tb"))
    # without a layer: the input of the last nn.Linear (fc2), the 128-d penultimate features
    folders = sorted(path.parent.parent.name for path in run.glob("*/net.fc2.input/tensors.tsv"))
    assert len(folders) == 2 and len(set(folders)) == 2, "one embedding per epoch; the end of fit adds none"
    assert (run / "projector_config.pbtxt").read_text().count("embeddings {") == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: callbacks.SampleImages(num_images=0), "num_images and nrow must be at least 1"),
        (lambda: callbacks.MisclassifiedImages(every_n_epochs=0), "every_n_epochs must be at least 1"),
        (lambda: callbacks.ConfusionMatrixImage(every_n_epochs=0), "every_n_epochs must be at least 1"),
        (lambda: callbacks.PRCurves(num_thresholds=1), "num_thresholds must be at least 2"),
        (lambda: callbacks.ParameterHistograms(weights=False, gradients=False), "both off"),
        (lambda: callbacks.EmbeddingProjector(num_images=0), "num_images must be at least 1"),
        (lambda: callbacks.EmbeddingProjector(every_n_epochs=-1), "every_n_epochs must be 0 or more"),
        (lambda: callbacks.HyperparameterTable(metrics=[]), "at least one metric"),
        (lambda: callbacks.MultilineCharts({"Losses": []}), "at least one tag"),
        (lambda: callbacks.DivergenceGuard(every_n_steps=0), "every_n_steps must be at least 1"),
        (lambda: callbacks.WeightEMA(decay=1.5), "decay must be between 0 and 1"),
    ],
)
def test_bad_arguments_are_refused_at_construction(make, message: str) -> None:
    with pytest.raises(pl.utilities.exceptions.MisconfigurationException, match=message):
        make()


def test_projector_refuses_a_sprite_larger_than_tensorboard_shows() -> None:
    class LargeImages(torch.utils.data.Dataset):  # 100 thumbnails of 820 px: a 8200 px sprite
        def __len__(self) -> int:
            return 100

        def __getitem__(self, index: int):
            return torch.zeros(1, 820, 820), 0

    trainer = type("Trainer", (), {"val_dataloaders": torch.utils.data.DataLoader(LargeImages())})()
    with pytest.raises(
        pl.utilities.exceptions.MisconfigurationException, match="8200x8200 px sprite.*at most 8192x8192"
    ):
        callbacks.EmbeddingProjector(num_images=100)._draw_sample(trainer)


def test_projector_names_a_missing_layer(data_dir: Path) -> None:
    with pytest.raises(
        pl.utilities.exceptions.MisconfigurationException, match="no layer 'net.fc9'; the model has net, net.conv1"
    ):
        fit(data_dir, pl.loggers.TensorBoardLogger("tb"), [callbacks.EmbeddingProjector(layer="net.fc9")], epochs=1)


def test_cli_with_projector_larger_than_validation_set_embeds_all(tmp_path: Path, fmnist) -> None:
    with pytest.warns(UserWarning, match="num_images=1000 but the validation set holds 128 images; embedding all"):
        assert fmnist("fit", "--trainer.max_epochs", "1") == 0
    (run,) = run_dirs()
    (tensors,) = run.glob("*/net.fc1/tensors.tsv")
    assert len(tensors.read_text().splitlines()) == 128
