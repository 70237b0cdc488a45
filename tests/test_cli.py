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
    assert rows[0] == "input,class,name,probability" and len(rows) == 21
    classes = np.array([int(r.split(",")[1]) for r in rows[1:]])
    assert (classes == yt[:20]).mean() >= 0.8
    assert all(r.split(",")[2] == r.split(",")[1] for r in rows[1:])  # the digits' names are their numbers
    assert all(0 < float(r.split(",")[3]) <= 1 for r in rows[1:])
    every = run("predict", str(model_path), str(tmp_path / "x.npy"), "--probabilities")
    rows = every.stdout.splitlines()
    assert rows[0] == "input,class,name,probability," + ",".join(f"p{k}" for k in range(10))
    values = np.array([[float(v) for v in r.split(",")[4:]] for r in rows[1:]])
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
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "the data folder /nonexistent does not exist"),
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


def test_the_plots_have_titles_and_the_curves_show_the_test_result():
    pytest.importorskip("matplotlib")
    from nnx.plots import history_figure, require_matplotlib

    plt = require_matplotlib()
    history = nnx.History(
        epoch=[1, 2], loss=[0.9, 0.5], accuracy=[0.7, 0.8], val_loss=[1.0, 0.6], val_accuracy=[0.6, 0.75]
    )
    fig = history_figure(plt, history, "accuracy", {"loss": 0.55, "accuracy": 0.81}, "fashion-mnist")
    ax = fig.axes[0]
    assert ax.get_title() == "accuracy per epoch: fashion-mnist"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "training",
        "validation",
        "test, final model: 0.8100",
    ]
    assert list(ax.lines[0].get_xdata()) == [1, 2]  # epochs as printed
    plt.close(fig)


def test_writing_into_a_missing_folder_names_the_folder_not_a_temporary_file(capsys, model_path, tmp_path):
    _, (xt, _) = nnx.datasets.load_digits()
    np.save(tmp_path / "x.npy", xt[:2])
    code, _, err = main_in_process(
        capsys, "predict", str(model_path), str(tmp_path / "x.npy"), "--out", str(tmp_path / "no" / "p.csv")
    )
    assert code == 1 and f"the folder {tmp_path / 'no'} does not exist" in err and ".tmp" not in err


def resume_matches_uninterrupted(tmp_path, common: list[str], epochs: int, first: int) -> tuple:
    """Train ``common`` for ``epochs`` in one run and, in another, for ``first`` epochs with a
    checkpoint, then --resume to ``epochs``; assert equal weights. Returns (full, resumed) results."""
    full = run(*common, "--epochs", str(epochs), "--out", str(tmp_path / "full.safetensors"))
    begun = run(*common, "--epochs", str(first), "--checkpoint-dir", str(tmp_path / "ck"))
    resumed = run(*common, "--epochs", str(epochs), "--checkpoint-dir", str(tmp_path / "ck"), "--resume",
                  "--out", str(tmp_path / "resumed.safetensors"))  # fmt: skip
    for result in (full, begun, resumed):
        assert result.returncode == 0, result.stderr
    a = nnx.load(tmp_path / "full.safetensors", backend="numpy").get_weights()
    b = nnx.load(tmp_path / "resumed.safetensors", backend="numpy").get_weights()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    return full, resumed


def test_resume_continues_from_the_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    common = ["train", "--hidden", "32", "--dropout", "0.1", "--optimizer", "adam", "--lr", "0.003", "--quiet"]
    full, resumed = resume_matches_uninterrupted(tmp_path, common, epochs=4, first=2)
    assert full.stdout.splitlines()[-1].split("(")[0] == resumed.stdout.splitlines()[-1].split("(")[0]
    history = nnx.load(tmp_path / "resumed.safetensors", backend="numpy").training_info["history"]
    assert history["epoch"] == [1, 2, 3, 4]  # numbered as printed


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


def test_ctrl_c_saves_the_last_complete_epoch_to_out_and_says_how_to_resume(tmp_path):
    """Item: an interrupted run keeps its work. The model of the last complete epoch goes to --out,
    marked interrupted; the checkpoint resumes."""
    import re
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNX_BACKEND": "numpy"}
    checkpoint, out = tmp_path / "ck" / "checkpoint.safetensors", tmp_path / "m.safetensors"
    common = ["train", "--hidden", "32", "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]
    process = subprocess.Popen(
        [sys.executable, "-m", "nnx", *common, "--epochs", "5000", "--out", str(out)],
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
    match = re.fullmatch(r"nnx: interrupted (in|after) epoch (\d+); saved the model of epoch (\d+) to (.*); "
                         r"to continue: nnx train --checkpoint-dir (.*) --resume --out (.*)\n", stderr)  # fmt: skip
    assert match, stderr
    reached, completed = int(match[2]), int(match[3])
    assert reached - completed == (match[1] == "in") and match[4] == match[6] == str(out)
    saved = nnx.load(checkpoint, backend="numpy")
    interrupted = nnx.load(out, backend="numpy")
    info = interrupted.training_info
    assert info["interrupted"] is True and info["epoch_reached"] == reached and info["epochs_completed"] == completed
    assert info["history"]["epoch"] == list(range(1, completed + 1))
    assert saved.training_info["epoch"] + 1 == completed  # the checkpoint of the same epoch: the same weights
    for name, w in saved.get_weights().items():
        np.testing.assert_array_equal(interrupted.get_weights()[name], w)
    resumed = run(*common, "--epochs", str(completed + 2), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert nnx.load(checkpoint, backend="numpy").training_info["epoch"] == completed + 1


def test_a_ctrl_c_that_python_can_only_print_is_left_to_the_one_line():
    """A Ctrl-C inside a weakref callback of the import system or a __del__ is "Exception ignored
    in ..." for Python; while the command runs it is noted and not printed. Other such errors go
    to the hook it replaced."""
    from nnx.ctrl_c import CtrlC

    class RaisesWhenCollected:
        def __init__(self, error: type[BaseException]) -> None:
            self.error = error

        def __del__(self) -> None:
            raise self.error

    printed: list[type[BaseException]] = []
    before = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: printed.append(unraisable.exc_type)
    ctrl_c = CtrlC()  # it keeps the hook it replaces
    sys.unraisablehook = ctrl_c.unraisable
    try:
        ctrl_c.received = True  # as the SIGINT handler notes it before raising
        RaisesWhenCollected(KeyboardInterrupt)  # collected at once
        RaisesWhenCollected(ValueError)
    finally:
        sys.unraisablehook = before
    assert printed == [ValueError]


def test_ctrl_c_at_any_moment_prints_one_line_and_exits_130(tmp_path):
    """From the entry point's first instruction on (while NumPy is imported, the data loaded, during
    training), Ctrl-C gives one line on stderr and exit code 130."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNX_BACKEND": "numpy"}
    command = [sys.executable, "-m", "nnx", "train", "--hidden", "16", "--epochs", "100000"]
    moments = [0.0, 0.3, 0.6, 1.0]  # seconds after NumPy's core library is mapped (inside main())
    processes = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"{i}.st")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(len(moments))
    ]
    for moment, process in zip(moments, processes, strict=True):
        # NumPy's core library mapped: mid-import, inside main(), whatever the machine's load
        start, maps = time.monotonic(), Path(f"/proc/{process.pid}/maps")
        while time.monotonic() < start + 30 and maps.exists() and "_multiarray_umath" not in maps.read_text():
            time.sleep(0.001)
        time.sleep(moment)
        process.send_signal(signal.SIGINT)
    try:
        for moment, process in zip(moments, processes, strict=True):
            _, stderr = process.communicate(timeout=30)
            assert process.returncode == 130, (moment, stderr)
            assert stderr.startswith("nnx: interrupted") and stderr.count("\n") == 1, (moment, stderr)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_ctrl_c_inside_exec_of_a_string_still_exits_130(tmp_path):
    """dataclasses and namedtuple exec() strings while a module is imported: a Ctrl-C there used to
    make CPython end the process by SIGINT (-2) after the one line, instead of exiting 130."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        "import os, signal, sys\n"
        "import nnx.cli\n"
        "def interrupted_in_exec(argv, ctrl_c):\n"
        "    exec('os.kill(os.getpid(), signal.SIGINT)\\nimport time\\ntime.sleep(30)')\n"
        "nnx.cli._main = interrupted_in_exec\n"
        "sys.exit(nnx.cli.main([]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    command = [sys.executable, "-m", "interrupted"]  # as `python -m nnx`: a script file exits another way
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr == "nnx: interrupted\n", (result.returncode, result.stderr)


def test_the_entry_point_imports_no_numpy_before_main_runs():
    """What runs before main() cannot answer Ctrl-C with one line: keep it to the standard library."""
    code = "import sys, nnx.cli; assert 'numpy' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert result.returncode == 0, result.stderr


def main_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``nnx ARGS`` run in this process (for what ends before training)."""
    from nnx.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors and --help
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dropout", "1"], "argument --dropout: must be a number in [0, 1); got '1'"),
        (["--hidden", "0"], "argument --hidden: must be comma-separated layer widths >= 1"),
        (
            ["--hidden", "64,,64"],
            "argument --hidden: must be comma-separated layer widths >= 1 like 256,256; got '64,,64'",
        ),
        (["--epochs", "0"], "argument --epochs: must be an integer >= 1; got '0'"),
        (["--batch-size", "-3"], "argument --batch-size: must be an integer >= 1"),
        (["--lr", "-1"], "argument --lr: must be a number > 0; got '-1'"),
        (["--lr", "nan"], "argument --lr: must be a finite number; got 'nan'"),
        (["--momentum", "1"], "argument --momentum: must be a number in [0, 1)"),
        (["--weight-decay", "-0.1"], "argument --weight-decay: must be a number >= 0"),
        (["--clip-norm", "0"], "argument --clip-norm: must be a number > 0"),
        (["--warmup", "1.5"], "argument --warmup: must be a number in [0, 1)"),
        (["--validation", "x"], "argument --validation: must be a number; got 'x'"),
        (["--seed", "-1"], "argument --seed: must be an integer >= 0"),
    ],
)
def test_bad_flag_values_are_usage_errors_that_name_the_flag(capsys, args, message):
    code, _, err = main_in_process(capsys, "train", *args)
    assert code == 2 and message in err and "usage: nnx train" in err, err


def test_a_data_dir_that_cannot_apply_is_a_usage_error(capsys):
    code, out, err = main_in_process(capsys, "train", "--dataset", "digits", "--data-dir", "/tmp/x")
    assert code == 2 and "--data-dir applies to --dataset fashion-mnist or mnist only" in err and not out
    for command in (["predict", "m.safetensors", "x.npy"], ["info"]):
        code, _, err = main_in_process(capsys, *command, "--data-dir", "/tmp/x")
        assert code == 2 and "unrecognized arguments: --data-dir" in err


def test_an_out_folder_that_does_not_exist_is_refused_before_training(capsys, tmp_path):
    code, out, err = main_in_process(capsys, "train", "--out", str(tmp_path / "no" / "m.safetensors"))
    assert code == 2 and not out
    assert f"the folder {tmp_path / 'no'} does not exist" in err and ".tmp" not in err


def test_train_help_shows_every_flag_and_each_recipe_s_defaults(capsys):
    code, out, _ = main_in_process(capsys, "train", "--help")
    assert code == 0
    import re

    table = [("--epochs", "30", "40", "100"), ("--batch-size", "32", "128", "32"),
             ("--optimizer", "sgd", "adamw", "adamw"), ("--lr", "0.1", "0.001", "0.001"),
             ("--schedule", "constant", "cosine", "cosine")]  # fmt: skip
    for flag, digits, fashion, regression in table:
        assert re.search(rf"^  {flag} +{digits} +{fashion} +{regression}$", out, re.M), (flag, out)
    assert "fashion-mnist, mnist, PATH" in out
    code, out, _ = main_in_process(capsys, "evaluate", "--help")
    assert code == 0 and "recorded in the model file" in " ".join(out.split())
    options = out.split("options:")[1].split("defaults:")[0]
    for line in options.splitlines():  # every option line has its help text
        if line.strip().startswith("--") and "  " not in line.strip():
            continue  # a long option whose help sits on the next line
        assert not line.strip().startswith("--") or len(line.strip().split("  ", 1)) == 2, line


def test_a_path_data_set_says_which_recipe_it_gets_and_why():
    from nnx.recipes import choose_recipe

    assert choose_recipe("digits", None) == ("digits", "the data set's own")
    recipe, why = choose_recipe("/data/my.npz", None)
    assert recipe == "fashion-mnist" and "PATH" in why and "--recipe" in why
    assert choose_recipe("/data/my.npz", "digits") == ("digits", "chosen with --recipe")


@pytest.fixture(scope="module")
def fashion_model(tmp_path_factory):
    """A model trained with --dataset fashion-mnist --data-dir on a small made-up copy of it."""
    from tests.test_datasets import write_idx_dataset

    root = tmp_path_factory.mktemp("fashion")
    write_idx_dataset(root / "data" / "fashion-mnist", np.random.default_rng(0), n_train=64, n_test=30)
    path = root / "f.safetensors"
    args = ["--data-dir", str(root / "data"), "--epochs", "1", "--hidden", "16", "--out", str(path)]
    result = run("train", "--dataset", "fashion-mnist", *args)
    assert result.returncode == 0, result.stderr
    return path, result.stdout, root


def test_the_banner_names_the_recipe_the_data_folder_and_the_optimizer_that_runs(fashion_model):
    _, stdout, root = fashion_model
    assert "recipe fashion-mnist (the data set's own); set by flags: --hidden, --epochs" in stdout
    assert f"data fashion-mnist ({root / 'data' / 'fashion-mnist'}): 64 train, 0 validation, 30 test" in stdout
    assert "AdamW(lr=0.001, weight_decay=0.01" in stdout and "model 784-16-10 MLP" in stdout


def test_evaluate_uses_the_data_set_and_folder_recorded_in_the_model_file(fashion_model, tmp_path):
    path, _, _ = fashion_model
    result = run("evaluate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("(30 test samples of fashion-mnist, recorded in the model file)")
    assert [line.rsplit(None, 3)[0] for line in lines[2:]] == nnx.datasets.FASHION_NAMES  # class names, not numbers


def test_evaluate_without_a_recorded_data_set_asks_for_one(capsys, tmp_path):
    nnx.save(nnx.Sequential(nnx.Dense(64, 10), backend="numpy"), tmp_path / "api.safetensors")
    code, _, err = main_in_process(capsys, "evaluate", str(tmp_path / "api.safetensors"))
    assert code == 2 and "records no data set" in err and "--dataset" in err


def test_predict_reads_a_single_png_and_prints_class_names(fashion_model, tmp_path):
    image = pytest.importorskip("PIL.Image")
    path, _, _ = fashion_model
    image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "one.png")
    result = run("predict", str(path), str(tmp_path / "one.png"))
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    name, k, label, probability = row.split(",")
    assert header == "input,class,name,probability" and name == "one.png"
    assert label == nnx.datasets.FASHION_NAMES[int(k)] and 0 < float(probability) <= 1
    image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "small.png")
    result = run("predict", str(path), str(tmp_path / "small.png"))
    assert result.returncode == 1 and "the model takes 28×28 grayscale images (784 features)" in result.stderr
    assert "small.png is 8×8" in result.stderr
