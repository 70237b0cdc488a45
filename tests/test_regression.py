"""Regression and binary tasks end to end: fit, evaluate and predict report and return what the
loss's task calls for (the mean absolute error, sigmoid probabilities, the outputs themselves),
model files keep the task, and the command line trains, evaluates and predicts a regressor on an
.npz of float targets."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError, DataFormatError
from tests.test_cli import main_in_process


def sine(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x uniform in [−3, 3], y = sin(x): (n, 1) float32 each."""
    x = np.random.default_rng(seed).uniform(-3, 3, (n, 1)).astype(np.float32)
    return x, np.sin(x)


def regressor(seed: int = 0) -> nnx.Sequential:
    return nnx.Sequential(nnx.Dense(1, 64), nnx.Tanh(), nnx.Dense(64, 64), nnx.Tanh(), nnx.Dense(64, 1), seed=seed)


def test_the_readme_regression_example_fits_sin_x_to_a_mean_absolute_error_under_0_02():
    x, y = sine(2000, 0)
    x_test, y_test = sine(500, 1)
    model = regressor()
    history = model.fit(
        x, y, loss=nnx.MeanSquaredError(), optimizer=nnx.Adam(3e-3), epochs=60, batch_size=32,
        schedule=nnx.Cosine(), validation_data=(x_test, y_test),
    )  # fmt: skip
    result = model.evaluate(x_test, y_test)
    assert model.task == "regression" and set(result) == {"loss", "mae"}
    assert result["mae"] < 0.02, result
    predictions = model.predict(x_test)
    assert predictions.shape == (500, 1)  # the outputs themselves: no softmax over one column
    np.testing.assert_allclose(np.abs(predictions - y_test).mean(), result["mae"], rtol=1e-5)
    np.testing.assert_allclose(((predictions - y_test) ** 2).mean(), result["loss"], rtol=1e-5)
    assert history.mae[0] > history.mae[-1] and len(history.val_mae) == 60 and not history.accuracy
    assert history.val_mae[-1] == pytest.approx(result["mae"])
    with pytest.raises(ConfigError, match="predict_classes needs a classification or binary model"):
        model.predict_classes(x_test)


def test_the_mean_absolute_error_is_the_mean_over_every_row_and_output_on_every_backend(backend, rng):
    loss = nnx.MeanSquaredError()
    outputs, targets = rng.standard_normal((37, 3)), rng.standard_normal((37, 3))
    total = loss.metric_sum(backend, backend.asarray(outputs), backend.asarray(targets))
    assert float(total) / 37 == pytest.approx(np.abs(outputs - targets).mean(), rel=1e-12)


@pytest.mark.parametrize(
    "loss, targets",
    [
        (nnx.MeanSquaredError(), lambda rng: rng.standard_normal((4099, 3)).astype(np.float32)),
        (nnx.BinaryCrossentropy(), lambda rng: rng.integers(0, 2, (4099, 3)).astype(np.float32)),
        (nnx.SparseCategoricalCrossentropy(), lambda rng: rng.integers(0, 3, 4099)),
    ],
)
def test_the_metric_sums_of_float32_outputs_are_float64(cpu_backend, rng, loss, targets):
    outputs, y = rng.standard_normal((4099, 3)).astype(np.float32), targets(rng)
    total = loss.metric_sum(cpu_backend, cpu_backend.asarray(outputs), cpu_backend.asarray(y))
    assert total.dtype == np.float64 and total.shape == ()


def test_fit_reports_the_epoch_mae_as_the_row_weighted_mean_of_its_batches(rng):
    """10 rows in batches of 4, 4, 2 with lr so small that the weights stay put: the epoch's mae
    equals the mae of the start weights over all rows."""
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 2))
    model = nnx.Sequential(nnx.Dense(3, 2), backend="numpy", dtype="float64")
    model.task = "regression"
    expected = np.abs(model.predict(x) - y).mean()
    history = model.fit(x, y, loss=nnx.MeanSquaredError(), optimizer=nnx.SGD(1e-12), epochs=1, batch_size=4)
    assert history.mae == [pytest.approx(expected, rel=1e-9)]


def test_a_binary_model_predicts_sigmoid_probabilities_and_0_1_classes(rng):
    x = rng.uniform(-1, 1, (400, 2)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)  # two independent outputs
    model = nnx.Sequential(nnx.Dense(2, 16), nnx.ReLU(), nnx.Dense(16, 2), backend="numpy")
    history = model.fit(x, y, loss=nnx.BinaryCrossentropy(), optimizer=nnx.Adam(1e-2), epochs=30, batch_size=32)
    assert model.task == "binary" and history.accuracy[-1] > 0.95
    logits = model.forward(model.backend.asarray(x), logits=True).copy()
    probabilities = model.predict(x)
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits)), rtol=1e-5)
    classes = model.predict_classes(x)
    np.testing.assert_array_equal(classes, (logits > 0).astype(np.int64))
    assert model.evaluate(x, y)["accuracy"] == pytest.approx((classes == y).mean())


def test_model_files_keep_the_task(tmp_path, rng):
    for task in ("regression", "binary", "classification"):
        model = nnx.Sequential(nnx.Dense(3, 2), backend="numpy")
        model.task = task
        nnx.save(model, tmp_path / f"{task}.safetensors")
        loaded = nnx.load(tmp_path / f"{task}.safetensors", backend="numpy")
        x = rng.standard_normal((5, 3))
        assert loaded.task == task
        np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(ConfigError, match=r"task must be one of \('classification', 'binary', 'regression'\)"):
        model.task = "ranking"


@pytest.fixture(scope="module")
def sine_npz(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sine")
    (x, y), (xt, yt) = sine(1000, 0), sine(200, 1)
    np.savez(folder / "sine.npz", x_train=x, y_train=y[:, 0], x_test=xt, y_test=yt[:, 0])
    return folder / "sine.npz"


def test_the_cli_infers_regression_from_float_targets_and_trains_evaluates_and_predicts(capsys, tmp_path, sine_npz):
    out_file = str(tmp_path / "sine.safetensors")
    code, out, err = main_in_process(capsys, "train", "--dataset", str(sine_npz), "--out", out_file)
    assert code == 0, err
    assert "task regression (inferred from y_train's float32 targets); recipe regression (the default for" in out
    assert "1-128-128-1 MLP" in out and "mae" in out.splitlines()[4]
    test_line = next(line for line in out.splitlines() if line.startswith("test loss"))
    mae = float(test_line.split("test mae ")[1].split()[0])
    assert mae < 0.03, test_line
    model = nnx.load(out_file, backend="numpy")
    assert model.task == "regression" and model.out_features == 1
    _, (xt, yt) = sine(1000, 0), sine(200, 1)
    assert np.abs(model.predict(xt) - yt).mean() == pytest.approx(mae, abs=1e-4)

    code, out, _ = main_in_process(capsys, "evaluate", out_file)
    assert code == 0 and out.startswith("loss ") and f"mae {mae:.4f}" in out and "precision" not in out
    np.save(tmp_path / "x.npy", xt[:3])
    code, out, _ = main_in_process(capsys, "predict", out_file, str(tmp_path / "x.npy"))
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0] == ["input", "output0"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], model.predict(xt[:3])[:, 0], rtol=1e-5)


def test_the_cli_task_flag_overrides_the_inference_and_refuses_float_labels(capsys, tmp_path, sine_npz):
    code, _, err = main_in_process(capsys, "train", "--dataset", str(sine_npz), "--task", "classification")
    assert code == 2 and "--task classification needs integer class labels; y_train holds float32" in err
    x = np.random.default_rng(0).uniform(0, 1, (60, 4)).astype(np.float32)
    counts = np.round(x.sum(axis=1) * 2).astype(np.int64)  # integer targets that are quantities
    np.savez(tmp_path / "counts.npz", x_train=x[:50], y_train=counts[:50], x_test=x[50:], y_test=counts[50:])
    code, out, err = main_in_process(
        capsys, "train", "--dataset", str(tmp_path / "counts.npz"), "--task", "regression", "--epochs", "2",
        "--validation", "0.2",
    )  # fmt: skip
    assert code == 0, err
    assert "task regression (--task)" in out and "40 train, 10 validation" in out and "val_mae" in out


def test_an_npz_whose_train_and_test_targets_differ_in_kind_is_refused(tmp_path):
    x = np.zeros((4, 2), np.float32)
    np.savez(tmp_path / "mixed.npz", x_train=x, y_train=np.zeros(4), x_test=x, y_test=np.zeros(4, np.int64))
    with pytest.raises(DataFormatError, match="must both hold labels or both float targets; got float64 and int64"):
        nnx.datasets.load_npz(tmp_path / "mixed.npz")


def test_binary_accuracy_counts_a_zero_logit_as_class_0_and_a_target_of_one_half_as_0(cpu_backend):
    """A prediction is 1 where the logit is > 0; a target is 1 where it is > 0.5 (both strict)."""
    logits = cpu_backend.asarray(np.array([[0.0, 1.0], [0.0, -1.0]]))
    targets = cpu_backend.asarray(np.array([[1.0, 0.5], [0.0, 0.5]]))
    # row 0: 0 vs 1 wrong, 1 vs 0.5 wrong; row 1: 0 vs 0 right, 0 vs 0.5 right -> 2 of 4 right
    assert float(nnx.BinaryCrossentropy().metric_sum(cpu_backend, logits, targets)) == 1.0
