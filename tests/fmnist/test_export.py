"""``python -m fmnist export``: a checkpoint written as ONNX or TorchScript, proven equal, served without Lightning.

What a user sees: the files in the run folder and nothing else, the printed proof, the JSON, exit
statuses and lines; the exported files loaded in fresh processes that never import Lightning (nor torch,
for ONNX), answering as the checkpoint does on the test split and on pictures, as ``predict`` does.
"""

import contextlib
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist import CLASS_NAMES, FashionMNISTClassifier, idx, pictures
from fmnist.data import normalize
from fmnist.main import main
from tests.helpers import QUIET, REAL_DATA, REPO, fit_in, write_dataset
from tools import classify

CLASSIFY = REPO / "tools" / "classify.py"
#: A fresh process that loads an exported model as its users would, runs it on ``images.npy`` at three
#: batch sizes, and checks that neither Lightning nor fmnist (nor, for ONNX, torch) was imported.
SERVE = """
import sys
import numpy as np
model, images, out = sys.argv[1:]
x = np.load(images)
if model.endswith(".onnx"):
    import onnxruntime
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    answers = [session.run(["logits", "probabilities"], {"images": x[:n]}) for n in (1, 7, len(x))]
    assert "torch" not in sys.modules, "onnxruntime alone"
else:
    import torch
    module = torch.jit.load(model)
    with torch.inference_mode():
        answers = [[t.numpy() for t in module(torch.from_numpy(x[:n]))] for n in (1, 7, len(x))]
imported = sorted(name for name in sys.modules if name.split(".")[0] in ("lightning", "pytorch_lightning", "fmnist"))
assert not imported, imported
np.savez(out, *[array for answer in answers for array in answer])
"""
#: What classify.py's process may not import, checked after it ran (runpy keeps its modules).
CLASSIFY_ALONE = """
import runpy, sys
sys.argv = ["classify.py", *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
imported = sorted(name for name in sys.modules if name.split(".")[0] in ("lightning", "fmnist"))
assert not imported, imported
assert sys.argv[1].endswith(".pt") or "torch" not in sys.modules, "ONNX: no torch"
"""
PROOF = re.compile(
    r"^proof on the (\d+) test images of (\S+): accuracy ([\d.]+) exported, ([\d.]+) checkpoint; (\d+) predicted"
    r" classes differ; largest difference: logits (\S+), probabilities (\S+) \(tolerance 1e-04\)$",
    re.MULTILINE,
)


def export_in(root: Path, *args: str) -> tuple[int, str, str]:
    """``python -m fmnist export ARGS`` in this process, from ``root``: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["fmnist"]
    try:
        with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(["export", *args, *QUIET])
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def copy_run(checkpoint: Path, root: Path) -> Path:
    """The run folder of ``checkpoint`` (``<runs>/<name>/<version>/checkpoints/x.ckpt``) copied under ``root/runs``."""
    run = checkpoint.parents[1]
    copy = root / "runs" / run.parent.name / run.name
    shutil.copytree(run, copy)
    return copy


def files_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def garments(folder: Path, seed: int = 0) -> Path:
    """Pictures a user might have: sizes up and down from 28, light and dark backgrounds, JPEG, colour, RGBA."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i, (height, width) in enumerate([(28, 28), (140, 100), (20, 13), (300, 90), (64, 200), (57, 57)]):
        image = np.full((height, width), 235 if i % 2 else 12, np.uint8)  # light or dark background
        top, left = height // 6, width // 5
        shape = rng.integers(40, 200, (height - 2 * top, width - 2 * left)).astype(np.uint8)
        image[top : height - top, left : width - left] = shape
        Image.fromarray(image).save(folder / f"{i}_gray.png")
        Image.fromarray(np.stack([image, image // 2, image // 3], -1)).save(folder / f"{i}_colour.jpg", quality=85)
    rgba = np.zeros((50, 40, 4), np.uint8)
    rgba[10:40, 8:32] = (90, 60, 30, 255)  # a brown garment on transparency, which becomes white
    Image.fromarray(rgba).save(folder / "7_transparent.png")
    (folder / "8_notes.txt").write_text("not a picture")
    return folder


def predicted_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def same_predictions(served: list[dict[str, str]], predicted: list[dict[str, str]]) -> None:
    """classify.py's rows against predict's: same files, same classes, confidences to their last printed digit."""
    assert [row["file"] for row in served] == [row["file"] for row in predicted]
    assert [row["class_name"] for row in served] == [row["class_name"] for row in predicted]
    assert [row["class_index"] for row in served] == [row["class_index"] for row in predicted]
    for ours, theirs in zip(served, predicted):
        assert float(ours["confidence"]) == pytest.approx(float(theirs["confidence"]), abs=1.5e-4), ours["file"]


def classify_alone(model: Path, pictures_path: Path, cwd: Path) -> subprocess.CompletedProcess:
    """tools/classify.py in a fresh process, checked to have imported neither Lightning nor fmnist."""
    code = CLASSIFY_ALONE.format(script=str(CLASSIFY))
    return subprocess.run(
        [sys.executable, "-c", code, str(model), str(pictures_path)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def predict_rows(fmnist: Callable[..., int], checkpoint: Path, pictures_path: Path, *args: str) -> list[dict]:
    assert fmnist("predict", "--ckpt_path", str(checkpoint), "--data.predict_path", str(pictures_path), *args) == 0
    with open(checkpoint.parents[1] / "predictions.csv") as file:
        return list(csv.DictReader(file))


# --- ONNX of a real checkpoint, shared by the fast tests ----------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_export(real_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``export --ckpt_path last`` of a copy of the session's real run: the run folder and what was printed."""
    root = tmp_path_factory.mktemp("onnx")
    run = copy_run(real_checkpoint, root)
    data = real_checkpoint.parents[4] / "data"
    code, out, err = export_in(root, "--ckpt_path", "last", "--data.data_dir", str(data), "--data.download", "false")
    assert code == 0, err
    return run, out


def test_onnx_export_is_written_into_the_run_proven_and_described(onnx_export: tuple[Path, str]) -> None:
    run, out = onnx_export
    card_file = run / "export" / "last.onnx.json"
    assert files_in(run / "export") == ["last.onnx", "last.onnx.json"], "no temporary file is left"
    lines = out.strip().splitlines()
    assert lines[0] == f"export: runs/{run.parent.name}/{run.name}/checkpoints/last.ckpt -> runs/{run.parent.name}/{run.name}/export/last.onnx (onnx; no tta: the checkpoint has none)"  # fmt: skip
    assert lines[-1] == f"wrote runs/{run.parent.name}/{run.name}/export/last.onnx and last.onnx.json"
    (proof,) = PROOF.findall(out)
    images, split, accuracy, checkpoint_accuracy, differing, logits, probabilities = proof
    assert images == "128" and split.endswith("t10k-images-idx3-ubyte") and differing == "0"
    assert accuracy == checkpoint_accuracy and 0 < float(logits) <= 1e-4 and float(probabilities) <= 1e-4

    card = json.loads(card_file.read_text())
    assert card["format"] == "onnx" and card["file"] == "last.onnx" and card["class_names"] == list(CLASS_NAMES)
    assert card["input"] == {
        "name": "images", "shape": ["batch", 1, 28, 28], "dtype": "float32", "range": [0.0, 1.0],
        "meaning": "grayscale pixel / 255; a light garment on black, as Fashion-MNIST's images are",
    }  # fmt: skip
    assert [output["name"] for output in card["outputs"]] == ["logits", "probabilities"]
    assert card["inside"]["tta"] == [] and "0.5" in card["inside"]["normalisation"]
    checkpoint = run / "checkpoints" / "last.ckpt"
    assert card["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (
        card["checkpoint"]["path"] == str(checkpoint.resolve()) and card["checkpoint"]["network"]["hidden_size"] == 128
    )
    assert card["test_accuracy"]["exported"] == pytest.approx(float(accuracy), abs=5e-5)
    assert card["test_accuracy"]["images"] == 128
    assert card["test_accuracy"]["logged_by_the_run"] is None, "the session's run was fit without its test"
    assert card["proof"]["predicted_classes_differing"] == 0 and card["proof"]["tolerance"] == 1e-4
    assert card["versions"]["torch"] == torch.__version__.split("+")[0] and card["versions"]["onnxruntime"]


def test_classify_serves_the_onnx_file_as_predict_serves_the_checkpoint(
    onnx_export: tuple[Path, str], fmnist: Callable[..., int], tmp_path: Path
) -> None:
    run, _ = onnx_export
    photos = garments(tmp_path / "photos")
    served = classify_alone(run / "export" / "last.onnx", photos, tmp_path)
    assert served.returncode == 0, served.stderr
    assert (
        served.stderr.strip()
        == f"classify: left out 1 files that are not pictures, are broken or are too thin: {photos}/8_notes.txt"
    )
    rows = predicted_csv(served.stdout)
    assert len(rows) == 13 and list(rows[0]) == ["index", "file", "class_index", "class_name", "confidence"]
    with pytest.warns(UserWarning, match="left out 1 files"):
        same_predictions(rows, predict_rows(fmnist, run / "checkpoints" / "last.ckpt", photos))


def test_classify_prepares_pictures_to_the_pixels_fmnist_predict_gives_the_network(tmp_path: Path) -> None:
    """tools/classify.py's numpy preparation against fmnist.pictures' torchvision one: equal, bit for bit."""
    photos = garments(tmp_path / "photos", seed=1)
    rng = np.random.default_rng(2)
    for i in range(40):  # and noise of every size between 3 and 400 pixels a side, up and down from 28
        height, width = rng.integers(3, 400, 2)
        if max(height, width) <= 20 * min(height, width):  # thinner: fmnist's resize fails on a 0-pixel edge
            Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(photos / f"noise_{i}.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo stored sideways
    Image.open(photos / "1_gray.png").save(photos / "9_rotated.jpg", exif=exif)
    compared = 0
    for file in classify.find(str(photos)):
        if file.suffix == ".txt":
            continue
        ours = torch.from_numpy(classify.prepare(classify.read(file)))
        assert ours.shape == (1, 28, 28) and ours.dtype == torch.float32
        theirs = pictures.prepare(pictures.read(file))
        assert torch.equal((ours - 0.5) / 0.5, theirs), file.name  # the exported model normalises inside
        compared += 1
    assert compared >= 50


def test_torchscript_export_says_torchscript_is_deprecated_and_keeps_only_its_files(
    real_checkpoint: Path, tmp_path: Path
) -> None:
    run = copy_run(real_checkpoint, tmp_path)
    data = real_checkpoint.parents[4] / "data"
    best = str(next((run / "checkpoints").glob("best-*.ckpt")))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        code, out, err = export_in(
            tmp_path, "--ckpt_path", best, "--format", "torchscript", "--data.data_dir", str(data)
        )
    assert code == 0, err
    assert not [w for w in warned if "deprecated" in str(w.message)], "the command says it once, in its own words"
    assert "note: PyTorch deprecates TorchScript (torch.jit) in favour of torch.export" in out
    (proof,) = PROOF.findall(out)
    assert proof[4] == "0" and proof[2] == proof[3]
    name = Path(best).stem
    assert files_in(run / "export") == [f"{name}.pt", f"{name}.pt.json"]
    card = json.loads((run / "export" / f"{name}.pt.json").read_text())
    assert card["format"] == "torchscript" and card["loaded_by"] == "torch.jit.load"


@pytest.mark.parametrize(
    ("model", "pictures_path", "line"),
    [
        ("gone.onnx", "photos", "gone.onnx: no such file (python -m fmnist export writes the model and its .json)"),
        (
            "bare.onnx",
            "photos",
            "bare.onnx.json: no such file (python -m fmnist export writes the model and its .json)",
        ),
        ("model.onnx", "nothing", "nothing: no such file or folder"),
        ("model.onnx", "empty", "empty holds no files"),
        ("model.onnx", "photos/*.gif", "photos/*.gif matches no files"),
        ("model.onnx", "photos/8_notes.txt", "photos/8_notes.txt: none of its 1 files is a picture Pillow can read"),
    ],
)
def test_classify_says_what_it_cannot_use_in_one_line(
    tmp_path: Path, capsys, model: str, pictures_path: str, line: str
) -> None:
    garments(tmp_path / "photos")
    (tmp_path / "empty").mkdir()
    for name in ("bare.onnx", "model.onnx", "model.onnx.json"):
        (tmp_path / name).write_text("{}")  # never loaded: each mistake is found before the model is
    with pytest.raises(SystemExit) as ended:
        classify.main([model, pictures_path])
    assert ended.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"classify: error: {line}\n" and captured.out == ""


# --- what export refuses ------------------------------------------------------------------------------------------


def _damaged(checkpoint: dict, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    path.write_bytes(buffer.getvalue()[:5000])  # cut short, as by a full disk or an interrupted copy


def _optimizer_is_a_command(checkpoint: dict, path: Path) -> None:
    checkpoint["hyper_parameters"]["optimizer"] = {"class_path": "os.system", "init_args": {"command": "touch called"}}
    torch.save(checkpoint, path)


def _schedule_is_foreign_code(checkpoint: dict, path: Path) -> None:
    schedule = {"class_path": "torch.optim.lr_scheduler.LambdaLR", "init_args": {"lr_lambda": "tests.fmnist.hostile.leave_marker"}}  # fmt: skip
    checkpoint["hyper_parameters"]["scheduler"] = schedule
    torch.save(checkpoint, path)


@pytest.mark.parametrize("make", [_damaged, _optimizer_is_a_command, _schedule_is_foreign_code])
def test_a_damaged_or_hostile_checkpoint_gets_the_refusal_test_gives_it(
    fmnist: Callable[..., int], real_checkpoint: Path, tmp_path: Path, capsys, monkeypatch, make: Callable
) -> None:
    monkeypatch.setenv("FMNIST_HOSTILE_MARKER", str(tmp_path / "marker"))
    run = copy_run(real_checkpoint, tmp_path / "elsewhere")
    bad = run / "checkpoints" / "bad.ckpt"
    make(torch.load(real_checkpoint, map_location="cpu", weights_only=True), bad)
    before = files_in(tmp_path)
    refusals = []
    for command in ("test", "export"):
        assert fmnist(command, "--ckpt_path", str(bad)) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        refusals.append([line for line in err.splitlines() if line])
    test, export = refusals
    assert export == test and len(export) == 1 and export[0].startswith(f"fmnist: error: --ckpt_path {bad}")
    assert files_in(tmp_path) == before, "nothing written: no export folder, no marker, no run"


SEE_HELP = r" \(see python -m fmnist export --help\)"


@pytest.mark.parametrize(
    ("args", "line"),
    [  # argparse quotes the choices from Python 3.12.8 on: either way
        (["--format", "keras"], r"export: argument --format: invalid choice: 'keras' \(choose from '?onnx'?, '?torchscript'?\)" + SEE_HELP),
        (["--tolerance", "0"], r"export: argument --tolerance: invalid positive number value: '0'" + SEE_HELP),
        (["--format", "onnx"], r"export: the following arguments are required: --ckpt_path" + SEE_HELP),
        (["--ckpt_path", "best"], r"--ckpt_path best: no checkpoint matches runs/fashion_mnist_lr_0\.001_bs_64/\*/checkpoints/best-\*\.ckpt"),
        (["--ckpt_path", "gone.ckpt"], r"--ckpt_path gone\.ckpt: no such file"),
        (["--ckpt_path", "x.ckpt", "--output", "."], r"export: argument --output: \. is a folder; name the model file" + SEE_HELP),
    ],
)  # fmt: skip
def test_a_mistake_is_one_line(fmnist: Callable[..., int], capsys, args: list[str], line: str) -> None:
    Path("x.ckpt").write_bytes(b"")
    assert fmnist("export", *args) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(f"fmnist: error: {line}\n", err), err
    assert not Path("runs").exists()


def test_help_states_the_tolerance_and_the_formats(capsys) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["export", "--help"])
    assert ended.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--format {onnx,torchscript}" in out and "(default: 0.0001)" in out
    assert "leaves it out" in out and "writes nothing" in out and "tools/classify.py" in out


# --- slow: the proof failing, both networks in both formats, the real data ----------------------------------------


@pytest.mark.slow  # an ONNX export of its own (seconds)
def test_a_model_outside_the_tolerance_exits_1_with_one_line_and_writes_nothing(
    real_checkpoint: Path, tmp_path: Path
) -> None:
    run = copy_run(real_checkpoint, tmp_path)
    data = real_checkpoint.parents[4] / "data"
    before = files_in(tmp_path)
    code, out, err = export_in(tmp_path, "--ckpt_path", "last", "--tolerance", "1e-12", "--data.data_dir", str(data))
    assert code == 1
    (line,) = err.strip().splitlines()
    assert re.fullmatch(
        r"fmnist: error: export: the onnx file does not answer as its checkpoint: 0 of 128 predicted classes differ,"
        r" the largest difference of (logits|probabilities) is \S+ \(tolerance 1e-12\); nothing was written",
        line,
    ), line
    assert "proof on the 128 test images" in out
    assert not (run / "export").exists(), "the folder made for the file is gone with it"
    assert files_in(tmp_path) == before, "and nothing else is left"


@pytest.fixture(scope="module")
def tuned_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of configs/tuned.yaml cut to one epoch of synthetic data: three blocks, batch norm, TTA [shift]."""
    root = tmp_path_factory.mktemp("tuned")
    data = write_dataset(root / "data")
    options = ["--data.data_dir", str(data), "--data.val_size", "128", "--data.download", "false"]
    tuned = ["--config", str(REPO / "configs" / "tuned.yaml"), "--trainer.precision", "32-true"]
    (run,) = fit_in(root, *tuned, *options, "--trainer.max_epochs", "1", "--test_after_fit", "true")
    return run / "checkpoints" / "last.ckpt"


@pytest.mark.slow  # a tuned fit, four exports, fresh processes that import onnxruntime or torch
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("network", ["default", "tuned"])
def test_both_networks_in_both_formats_answer_as_the_checkpoint_without_lightning(
    request: pytest.FixtureRequest, fmnist: Callable[..., int], tmp_path: Path, network: str, fmt: str
) -> None:
    checkpoint = request.getfixturevalue("real_checkpoint" if network == "default" else "tuned_checkpoint")
    run = copy_run(checkpoint, tmp_path / "copy")
    data = checkpoint.parents[4] / "data"
    config = ["--config", str(REPO / "configs" / "tuned.yaml")] if network == "tuned" else []
    code, out, err = export_in(tmp_path / "copy", *config, "--ckpt_path", "last", "--format", fmt, "--data.data_dir", str(data))  # fmt: skip
    assert code == 0, err
    model = run / "export" / f"last{'.onnx' if fmt == 'onnx' else '.pt'}"
    card = json.loads(Path(f"{model}.json").read_text())
    assert card["inside"]["tta"] == (["shift"] if network == "tuned" else [])
    if network == "tuned":
        assert "(onnx; tta: shift)" in out or "(torchscript; tta: shift)" in out
        assert card["checkpoint"]["network"]["conv3_channels"] == 128 and card["checkpoint"]["network"]["batch_norm"]
        assert set(card["test_accuracy"]["logged_by_the_run"]) == {"Accuracy/test", "Accuracy/test_tta"}

    images, _ = idx.load_split(idx.locate(data)["test"])
    np.save(tmp_path / "images.npy", images[:32].unsqueeze(1).float().div(255).numpy())
    served = subprocess.run(
        [sys.executable, "-c", SERVE, str(model), str(tmp_path / "images.npy"), str(tmp_path / "answers.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert served.returncode == 0, served.stderr
    saved = np.load(tmp_path / "answers.npz")
    answers = [saved[f"arr_{i}"] for i in range(6)]
    classifier = FashionMNISTClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    with torch.inference_mode():
        expected = [t.numpy() for t in classifier.tta_probabilities(normalize(images[:32]))]
    for batch, (logits, probabilities) in zip((1, 7, 32), zip(answers[::2], answers[1::2])):
        assert logits.shape == probabilities.shape == (batch, 10), "any batch size"
        np.testing.assert_allclose(logits, expected[0][:batch], atol=1e-4)
        np.testing.assert_allclose(probabilities, expected[1][:batch], atol=1e-5)
        assert (probabilities.argmax(1) == expected[1][:batch].argmax(1)).all()

    photos = garments(tmp_path / "photos")
    classified = classify_alone(model, photos, tmp_path)
    assert classified.returncode == 0, classified.stderr
    with pytest.warns(UserWarning, match="left out 1 files"):
        same_predictions(
            predicted_csv(classified.stdout), predict_rows(fmnist, run / "checkpoints" / "last.ckpt", photos)
        )


@pytest.mark.slow  # real Fashion-MNIST: a 300-batch fit, the proof on the 10k test images
@pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"{REAL_DATA} missing: apt-get install dataset-fashion-mnist")
def test_on_real_data_the_proof_runs_on_the_10k_test_images_and_pictures_match_predict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gzip

    monkeypatch.setattr(idx, "SYSTEM_DATA_DIR", REAL_DATA)
    common = ["--data.data_dir", str(tmp_path / "empty"), "--data.download", "false"]
    (run,) = fit_in(tmp_path, *common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "300",
                    "--trainer.limit_val_batches", "10", "--test_after_fit", "false")  # fmt: skip
    views = ["--model.tta", "[shift, flip]"]  # both views inside the file, though the run trained without
    code, out, err = export_in(tmp_path, "--ckpt_path", "last", "--format", "onnx", *views, *common)
    assert code == 0, err
    assert "(onnx; tta: shift, flip (--model.tta; the checkpoint's: none))" in out
    (proof,) = PROOF.findall(out)
    assert proof[0] == "10000" and proof[1] == str(REAL_DATA / "t10k-images-idx3-ubyte.gz")
    assert proof[2] == proof[3] and float(proof[2]) > 0.75 and proof[4] == "0"

    # 60 test images as pictures, four ways a user could have them (as tests/e2e/test_real_data.py makes them)
    raw = gzip.decompress((REAL_DATA / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw[16:], np.uint8).reshape(-1, 28, 28)[:60]
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(images):
        way = i % 4
        if way == 0:
            Image.fromarray(image).resize((112, 112), Image.BICUBIC).save(photos / f"{i:02d}_upscaled.jpg")
        elif way == 1:
            Image.fromarray(255 - image).save(photos / f"{i:02d}_light.png")
        elif way == 2:
            Image.fromarray((image[..., None] * np.array([1.0, 0.55, 0.25])).astype(np.uint8)).save(photos / f"{i:02d}_colour.png")  # fmt: skip
        else:
            Image.fromarray(np.pad(image, ((14, 14), (0, 0)))).save(photos / f"{i:02d}_wide.png")
    classified = classify_alone(run / "export" / "last.onnx", photos, tmp_path)
    assert classified.returncode == 0, classified.stderr
    rows = predicted_csv(classified.stdout)
    assert len({row["class_name"] for row in rows}) >= 5, "real garments: many classes"
    main(["predict", *common, *QUIET, *views, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
          "--data.predict_path", str(photos)])  # fmt: skip
    with open(run / "predictions.csv") as file:
        same_predictions(rows, list(csv.DictReader(file)))


@pytest.mark.slow  # exports of both networks and a few hundred timed calls
def test_the_latency_benchmark_prints_its_cpu_and_a_row_per_network_and_runtime() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.export_latency", "--repeats", "6", "--batches", "2", "--warmup", "2",
         "--rounds", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "avx512f: " in lines[0] and "threads" in lines[1]
    rows = [line.split(" | ") for line in lines if line.startswith("| default") or line.startswith("| tuned")]
    assert [(row[0], row[1]) for row in rows] == [
        (f"| {network}", runtime)
        for network in ("default (TTA: none)", "tuned (TTA: shift)")
        for runtime in ("eager PyTorch", "TorchScript", "ONNX Runtime")
    ]
    for row in rows:
        median, p99, per_second, difference = float(row[2]), float(row[3]), float(row[4].replace(",", "")), row[5]
        assert 0 < median <= p99 and per_second > 0
        assert float(difference.rstrip(" |")) <= 1e-5, "the three runtimes answer alike"
