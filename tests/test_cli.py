"""The nnx command, run as a subprocess: its commands, outputs and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from backends.numpy_backend import COMPILED

pytest.importorskip("safetensors", reason="model files need safetensors")

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNX_BACKEND": "numpy"}
    return subprocess.run(
        [sys.executable, "-m", "nnx", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "digits.safetensors"
    result = run("train", "--epochs", "8", "--out", str(path))
    assert result.returncode == 0, result.stderr
    return path


def test_train_on_the_default_digits_prints_epochs_and_the_test_accuracy(model_path):
    result = run("train", "--epochs", "3", "--hidden", "32")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("epoch ") == 3 and "epoch 3/3  loss" in result.stdout
    accuracy = float(result.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.85


def test_clip_norm_reaches_the_optimizer(tmp_path):
    result = run("train", "--epochs", "1", "--clip-norm", "0.5", "--out", str(tmp_path / "m.safetensors"))
    assert result.returncode == 0, result.stderr
    assert "clip_norm=0.5" in result.stdout
    assert nnx.load(tmp_path / "m.safetensors", backend="numpy").training_info["settings"]["clip_norm"] == 0.5


def test_quiet_prints_only_the_result():
    result = run("train", "--epochs", "2", "--quiet")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("test loss") and result.stdout.count("\n") == 1


def test_evaluate_prints_loss_accuracy_and_a_per_class_table(model_path):
    result = run("evaluate", str(model_path), "--dataset", "digits")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("loss ") and "accuracy 0.9" in lines[0]
    assert lines[1].split() == ["class", "samples", "precision", "recall"]
    assert len(lines) == 12 and sum(int(line.split()[1]) for line in lines[2:]) == 359


def test_predict_reads_an_npy_file_and_writes_csv(model_path, tmp_path):
    _, (xt, yt) = nnx.datasets.load_digits()
    np.save(tmp_path / "x.npy", xt[:20].reshape(20, 8, 8))
    result = run("predict", str(model_path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "input,class,probability" and len(rows) == 21
    classes = np.array([int(r.split(",")[1]) for r in rows[1:]])
    assert (classes == yt[:20]).mean() >= 0.8
    assert all(0 < float(r.split(",")[2]) <= 1 for r in rows[1:])
    every = run("predict", str(model_path), str(tmp_path / "x.npy"), "--probabilities")
    rows = every.stdout.splitlines()
    assert rows[0] == "input,class,probability," + ",".join(f"p{k}" for k in range(10))
    values = np.array([[float(v) for v in r.split(",")[3:]] for r in rows[1:]])
    np.testing.assert_allclose(values.sum(axis=1), 1, atol=1e-4)
    np.testing.assert_array_equal(values.argmax(axis=1), classes)


def test_predict_reads_a_folder_of_png_images(model_path, tmp_path):
    image = pytest.importorskip("PIL.Image")
    _, (xt, _) = nnx.datasets.load_digits()
    for i in range(3):
        image.fromarray((xt[i].reshape(8, 8) * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
    result = run("predict", str(model_path), str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("0.png,")
    expected = nnx.load(model_path, backend="numpy").predict_classes(xt[:3])
    got = [int(line.split(",")[1]) for line in result.stdout.splitlines()[1:]]
    assert got == expected.tolist()


def test_info_lists_versions_backends_blas_and_cpu_kernels():
    result = run("info")
    assert result.returncode == 0, result.stderr
    assert '"nnx": "0.1.0"' in result.stdout and '"backends": [' in result.stdout and '"blas"' in result.stdout
    info = json.loads(result.stdout)
    library = info["blas"][0]["filepath"].rsplit("/", 1)[-1]  # NumPy's BLAS, found by threadpoolctl
    expected = "NumPy only" if COMPILED is None else f"compiled; SGD update as one gemm of {library}"
    assert info["cpu_kernels"].startswith(expected)
    assert any(blas["filepath"].endswith(".so") and blas["internal_api"] for blas in info["blas"])


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--epochs", "x"],
        ["bogus"],
        ["train", "--backend", "tpu"],
        [],
        ["train", "--hidden", "a,b"],
        ["train", "--resume"],
        ["train", "--dataset", "no-such-set"],
    ],
)
def test_bad_usage_exits_2_with_a_message(args):
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage: nnx" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "missing.safetensors"], "No such file or directory"),
        (["train", "--epochs", "0"], "epochs must be an integer >= 1; got 0"),
        (["train", "--lr", "-1"], "lr must be a finite number > 0; got -1.0"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist not found: looked for"),
    ],
)
def test_runtime_errors_exit_1_with_one_line_and_no_traceback(args, message):
    result = run(*args)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("nnx: error:") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run("evaluate", "missing.safetensors", "--debug")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_a_corrupt_model_file_exits_1_naming_it(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x80\x04\x95 definitely a pickle")
    result = run("evaluate", str(bad))
    assert result.returncode == 1 and str(bad) in result.stderr and "not an nnx model file" in result.stderr


def test_plot_writes_the_learning_curves_and_the_confusion_matrix(tmp_path):
    pytest.importorskip("matplotlib")
    result = run("train", "--epochs", "2", "--quiet", "--plot", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in ("loss.png", "accuracy.png", "confusion.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_continues_from_the_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    common = ["train", "--hidden", "32", "--dropout", "0.1", "--optimizer", "adam", "--lr", "0.003", "--quiet"]
    full = run(*common, "--epochs", "4", "--out", str(tmp_path / "full.safetensors"))
    first = run(*common, "--epochs", "2", "--checkpoint-dir", str(tmp_path / "ck"))
    resumed = run(
        *common,
        "--epochs",
        "4",
        "--checkpoint-dir",
        str(tmp_path / "ck"),
        "--resume",
        "--out",
        str(tmp_path / "resumed.safetensors"),
    )
    for result in (full, first, resumed):
        assert result.returncode == 0, result.stderr
    a = nnx.load(tmp_path / "full.safetensors", backend="numpy").get_weights()
    b = nnx.load(tmp_path / "resumed.safetensors", backend="numpy").get_weights()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert full.stdout.splitlines()[-1].split("(")[0] == resumed.stdout.splitlines()[-1].split("(")[0]
    history = nnx.load(tmp_path / "resumed.safetensors", backend="numpy").training_info["history"]
    assert history["epoch"] == [0, 1, 2, 3]


def test_train_reads_a_folder_of_idx_files_or_an_npz(tmp_path):
    from tests.test_datasets import write_idx_dataset

    rng = np.random.default_rng(0)
    write_idx_dataset(tmp_path / "idx", rng, n_train=64, n_test=16)
    result = run("train", "--dataset", str(tmp_path / "idx"), "--epochs", "1", "--hidden", "16", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("test loss")
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.random((40, 5)),
        y_train=rng.integers(0, 3, 40),
        x_test=rng.random((10, 5)),
        y_test=rng.integers(0, 3, 10),
    )
    result = run("train", "--dataset", str(tmp_path / "d.npz"), "--epochs", "2", "--hidden", "8", "--quiet")
    assert result.returncode == 0, result.stderr


def test_resume_from_a_plain_model_file_is_refused_clearly(tmp_path, model_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.safetensors").write_bytes(model_path.read_bytes())
    result = run("train", "--checkpoint-dir", str(tmp_path / "ck"), "--resume")
    assert result.returncode == 1 and "not a checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_exits_130_and_leaves_a_checkpoint_that_resumes(tmp_path):
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNX_BACKEND": "numpy"}
    checkpoint = tmp_path / "ck" / "checkpoint.safetensors"
    common = ["train", "--hidden", "32", "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]
    process = subprocess.Popen(
        [sys.executable, "-m", "nnx", *common, "--epochs", "5000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # a few more epochs
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip() == "nnx: interrupted"
    saved = nnx.load(checkpoint, backend="numpy").training_info
    assert saved["epoch"] >= 0 and len(saved["history"]["epoch"]) == saved["epoch"] + 1
    resumed = run(*common, "--epochs", str(saved["epoch"] + 3), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert nnx.load(checkpoint, backend="numpy").training_info["epoch"] == saved["epoch"] + 2
