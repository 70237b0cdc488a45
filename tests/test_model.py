"""Sequential end to end: training on the digits, reproducibility, memory, inference and bad input."""

from __future__ import annotations

import os
import re
import signal
import threading
import tracemalloc

import numpy as np
import pytest

import nnx
from nnx.errors import (
    ConfigError,
    DataError,
    DTypeError,
    OutOfDeviceMemory,
    ShapeError,
    TrainingDiverged,
    TrainingInterrupted,
)
from tests.helpers import mlp_probability_bound


@pytest.fixture(scope="module")
def digits():
    return nnx.datasets.load_digits()


def mlp(backend="numpy", seed=0, dtype="float32", dropout=0.0):
    extra = [nnx.Dropout(dropout)] if dropout else []
    return nnx.Sequential(
        nnx.Dense(64, 64),
        nnx.ReLU(),
        *extra,
        nnx.Dense(64, 64),
        nnx.ReLU(),
        nnx.Dense(64, 10),
        backend=backend,
        seed=seed,
        dtype=dtype,
    )


def fit(model, x, y, epochs=30, lr=0.1, **kwargs):
    return model.fit(
        x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(lr), epochs=epochs, batch_size=32, **kwargs
    )


def test_a_64_64_10_mlp_with_plain_sgd_reaches_95_percent_on_the_digits(backend, digits):
    (x, y), (xt, yt) = digits
    model = mlp(backend)
    history = fit(model, x, y, validation_data=(xt, yt))
    result = model.evaluate(xt, yt)
    assert result["accuracy"] >= 0.95
    assert history.loss[-1] < history.loss[0] / 10
    assert history.val_accuracy[-1] == result["accuracy"]
    assert len(history.epoch) == len(history.accuracy) == len(history.val_loss) == 30


def test_the_same_seed_gives_the_same_weights_and_loss_curve(digits):
    (x, y), _ = digits
    a, b, c = mlp(seed=5), mlp(seed=5), mlp(seed=6)
    for name, w in a.get_weights().items():
        np.testing.assert_array_equal(w, b.get_weights()[name])
    assert not np.array_equal(a.get_weights()["layers.0.W"], c.get_weights()["layers.0.W"])
    ha, hb = fit(a, x, y, epochs=3), fit(b, x, y, epochs=3)
    assert ha.loss == hb.loss
    for name, w in a.get_weights().items():
        np.testing.assert_array_equal(w, b.get_weights()[name])


def test_he_initialisation_has_the_right_scale():
    w = nnx.Sequential(nnx.Dense(1000, 500), backend="numpy").get_weights()["layers.0.W"]
    assert w.std() == pytest.approx(np.sqrt(2 / 1000), rel=0.02)


def test_float64_training_works(digits):
    (x, y), (xt, yt) = digits
    model = mlp(dtype="float64")
    fit(model, x, y, epochs=10)
    assert model.get_weights()["layers.0.W"].dtype == np.float64
    assert model.evaluate(xt, yt)["accuracy"] > 0.9


@pytest.mark.parametrize("make_optimizer", [lambda: nnx.Adam(1e-3), lambda: nnx.SGD(0.01)], ids=["adam", "sgd-folded"])
def test_the_training_step_allocates_no_arrays_in_the_steady_state(rng, make_optimizer):
    """After the first steps, a step allocates no buffer that grows with the batch (NumPy's ufuncs may
    still use their fixed internal scratch of 8192 elements, 32 KiB)."""
    n = 2048
    model = nnx.Sequential(
        nnx.Dense(256, 512), nnx.ReLU(), nnx.Dense(512, 512), nnx.ReLU(), nnx.Dense(512, 10), backend="numpy"
    )
    be = model.backend
    x = be.asarray(rng.standard_normal((n, 256)).astype(np.float32))
    y = be.asarray(rng.integers(0, 10, n))
    loss, opt = nnx.SparseCategoricalCrossentropy(), make_optimizer()
    for _ in range(2):  # buffers and optimizer slots are sized here
        nnx.train_step(model, x, y, loss, opt)
    tracemalloc.start()
    for _ in range(3):
        nnx.train_step(model, x, y, loss, opt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    smallest_buffer = n * 10 * 4  # the logits, 80 KiB
    assert peak < 64 * 1024 < smallest_buffer, f"a steady-state step allocated {peak} bytes"


def test_predict_gives_probabilities_and_predict_classes_their_argmax(digits):
    (x, y), (xt, _) = digits
    model = mlp()
    fit(model, x, y, epochs=2)
    probs = model.predict(xt)
    assert probs.shape == (len(xt), 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict_classes(xt), probs.argmax(axis=1))
    # Batches of 7 rows take other BLAS kernels than one of all rows: the sums in another order.
    bound = mlp_probability_bound(model, xt)
    assert (np.abs(model.predict(xt, batch_size=7) - probs) <= bound).all()


def test_dropout_is_off_in_evaluate_and_predict(digits):
    (x, y), (xt, yt) = digits
    model = mlp(dropout=0.5)
    fit(model, x, y, epochs=2)
    np.testing.assert_array_equal(model.predict(xt), model.predict(xt))
    assert model.evaluate(xt, yt) == model.evaluate(xt, yt)


def test_train_step_returns_the_batch_loss_and_moves_the_weights(digits):
    (x, y), _ = digits
    model = mlp()
    before = model.get_weights()["layers.0.W"]
    value = model.train_step(x[:32], y[:32], nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1))
    assert value == pytest.approx(model.evaluate(x[:32], y[:32])["loss"], rel=0.5)
    assert not np.array_equal(before, model.get_weights()["layers.0.W"])


def test_to_moves_the_model_and_keeps_its_predictions(digits):
    (x, y), (xt, _) = digits
    model = mlp()
    fit(model, x, y, epochs=1)
    before = model.predict(xt)
    np.testing.assert_array_equal(model.to("numpy").predict(xt), before)


BAD_INPUTS = [
    (lambda x, y: (x[:, :10], y), ShapeError, r"x must have 64 features per row; got shape \(1438, 10\)"),
    (lambda x, y: (x[:, 0], y), ShapeError, r"x must be 2-D \(samples, 64\); got shape \(1438,\)"),
    (lambda x, y: (x, y[:-1]), ShapeError, r"y must have one label per sample of x \(1438\); got 1437"),
    (lambda x, y: (x, np.where(y == 3, 10, y)), DataError, r"y must hold labels in \[0, 9\]; got values from 0 to 10"),
    (lambda x, y: (x, np.where(y == 3, -1, y)), DataError, "got values from -1 to 9"),
    (lambda x, y: (x, y.astype(np.float64)), DTypeError, "y must hold integer class labels; got dtype float64"),
    (lambda x, y: (x, y + 0.5), DTypeError, "y must hold integer class labels"),
    (
        lambda x, y: (np.where(x == x[5, 20], np.nan, x), y),
        DataError,
        r"x must be finite; got NaN or Inf \(first in row",
    ),
    (lambda x, y: (np.where(x > 0.99, np.inf, x), y), DataError, "x must be finite"),
    (lambda x, y: (x[:0], y[:0]), DataError, r"x must hold at least one sample; got shape \(0, 64\)"),
    (lambda x, y: (x.astype(str), y), DTypeError, "x must hold numbers"),
]


@pytest.mark.parametrize("make, error, message", BAD_INPUTS)
def test_bad_input_raises_a_documented_error_naming_the_argument(digits, make, error, message):
    (x, y), _ = digits
    bad_x, bad_y = make(x, y)
    model = mlp()
    with pytest.raises(error, match=message):
        fit(model, bad_x, bad_y, epochs=1)
    with pytest.raises(error, match=message):
        model.evaluate(bad_x, bad_y)


def test_finite_inputs_whose_sum_overflows_are_accepted():
    """The finiteness check sums x first; huge finite values overflow that sum and must still pass."""
    from nnx.checks import check_features

    x = np.full((4, 3), 3e38, np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(x.sum())
    assert check_features(x, 3) is x
    x[2, 1] = np.nan
    with pytest.raises(DataError, match=r"x must be finite; got NaN or Inf \(first in row 2\)"):
        check_features(x, 3)


def test_bad_settings_raise_config_error(digits):
    (x, y), (xt, yt) = digits
    model = mlp()
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1; got 0"):
        model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=1, batch_size=0)
    with pytest.raises(ConfigError, match="epochs must be an integer >= 1; got 0"):
        fit(model, x, y, epochs=0)
    with pytest.raises(ConfigError, match="validation_data must be a pair"):
        fit(model, x, y, epochs=1, validation_data=xt)
    with pytest.raises(ShapeError, match="validation_data.0. must have 64 features"):
        fit(model, x, y, epochs=1, validation_data=(xt[:, :3], yt))
    with pytest.raises(ShapeError, match="Dense expects 32 input features; the layer before gives 64"):
        nnx.Sequential(nnx.Dense(10, 64), nnx.ReLU(), nnx.Dense(32, 10))
    with pytest.raises(DTypeError, match="dtype must be one of .* got 'float16'"):
        nnx.Sequential(nnx.Dense(4, 2), dtype="float16")
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'cupy', 'auto'; got 'gpu'"):
        nnx.Sequential(nnx.Dense(4, 2), backend="gpu")
    with pytest.raises(ConfigError, match=r"layers\[2\] is the same ReLU instance as layers\[1\]"):
        relu = nnx.ReLU()
        nnx.Sequential(nnx.Dense(64, 32), relu, relu, nnx.Dense(32, 10))


def test_a_final_softmax_is_left_to_the_fused_loss_in_fit_and_evaluate(digits):
    """Dense → Softmax trains and evaluates as Dense alone (the loss applies the softmax), and
    predict gives the same probabilities."""
    (x, y), (xt, yt) = digits
    with_softmax = nnx.Sequential(nnx.Dense(64, 10), nnx.Softmax(), backend="numpy", seed=4)
    plain = nnx.Sequential(nnx.Dense(64, 10), backend="numpy", seed=4)
    for model in (with_softmax, plain):
        fit(model, x, y, epochs=2)
    for name, w in plain.get_weights().items():
        np.testing.assert_array_equal(with_softmax.get_weights()[name], w)
    assert with_softmax.evaluate(xt, yt) == plain.evaluate(xt, yt)
    np.testing.assert_array_equal(with_softmax.predict(xt), plain.predict(xt))


@pytest.mark.filterwarnings("ignore::nnx.checks.UnscaledInputWarning")
def test_a_diverging_run_stops_with_training_diverged_and_restores_finite_weights(digits):
    (x, y), _ = digits
    model = mlp()
    initial = model.get_weights()
    with pytest.raises(
        TrainingDiverged,
        match=r"NaN or Inf in epoch 1 by step \d+ .*start of epoch 1 are restored.*lr=1e\+06",
    ):
        fit(model, x * 1000, y, epochs=5, lr=1e6)
    for name, w in model.get_weights().items():  # it diverged in epoch 1: back to the initial weights
        np.testing.assert_array_equal(w, initial[name])
    assert np.isfinite(model.predict(x)).all()


@pytest.mark.filterwarnings("ignore::nnx.checks.UnscaledInputWarning")
def test_divergence_checked_every_k_steps_restores_the_epoch_start_weights(digits):
    (x, y), _ = digits
    model = mlp()
    fit(model, x, y, epochs=1)
    start = model.get_weights()
    with pytest.raises(TrainingDiverged, match="weights from the start of epoch 1 are restored"):
        fit(model, x * 1000, y, epochs=1, lr=1e6, check_every=10)
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, start[name])


def test_ctrl_c_stops_after_a_complete_step_and_carries_the_history(digits):
    (x, y), (xt, _) = digits

    class InterruptInEpoch2(nnx.Callback):
        def on_progress(self, epoch, seen, logs):
            if epoch == 1 and seen > 500:
                os.kill(os.getpid(), signal.SIGINT)

    assert threading.current_thread() is threading.main_thread()
    model = mlp()
    with pytest.raises(TrainingInterrupted) as info:
        fit(model, x, y, epochs=5, callbacks=[InterruptInEpoch2()])
    assert info.value.history.epoch == [1]  # numbered as printed
    assert np.isfinite(model.predict(xt)).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_running_out_of_device_memory_suggests_a_smaller_batch_and_keeps_the_model_usable(digits, monkeypatch):
    (x, y), (xt, yt) = digits
    model = mlp()
    fit(model, x, y, epochs=1)
    before = model.get_weights()
    dense = model.layers[2]
    real_forward = dense.forward
    calls = {"n": 0}

    def forward_that_runs_out(h):  # what CuPy raises when an allocation fails (a MemoryError)
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError("Out of memory allocating 1,048,576 bytes")
        return real_forward(h)

    monkeypatch.setattr(dense, "forward", forward_that_runs_out)
    with pytest.raises(OutOfDeviceMemory, match="out of numpy memory with batch_size=32; try a smaller batch_size"):
        fit(model, x, y, epochs=1)
    monkeypatch.undo()
    assert model.evaluate(xt, yt)["accuracy"] > 0.5
    assert all(np.isfinite(w).all() for w in model.get_weights().values())
    assert set(before) == set(model.get_weights())


def test_parameters_are_arrays_and_named_parameters_name_value_grad_triples():
    model = mlp()
    assert sum(p.size for p in model.parameters()) == model.count_params() == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    names = [name for name, value, grad in model.named_parameters()]
    assert names == ["layers.0.W", "layers.0.b", "layers.2.W", "layers.2.b", "layers.4.W", "layers.4.b"]


def test_summary_is_a_table_of_layers_output_shapes_and_parameter_counts():
    model = mlp(dropout=0.2)
    text = model.summary()
    lines = text.splitlines()
    assert lines[0] == "Sequential: input (N, 64), backend numpy"
    rows = [line for line in lines if line[:1].isdigit()]
    assert [re.findall(r"  (\(N, \d+\)) +([\d,]+)$", row)[0] for row in rows] == [
        ("(N, 64)", "4,160"),
        ("(N, 64)", "0"),
        ("(N, 64)", "0"),
        ("(N, 64)", "4,160"),
        ("(N, 64)", "0"),
        ("(N, 10)", "650"),
    ]
    assert rows[0].startswith("0: Dense(in_features=64, out_features=64)")
    assert lines[-1] == f"total: {model.count_params():,} parameters (35.0 KiB of float32)"


def test_fit_verbose_prints_a_line_per_epoch_numbered_as_the_history(digits, capsys):
    (x, y), _ = digits
    history = fit(mlp(), x, y, epochs=2)
    assert history.epoch == [1, 2] and capsys.readouterr().out == ""  # silent by default
    history = fit(mlp(), x, y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"] and history.epoch == [1, 2]
    assert all(line.endswith("ms") or line.endswith("s") for line in lines) and " 0.00s" not in "".join(lines)
    resumed = fit(mlp(), x, y, epochs=3, initial_epoch=2, verbose=2)
    assert resumed.epoch == [3] and capsys.readouterr().out.startswith("epoch 3/3")
    with pytest.raises(ConfigError, match="verbose must be 0"):
        fit(mlp(), x, y, epochs=1, verbose=3)
    assert nnx.LineProgress and nnx.TqdmProgress and "LineProgress" in nnx.__all__


def test_the_progress_line_shows_milliseconds_for_short_epochs():
    from nnx.progress import format_logs

    line = format_logs(0, 30, {"loss": 0.5, "accuracy": 0.9, "seconds": 0.0031})
    assert line == "epoch 1/30  loss 0.5000  accuracy 0.9000  3.1ms"
    assert format_logs(0, 1, {"loss": 0.5, "accuracy": 0.9, "seconds": 1.5}).endswith("  1.50s")


def test_inputs_that_look_unscaled_raise_a_warning(digits):
    import warnings

    (x, y), _ = digits
    pixels = np.round(x * 255).astype(np.uint8)  # 0-255, as read from an image
    message = r"x looks unscaled: its values reach 255, with a root mean square of .*divide by 255"
    with pytest.warns(nnx.UnscaledInputWarning, match=message):
        fit(mlp(), pixels, y, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(mlp(), x, y, epochs=1)  # in [0, 1]: no warning
        fit(mlp(), (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-3), y, epochs=1, lr=0.01)  # standardised
    assert issubclass(nnx.UnscaledInputWarning, UserWarning)


def test_class_names_round_trip_through_a_model_file_and_bad_ones_are_refused(tmp_path):
    pytest.importorskip("safetensors", reason="model files need safetensors")
    from nnx.errors import ModelFileError

    model = nnx.Sequential(nnx.Dense(4, 3), backend="numpy")
    assert model.class_names is None
    nnx.save(model, tmp_path / "plain.safetensors")
    assert nnx.load(tmp_path / "plain.safetensors", backend="numpy").class_names is None
    model.class_names = ["cat", "dog", "owl"]
    nnx.save(model, tmp_path / "named.safetensors")
    assert nnx.load(tmp_path / "named.safetensors", backend="numpy").class_names == ["cat", "dog", "owl"]
    model.class_names = ["cat", "dog"]
    with pytest.raises(ConfigError, match=r"model.class_names must be None or 3 strings, one per output; got \['cat'"):
        nnx.save(model, tmp_path / "bad.safetensors")
    import json

    from safetensors.numpy import save as st_save

    from nnx.model_file import read

    meta, tensors = read(tmp_path / "named.safetensors")
    meta["class_names"] = ["cat", "dog", "owl", "eel"]
    (tmp_path / "edited.safetensors").write_bytes(st_save(tensors, metadata={"nnx": json.dumps(meta)}))
    with pytest.raises(ModelFileError, match="edited.safetensors: metadata class_names must be None or 3 strings"):
        nnx.load(tmp_path / "edited.safetensors", backend="numpy")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_have_the_models_dtype(dtype):
    model = nnx.Sequential(nnx.Dense(3, 4), nnx.ReLU(), nnx.Dense(4, 2), backend="numpy", dtype=dtype)
    assert {g.dtype for _, _, g in model.named_parameters()} == {np.dtype(dtype)}


def test_the_parameter_buffer_holds_every_weight_as_a_view_and_the_optimizer_follows(rng):
    model, optimizer, loss = mlp(dtype="float64"), nnx.SGD(0.1), nnx.SparseCategoricalCrossentropy()
    x, y = rng.standard_normal((16, 64)), rng.integers(0, 10, 16)
    model.train_step(x, y, loss, optimizer)  # the optimizer has looked the old arrays up
    before = model.get_weights()
    flat = model.parameter_buffer(spare=3)
    assert flat.shape == (model.count_params() + 3,) and flat.dtype == np.float64
    np.testing.assert_array_equal(flat[:-3], np.concatenate([w.ravel() for w in before.values()]))
    assert not flat[-3:].any()
    flat[:-3] *= 2  # the parameters are views of the buffer
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, 2 * before[name])
    model.train_step(x, y, loss, optimizer)
    np.testing.assert_array_equal(flat[:-3], np.concatenate([w.ravel() for w in model.get_weights().values()]))
    assert not np.array_equal(flat[:-3], 2 * np.concatenate([w.ravel() for w in before.values()]))
