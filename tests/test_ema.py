"""Weight averaging (an optimizer's ``ema``): the averages follow their formula step by step with
every optimizer, validation uses them, the model holds them when fit returns, checkpoints keep
them (a resumed run equals an uninterrupted one), and bad decays are refused."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError
from tests.test_cli import resume_matches_uninterrupted


@pytest.fixture(scope="module")
def digits():
    return nnx.datasets.load_digits()


def mlp(backend, dtype="float64"):
    return nnx.Sequential(nnx.Dense(5, 8), nnx.ReLU(), nnx.Dense(8, 3), backend=backend, seed=1, dtype=dtype)


OPTIMIZERS = {
    "sgd": lambda ema: nnx.SGD(0.1, ema=ema),  # plain SGD: the update is folded into a gemm
    "momentum": lambda ema: nnx.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01, ema=ema),
    "adamw": lambda ema: nnx.AdamW(1e-2, ema=ema),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_averages_follow_a_plus_one_minus_beta_t_times_p_minus_a_at_every_step(backend, rng, name):
    """Two identical models take the same steps, one with ema: its weights equal the other's,
    and its averages equal the formula applied in float64 to the other's weights after each step."""
    plain, averaged = mlp(backend), mlp(backend)
    opt_plain, opt_averaged = OPTIMIZERS[name](None), OPTIMIZERS[name](0.9)
    loss = nnx.SparseCategoricalCrossentropy()
    expected = None
    for t in range(1, 31):
        x, y = rng.standard_normal((16, 5)), rng.integers(0, 3, 16)
        plain.train_step(x, y, loss, opt_plain)
        averaged.train_step(x, y, loss, opt_averaged)
        weights = plain.get_weights()
        if expected is None:
            expected = weights  # the average starts at the weights after the first step
        else:
            beta = min(0.9, (1 + t) / (10 + t))
            expected = {k: a + (1 - beta) * (weights[k] - a) for k, a in expected.items()}
    be = averaged.backend
    for k, w in averaged.get_weights().items():
        np.testing.assert_allclose(w, weights[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(be.to_numpy(opt_averaged.state[k]["ema"]), expected[k], rtol=1e-10, atol=1e-13)
        assert not np.allclose(expected[k], w, rtol=1e-3)  # the average is not the weights


def test_fit_validates_with_the_averages_and_leaves_them_in_the_model(digits):
    (x, y), (xt, yt) = digits
    model = nnx.Sequential(nnx.Dense(64, 32), nnx.ReLU(), nnx.Dense(32, 10), backend="numpy", seed=0)
    optimizer = nnx.SGD(0.1, ema=0.99)
    loss = nnx.SparseCategoricalCrossentropy()
    history = model.fit(x, y, loss=loss, optimizer=optimizer, epochs=3, batch_size=32, validation_data=(xt, yt))
    averages = {k: model.backend.to_numpy(v["ema"]).copy() for k, v in optimizer.state.items()}
    for k, w in model.get_weights().items():
        np.testing.assert_array_equal(w, averages[k])
    final = model.evaluate(xt, yt)
    assert history.val_loss[-1] == pytest.approx(final["loss"], rel=1e-9)
    assert history.val_accuracy[-1] == final["accuracy"]


def test_swap_averages_exchanges_weights_and_averages_and_a_second_swap_restores_them(rng):
    model, optimizer = mlp("numpy"), nnx.Adam(1e-2, ema=0.9)
    for _ in range(5):
        model.train_step(rng.standard_normal((8, 5)), rng.integers(0, 3, 8), nnx.SparseCategoricalCrossentropy(),
                         optimizer)  # fmt: skip
    weights = model.get_weights()
    averages = {k: v["ema"].copy() for k, v in optimizer.state.items()}
    optimizer.swap_averages(model)
    for k in weights:
        np.testing.assert_array_equal(model.get_weights()[k], averages[k])
        np.testing.assert_array_equal(optimizer.state[k]["ema"], weights[k])
    optimizer.swap_averages(model)
    for k in weights:
        np.testing.assert_array_equal(model.get_weights()[k], weights[k])


def test_without_ema_nothing_is_averaged_and_fit_is_unchanged(digits):
    (x, y), _ = digits
    model = nnx.Sequential(nnx.Dense(64, 10), backend="numpy")
    optimizer = nnx.Adam(1e-3)
    model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=optimizer, epochs=1)
    assert all("ema" not in slots for slots in optimizer.state.values()) and "ema" not in repr(optimizer)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9"])
def test_a_decay_outside_0_1_is_refused_naming_ema(bad):
    with pytest.raises(ConfigError, match=rf"ema must be None or a decay in \(0, 1\) such as 0.999; got {bad!r}"):
        nnx.AdamW(ema=bad)


def test_a_run_with_ema_resumed_from_its_checkpoint_equals_an_uninterrupted_one(tmp_path):
    common = ["train", "--hidden", "16", "--optimizer", "adam", "--lr", "0.003", "--ema", "0.9", "--quiet"]
    resume_matches_uninterrupted(tmp_path, common, epochs=3, first=1)
    settings = nnx.load(tmp_path / "full.safetensors", backend="numpy").training_info["settings"]
    assert settings["ema"] == 0.9


def test_an_optimizer_with_ema_names_it_in_its_description():
    assert repr(nnx.AdamW(ema=0.99)) == (
        "AdamW(lr=0.001, weight_decay=0.01, clip_norm=None, ema=0.99, beta1=0.9, beta2=0.999, eps=1e-08)"
    )
    assert nnx.SGD(0.1, ema=0.5).config()["ema"] == 0.5
