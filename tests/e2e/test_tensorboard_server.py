"""A real ``tensorboard`` server on 127.0.0.1, asked through its HTTP data API what users would see."""

import io
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from fmnist import CLASS_NAMES
from tests.helpers import REPO, fit_in, write_dataset
from tools.tensorboard_server import TensorBoardServer

RUN = "fashion_mnist_lr_0.001_bs_32/version_0"
EPOCHS = 2
VAL_IMAGES = 160


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TensorBoardServer]:
    """A default fit with the profiler on, and TensorBoard serving its runs folder."""
    root = tmp_path_factory.mktemp("served")
    data = write_dataset(root / "data", train=640, test=200)
    fit_in(root, "--config", str(REPO / "configs/profile.yaml"), "--data.data_dir", str(data),
           "--data.val_size", str(VAL_IMAGES), "--data.batch_size", "32", "--trainer.max_epochs", str(EPOCHS))  # fmt: skip
    with TensorBoardServer(root / "runs", root / "tensorboard.log", runs=[RUN]) as tensorboard:
        yield tensorboard


def test_exactly_one_run(server: TensorBoardServer) -> None:
    assert server.json("/data/runs") == [RUN], "no Losses_train / Losses_val runs, no profiler run"


def test_scalars_one_point_per_epoch(server: TensorBoardServer) -> None:
    tags = server.json("/data/plugin/scalars/tags")[RUN]
    for tag in ("Loss/train", "Accuracy/train", "Loss/val", "Accuracy/val", "Accuracy/val_best"):
        points = server.json("/data/plugin/scalars/scalars", run=RUN, tag=tag)
        assert tag in tags and len(points) == EPOCHS, tag
        assert all(math.isfinite(value) for _, _, value in points)


def test_losses_chart(server: TensorBoardServer) -> None:
    layout = server.json("/data/plugin/custom_scalars/layout")
    charts = {
        chart["title"]: chart["multiline"]["tag"] for category in layout["category"] for chart in category["chart"]
    }
    assert charts == {"Losses": ["^Loss/train$", "^Loss/val$"]}


def test_images_and_their_png_bytes(server: TensorBoardServer) -> None:
    tags = server.json("/data/plugin/images/tags")[RUN]
    assert {"Sample Images", "Misclassified Images", "Confusion Matrix"} <= set(tags)
    entries = server.json("/data/plugin/images/images", run=RUN, tag="Confusion Matrix", sample="0")
    assert len(entries) == EPOCHS
    png = server.get("/data/plugin/images/individualImage?" + entries[-1]["query"])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 300 and np.asarray(image.convert("L")).std() > 10


def test_histograms_and_distributions(server: TensorBoardServer) -> None:
    tags = server.json("/data/plugin/histograms/tags")[RUN]
    assert {"weights/net.conv1.weight", "grads/net.conv1.weight", "weights/net.fc2.bias", "grads/net.fc2.bias"} <= set(
        tags
    )
    histograms = server.json("/data/plugin/histograms/histograms", run=RUN, tag="grads/net.conv1.weight")
    assert len(histograms) == EPOCHS and histograms[0][2], "buckets"
    distributions = server.json("/data/plugin/distributions/distributions", run=RUN, tag="weights/net.conv1.weight")
    assert len(distributions) == EPOCHS and len(distributions[0][2]) == 9, "nine percentile bands"


def test_graph(server: TensorBoardServer) -> None:
    info = server.json("/data/plugin/graphs/info")
    assert info[RUN]["run_graph"]
    graph = server.get("/data/plugin/graphs/graph", run=RUN).decode()
    assert "conv1" in graph and "fc2" in graph


def test_projector(server: TensorBoardServer) -> None:
    assert server.json("/data/plugin/projector/runs") == [RUN]
    (embedding,) = server.json("/data/plugin/projector/info", run=RUN)["embeddings"]
    name = embedding["tensorName"]
    assert embedding["tensorShape"] == [VAL_IMAGES, 128]
    tensor = np.frombuffer(server.get("/data/plugin/projector/tensor", run=RUN, name=name), dtype=np.float32)
    assert tensor.size == VAL_IMAGES * 128
    header, *rows = server.get("/data/plugin/projector/metadata", run=RUN, name=name).decode().splitlines()
    assert header == "label\tpredicted" and len(rows) == VAL_IMAGES
    assert {row.split("\t")[0] for row in rows} <= set(CLASS_NAMES)
    sprite = Image.open(io.BytesIO(server.get("/data/plugin/projector/sprite_image", run=RUN, name=name)))
    assert sprite.size == (math.ceil(math.sqrt(VAL_IMAGES)) * 28,) * 2


def test_pr_curves_for_ten_classes(server: TensorBoardServer) -> None:
    tags = server.json("/data/plugin/pr_curves/tags")[RUN]
    assert set(tags) == {f"PR/{name}" for name in CLASS_NAMES}
    curve = server.json("/data/plugin/pr_curves/pr_curves", run=RUN, tag="PR/Trouser")[RUN]
    # TensorBoard drops the thresholds above the highest prediction, so at most the 127 written
    assert len(curve) == EPOCHS and 2 <= len(curve[-1]["precision"]) <= 127
    assert curve[-1]["recall"][0] == 1.0, "threshold 0: every Trouser found"


def test_hparams_experiment_with_metrics(server: TensorBoardServer) -> None:
    experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
    metrics = {info["name"]["tag"] for info in experiment["metricInfos"]}
    assert metrics == {"Accuracy/val_best", "Loss/val", "Accuracy/test"}
    hparams = {info["name"] for info in experiment["hparamInfos"]}
    assert {"lr", "batch_size", "optimizer", "val_size"} <= hparams
    groups = server.post(
        "/data/plugin/hparams/session_groups",
        {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
         "colParams": [], "startIndex": 0, "sliceSize": 10},
    )  # fmt: skip
    (group,) = groups["sessionGroups"]
    values = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
    assert 0 < values["Accuracy/val_best"] <= 1 and values["Loss/val"] > 0 and 0 < values["Accuracy/test"] <= 1


def test_profiler_text_summary(server: TensorBoardServer) -> None:
    tags = server.json("/data/plugin/text/tags")[RUN]
    assert "Profiler/fit/text_summary" in tags
    (entry,) = server.json("/data/plugin/text/text", run=RUN, tag="Profiler/fit/text_summary")
    assert "aten::" in entry["text"] and "<code>" in entry["text"], "the table as a Markdown code block"


def test_profiler_plugin_lists_the_profiled_run(server: TensorBoardServer) -> None:
    pytest.importorskip("torch_tb_profiler", reason="the optional torch-tb-profiler plugin is not installed")
    deadline = time.monotonic() + 60
    runs = []
    while time.monotonic() < deadline and not runs:  # the plugin scans the logdir in the background
        runs = server.json("/data/plugin/pytorch_profiler/runs")["runs"]
        time.sleep(1)
    assert runs == [RUN]
    workers = server.json("/data/plugin/pytorch_profiler/workers", run=RUN, view="Overview")
    training = next(worker for worker in workers if worker.endswith("training_step"))
    (span,) = server.json("/data/plugin/pytorch_profiler/spans", run=RUN, worker=training)
    overview = server.json("/data/plugin/pytorch_profiler/overview", run=RUN, worker=training, span=span)
    assert len(overview["steps"]["rows"]) >= 3, "the profiled training steps, parsed by the plugin"
