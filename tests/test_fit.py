"""fit's contract, in process: the numbers it reports, what its callbacks and schedules are told,
its settings and their errors, divergence checks and resumption. Each test is named after the
behaviour it proves; together they kill the mutants of nnx/training.py (docs/mutation-testing.md)."""

from __future__ import annotations

import math
import os
import signal
import time
import warnings

import numpy as np
import pytest

import nnx
from backends.numpy_backend import NumpyBackend
from nnx.errors import ConfigError, DataError, TrainingDiverged


@pytest.fixture(scope="module")
def digits():
    return nnx.datasets.load_digits()


def small(seed=0, dropout=0.0, backend="numpy"):
    extra = [nnx.Dropout(dropout)] if dropout else []
    return nnx.Sequential(nnx.Dense(64, 16), nnx.ReLU(), *extra, nnx.Dense(16, 10), backend=backend, seed=seed)


class Recorded(nnx.SparseCategoricalCrossentropy):
    """The softmax loss, recording each training batch: (rows, loss, rows predicted right)."""

    def __init__(self, nan_at_call: int | None = None):
        super().__init__()
        self.batches: list[tuple[int, float, int]] = []
        self.nan_at_call = nan_at_call

    def compute(self, backend, outputs, targets):
        value, grad = super().compute(backend, outputs, targets)
        if self.nan_at_call is not None and len(self.batches) + 1 >= self.nan_at_call:
            value = value * np.nan
        correct = int((backend.to_numpy(outputs).argmax(axis=1) == backend.to_numpy(targets)).sum())
        self.batches.append((outputs.shape[0], float(value), correct))
        return value, grad


class Recorder(nnx.Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, model, epochs, n_samples):
        self.calls.append(("begin", model, epochs, n_samples))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_progress(self, epoch, seen, logs):
        self.calls.append(("progress", epoch, seen, logs["loss"], logs["accuracy"]))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self):
        self.calls.append(("end",))


def test_the_epoch_loss_and_accuracy_are_the_row_weighted_means_of_its_batches(digits):
    (x, y), _ = digits
    x, y = x[:1000], y[:1000]  # 1000 rows in batches of 96: ten full and one of 40
    loss, recorder = Recorded(), Recorder()
    history = small().fit(x, y, loss=loss, optimizer=nnx.SGD(0.1), epochs=2, batch_size=96, callbacks=[recorder])
    steps = math.ceil(1000 / 96)
    for epoch in range(2):
        batches = loss.batches[epoch * steps : (epoch + 1) * steps]
        rows = np.array([b[0] for b in batches])
        assert rows.sum() == 1000 and rows[-1] == 1000 - 96 * (steps - 1)
        mean_loss = sum(n * v for n, v, _ in batches) / 1000
        assert history.loss[epoch] == pytest.approx(mean_loss, rel=1e-6)  # float32 batch losses
        assert history.accuracy[epoch] == sum(c for *_, c in batches) / 1000
        # on the CPU the running numbers reach the callbacks after every step
        progress = [c for c in recorder.calls if c[0] == "progress" and c[1] == epoch]
        seen = np.cumsum(rows)
        assert [p[2] for p in progress] == seen.tolist()
        running = np.cumsum([n * v for n, v, _ in batches]) / seen
        np.testing.assert_allclose([p[3] for p in progress], running, rtol=1e-6)
        np.testing.assert_allclose([p[4] for p in progress], np.cumsum([b[2] for b in batches]) / seen)
    assert history.loss[1] < history.loss[0]


def test_callbacks_are_told_the_model_the_epochs_the_rows_and_each_epoch_in_order(digits):
    (x, y), (xt, yt) = digits
    recorder, model = Recorder(), small()
    start = time.perf_counter()
    history = model.fit(
        x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=3, batch_size=512,
        callbacks=[recorder], validation_data=(xt, yt), initial_epoch=1,
    )  # fmt: skip
    elapsed = time.perf_counter() - start  # each epoch's seconds lie within the call
    calls = [c for c in recorder.calls if c[0] != "progress"]
    assert calls[0] == ("begin", model, 3, len(x)) and calls[-1] == ("end",)
    assert [c[:2] for c in calls[1:-1]] == [("epoch_begin", 1), ("epoch_end", 1), ("epoch_begin", 2), ("epoch_end", 2)]
    logs = calls[2][2]
    assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy", "epoch", "lr", "seconds"}
    assert logs["epoch"] == 2 and logs["lr"] == 0.1 and 0 < logs["seconds"] < elapsed
    assert history.epoch == [2, 3] and history.lr == [0.1, 0.1] and 0 < sum(history.seconds) < elapsed
    assert history.val_loss[-1] == pytest.approx(model.evaluate(xt, yt)["loss"], rel=1e-6)


def test_a_callback_that_sets_stop_training_ends_fit_after_that_epoch(digits):
    (x, y), _ = digits

    class StopAfterSecond(nnx.Callback):
        def on_train_begin(self, model, epochs, n_samples):
            self.model = model

        def on_epoch_end(self, epoch, logs):
            self.model.stop_training = epoch == 1

    recorder, model = Recorder(), small()
    history = model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=5,
                        batch_size=512, callbacks=[StopAfterSecond(), recorder])  # fmt: skip
    assert history.epoch == [1, 2] and recorder.calls[-1] == ("end",)
    assert model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2).epoch == [1, 2]


def test_the_defaults_are_batches_of_32_in_a_shuffled_order_from_epoch_0(digits):
    (x, y), _ = digits
    loss, recorder = Recorded(), Recorder()
    small().fit(x[:100], y[:100], loss=loss, optimizer=nnx.SGD(0.1), epochs=1, callbacks=[recorder])
    assert [b[0] for b in loss.batches] == [32, 32, 32, 4]
    assert ("epoch_begin", 0) in recorder.calls
    shuffled = Recorded()
    small().fit(x[:100], y[:100], loss=shuffled, optimizer=nnx.SGD(0.1), epochs=1, batch_size=100, shuffle=False)
    assert shuffled.batches[0][1] != pytest.approx(loss.batches[0][1])  # the first batch of 32 is not rows 0-31


def test_the_schedule_is_told_the_global_step_the_total_and_the_steps_per_epoch(digits):
    (x, y), _ = digits

    class Spy(nnx.Schedule):
        def __init__(self):
            super().__init__()
            self.seen = []

        def factor(self, step, total_steps, steps_per_epoch):
            self.seen.append((step, total_steps, steps_per_epoch))
            return 0.5

    spy, opt = Spy(), nnx.SGD(0.2)
    history = small().fit(x[:100], y[:100], loss=Recorded(), optimizer=opt, epochs=2, batch_size=30, schedule=spy)
    assert spy.seen == [(s, 8, 4) for s in range(8)]
    assert opt.lr == 0.1 and history.lr == [0.1, 0.1]


def test_fit_sets_training_mode_for_its_steps_and_inference_mode_after(digits):
    (x, y), _ = digits

    class ModeProbe(nnx.Layer):
        def __init__(self):
            super().__init__()
            self.modes = []

        def forward(self, x):
            self.modes.append(self.training)
            return x

        def backward(self, grad):
            return grad

    probe = ModeProbe()
    model = nnx.Sequential(nnx.Dense(64, 10), probe, backend="numpy")
    model.fit(x[:64], y[:64], loss=Recorded(), optimizer=nnx.SGD(0.1), epochs=1, batch_size=32,
              validation_data=(x[:10], y[:10]))  # fmt: skip
    assert probe.modes == [True, True, False] and probe.training is False


def test_dropout_models_resume_exactly_from_initial_epoch(digits):
    """The masks and the order are drawn from (seed, epoch): two epochs in one call equal one
    epoch, then a second call with initial_epoch=1 and the same optimizer."""
    (x, y), _ = digits
    whole, split = small(dropout=0.3), small(dropout=0.3)
    kwargs = dict(loss=nnx.SparseCategoricalCrossentropy(), batch_size=64)
    whole.fit(x, y, optimizer=nnx.Adam(1e-3), epochs=2, **kwargs)
    opt = nnx.Adam(1e-3)
    split.fit(x, y, optimizer=opt, epochs=1, **kwargs)
    split.fit(x, y, optimizer=opt, epochs=2, initial_epoch=1, **kwargs)
    for name, w in whole.get_weights().items():
        np.testing.assert_array_equal(split.get_weights()[name], w)
    once = small(dropout=0.3)
    once.fit(x, y, optimizer=nnx.Adam(1e-3), epochs=1, **kwargs)  # and epoch 1 differs from epoch 0
    assert not np.array_equal(once.get_weights()["layers.0.W"], whole.get_weights()["layers.0.W"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"initial_epoch": -1}, r"initial_epoch must be an integer in \[0, epochs=2\]; got -1"),
        ({"initial_epoch": 3}, r"got 3"),
        ({"initial_epoch": True}, r"got True"),
        ({"initial_epoch": 1.0}, r"got 1.0"),
        ({"loss": object()}, "loss must be an nnx Loss; got object"),
        ({"optimizer": "sgd"}, "optimizer must be an nnx Optimizer; got str"),
        ({"check_every": 0}, "check_every must be an integer >= 1; got 0"),
        ({"validation_data": ([[0.0] * 64], [1], [2])}, r"^validation_data must be a pair \(x_val, y_val\)$"),
    ],
)
def test_bad_fit_settings_raise_config_error_naming_them(digits, kwargs, message):
    (x, y), _ = digits
    settings = {"loss": nnx.SparseCategoricalCrossentropy(), "optimizer": nnx.SGD(0.1), "epochs": 2, **kwargs}
    with pytest.raises(ConfigError, match=message):
        small().fit(x[:50], y[:50], **settings)


def test_initial_epoch_equal_to_epochs_trains_nothing(digits):
    (x, y), _ = digits
    model = small()
    before = model.get_weights()
    history = model.fit(x, y, loss=Recorded(), optimizer=nnx.SGD(0.1), epochs=2, initial_epoch=2)
    assert history.epoch == [] and all(np.array_equal(w, before[k]) for k, w in model.get_weights().items())


def test_bad_validation_labels_are_named_as_validation_data_1(digits):
    (x, y), (xt, yt) = digits
    with pytest.raises(DataError, match=r"validation_data\[1\] must hold labels in \[0, 9\]; got values from 3 to 12"):
        small().fit(x, y, loss=Recorded(), optimizer=nnx.SGD(0.1), epochs=1, validation_data=(xt, yt + 3))


@pytest.mark.parametrize(
    "nan_at, every, steps, reported",
    [(3, None, 8, "by step 3 (checked every 1 steps)"), (3, 2, 8, "by step 4 (checked every 2 steps)"),
     (7, 10, 8, "by step 8 (checked every 10 steps)")],
)  # fmt: skip
def test_divergence_is_reported_at_the_first_checked_step_every_step_on_the_cpu(digits, nan_at, every, steps, reported):
    """The last step of an epoch is always checked."""
    (x, y), _ = digits
    model = small()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overflow on the way to NaN is expected, and silenced
        with pytest.raises(
            TrainingDiverged, match=rf"in epoch 1 {re_escape(reported)}.*or the inputs are badly scaled$"
        ):
            model.fit(x[: steps * 10], y[: steps * 10], loss=Recorded(nan_at), optimizer=nnx.SGD(0.1), epochs=1,
                      batch_size=10, check_every=every)  # fmt: skip


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_a_backend_whose_reads_stall_the_device_is_checked_every_50_steps(digits):
    (x, y), _ = digits

    class Remote(NumpyBackend):
        host_reads_are_free = False

    model = small(backend=Remote(None))
    with pytest.raises(TrainingDiverged, match=r"by step 50 \(checked every 50 steps\)"):
        model.fit(x[:600], y[:600], loss=Recorded(1), optimizer=nnx.SGD(0.1), epochs=1, batch_size=10)


def test_evaluate_in_batches_equals_one_batch_and_counts_every_row(digits):
    (x, y), (xt, yt) = digits
    model = small()
    model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2)
    whole, batched = model.evaluate(xt, yt), model.evaluate(xt, yt, batch_size=50)
    assert batched["loss"] == pytest.approx(whole["loss"], rel=1e-6)
    assert batched["accuracy"] == whole["accuracy"] == (model.predict_classes(xt) == yt).mean()
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1; got 0"):
        model.evaluate(xt, yt, batch_size=0)


def test_softmax_backward_is_the_closed_form_even_over_a_used_buffer(rng):
    layer = nnx.Softmax()
    layer.build(nnx.Sequential(nnx.Dense(2, 2), backend="numpy").backend, np.float64, rng)
    z = rng.standard_normal((5, 4))
    y = layer.forward(z).copy()
    for _ in range(2):  # the second call finds the first one's numbers in the buffers
        g = rng.standard_normal((5, 4))
        expected = y * (g - (g * y).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12)


def test_dropout_keeps_the_dtype_is_seeded_by_the_model_and_passes_gradients_through_outside_training(rng):
    def forward(seed):
        model = nnx.Sequential(nnx.Dense(4, 256), nnx.Dropout(0.5), backend="numpy", seed=seed)
        model.train(True)
        return model.forward(np.ones((8, 4), np.float32)).copy()

    out = forward(3)
    assert out.dtype == np.float32 and np.array_equal(out, forward(3)) and not np.array_equal(out, forward(4))
    layer = nnx.Dropout(0.5)
    layer.build(nnx.Sequential(nnx.Dense(2, 2), backend="numpy").backend, np.float32, rng)
    x = np.ones((3, 4), np.float32)
    assert layer.forward(x) is x and layer.backward(x) is x  # not training: the identity, both ways


def test_layers_print_as_their_constructor_calls():
    assert repr(nnx.Dense(3, 2)) == "Dense(in_features=3, out_features=2)"
    assert repr(nnx.Dropout(0.25)) == "Dropout(p=0.25)" and repr(nnx.ReLU()) == "ReLU()"


def test_adamw_is_adam_with_decoupled_weight_decay_0_01_and_passes_the_rest_through():
    assert nnx.AdamW().config() == nnx.Adam(lr=1e-3, weight_decay=0.01).config()
    custom = nnx.AdamW(2e-3, weight_decay=0.1, beta1=0.5, beta2=0.9, eps=1e-6, clip_norm=1.0)
    assert custom.config() == nnx.Adam(2e-3, 0.5, 0.9, 1e-6, weight_decay=0.1, clip_norm=1.0).config()


def test_a_loss_called_directly_returns_a_float_and_the_gradient_on_the_outputs_backend(rng):
    z, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    value, grad = nnx.SparseCategoricalCrossentropy()(z, y)
    expected = nnx.SparseCategoricalCrossentropy()(z, y, backend=NumpyBackend(None))
    assert type(value) is float and value == pytest.approx(expected[0], rel=1e-12)
    assert type(grad) is np.ndarray and grad.shape == (6, 4)
    np.testing.assert_allclose(grad, expected[1], rtol=1e-12)
    assert repr(nnx.SparseCategoricalCrossentropy()) == "SparseCategoricalCrossentropy()"


def test_training_fit_called_directly_has_the_documented_defaults(digits, capsys):
    """nnx.training.fit (what Sequential.fit calls): batches of 32, shuffled, from epoch 0, silent."""
    from nnx.training import fit

    (x, y), _ = digits
    loss, model = Recorded(), small()
    history = fit(model, x[:100], y[:100], loss=loss, optimizer=nnx.SGD(0.1), epochs=1)
    assert [b[0] for b in loss.batches] == [32, 32, 32, 4] and history.epoch == [1]
    in_order = Recorded()
    fit(small(), x[:100], y[:100], loss=in_order, optimizer=nnx.SGD(0.1), epochs=1, shuffle=False)
    assert loss.batches[0][1] != pytest.approx(in_order.batches[0][1])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "when, message", [("in_epoch", "interrupted during epoch 2;"), ("at_end", "interrupted after epoch 2$")]
)
def test_ctrl_c_says_which_epoch_it_stopped_in_or_after(digits, when, message):
    (x, y), _ = digits

    class CtrlC(nnx.Callback):
        def on_progress(self, epoch, seen, logs):
            if when == "in_epoch" and epoch == 1 and seen >= 64:
                os.kill(os.getpid(), signal.SIGINT)

        def on_epoch_end(self, epoch, logs):
            if when == "at_end" and epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(nnx.errors.TrainingInterrupted, match=message) as info:
        small().fit(x, y, loss=Recorded(), optimizer=nnx.SGD(0.1), epochs=4, batch_size=32, callbacks=[CtrlC()])
    assert info.value.history.epoch == ([1] if when == "in_epoch" else [1, 2])


def test_on_progress_reaches_a_callback_that_overrides_it_or_sets_it(digits):
    (x, y), _ = digits
    seen: list[int] = []

    class Override(nnx.Callback):
        def on_progress(self, epoch, seen_rows, logs):
            seen.append(seen_rows)

    assigned = nnx.Callback()
    assigned.on_progress = lambda epoch, seen_rows, logs: seen.append(-seen_rows)
    small().fit(x[:96], y[:96], loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=1,
                batch_size=32, callbacks=[Override(), assigned])  # fmt: skip
    assert seen == [32, -32, 64, -64, 96, -96]


def test_optimizer_state_round_trips_and_a_restored_optimizer_continues_identically(digits):
    (x, y), _ = digits
    kwargs = dict(loss=nnx.SparseCategoricalCrossentropy(), batch_size=128)
    model, opt = small(), nnx.Adam(1e-3)
    model.fit(x, y, optimizer=opt, epochs=1, **kwargs)
    copy, restored = small(), nnx.Adam(1e-3)
    copy.set_weights(model.get_weights())
    restored.load_state(copy.backend, {k: np.array(v) for k, v in opt.state_arrays().items()}, opt.t)
    assert restored.t == opt.t > 0 and set(restored.state_arrays()) == set(opt.state_arrays())
    assert set(opt.state_arrays()) == {f"{n}.{s}" for n, _, _ in model.named_parameters() for s in ("m", "v")}
    model.fit(x, y, optimizer=opt, epochs=2, initial_epoch=1, **kwargs)
    copy.fit(x, y, optimizer=restored, epochs=2, initial_epoch=1, **kwargs)
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(copy.get_weights()[name], w)


def test_optimizers_describe_themselves_by_their_settings():
    assert repr(nnx.SGD(0.1, momentum=0.9, nesterov=True)) == (
        "SGD(lr=0.1, weight_decay=0.0, clip_norm=None, momentum=0.9, nesterov=True)"
    )
    assert nnx.Adam(2e-3, clip_norm=1.0).config() == {
        "lr": 2e-3, "weight_decay": 0.0, "clip_norm": 1.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
    }  # fmt: skip


def test_the_loss_base_class_says_what_a_subclass_must_provide():
    loss = nnx.Loss()
    with pytest.raises(NotImplementedError):
        loss.compute(None, np.zeros((1, 1)), np.zeros(1))
    with pytest.raises(NotImplementedError):
        loss.check_targets(np.zeros(1), (1, 1))
    assert repr(loss) == "Loss()" and loss.task == "regression" and loss.metric is None and not loss.takes_logits


def test_a_real_divergence_overflows_silently_into_training_diverged(digits):
    (x, y), _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the overflow on the way
        warnings.simplefilter("ignore", nnx.UnscaledInputWarning)
        with pytest.raises(TrainingDiverged):
            small().fit(x * 1e6, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(1e12), epochs=2)


def test_a_checked_step_leaves_the_model_in_inference_mode(rng):
    model = nnx.Sequential(nnx.Dense(4, 8), nnx.Dropout(0.5), nnx.Dense(8, 2), backend="numpy", seed=0)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 2, 6)
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1))
    assert not any(layer.training for layer in model.layers)
    x = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(model.predict(x), model.predict(x))  # dropout is off


def test_a_step_on_a_nan_loss_is_refused_when_checked_and_taken_when_not(rng):
    model = nnx.Sequential(nnx.Dense(4, 2), backend="numpy", dtype="float64", seed=0)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 2, 6)
    model.set_weights({"layers.0.W": np.full((4, 2), 1e308), "layers.0.b": np.zeros(2)})  # logits of ±inf
    before = model.get_weights()
    with (
        np.errstate(all="ignore"),
        pytest.raises(TrainingDiverged, match=r"^the loss is nan; the step was not applied \(lower the learning"),
    ):
        model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1))
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, before[name])
    be = model.backend
    with np.errstate(all="ignore"):
        value, _ = nnx.train_step(model, be.asarray(x), be.asarray(y), nnx.SparseCategoricalCrossentropy(), nnx.SGD(1))
    assert math.isnan(float(value))  # nnx.train_step is the unchecked step: the caller checks
