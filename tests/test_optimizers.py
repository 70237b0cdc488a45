"""Optimizers and schedules: known answers against hand-written updates."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
from backends import get_backend
from nnx.errors import ConfigError


class OneParam:
    """A stand-in model of one layer with one parameter, "model.w", for optimizer tests."""

    build_id = 0

    def __init__(self, backend, p, g):
        self.backend = backend
        self.params, self.grads = {"w": backend.asarray(p.copy())}, {"w": backend.asarray(g.copy())}
        self.p, self.g = self.params["w"], self.grads["w"]

    def grad_factors(self):
        return {}

    def named_layers(self):
        yield "model", self

    def named_parameters(self):
        yield "model.w", self.p, self.g

    def set_grad(self, g):
        self.backend.copy_into(self.g, self.backend.asarray(g))


def run(optimizer, backend, p0, grads):
    """Steps as the training step takes them: the gradient hooks, then the update."""
    model = OneParam(backend, p0, grads[0])
    for g in grads:
        model.set_grad(g)
        for hook in optimizer.gradient_hooks:
            hook(model)
        optimizer.step(model)
    return backend.to_numpy(model.p)


@pytest.fixture
def problem(rng):
    return rng.standard_normal((4, 3)), [rng.standard_normal((4, 3)) for _ in range(5)]


def test_sgd_is_w_minus_lr_dw(backend, problem):
    p, grads = problem
    expected = p - 0.1 * sum(grads)
    np.testing.assert_allclose(run(nnx.SGD(0.1), backend, p, grads), expected, rtol=1e-12)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_and_nesterov_follow_their_recurrences(backend, problem, nesterov):
    p, grads = problem
    w, v = p.copy(), np.zeros_like(p)
    for g in grads:
        v = 0.9 * v + g
        w = w - 0.05 * ((g + 0.9 * v) if nesterov else v)
    got = run(nnx.SGD(0.05, momentum=0.9, nesterov=nesterov), backend, p, grads)
    np.testing.assert_allclose(got, w, rtol=1e-12)


def test_decoupled_weight_decay_shrinks_the_weights_before_the_step(backend, problem):
    p, grads = problem
    w = p.copy()
    for g in grads:
        w = w * (1 - 0.1 * 0.01) - 0.1 * g
    np.testing.assert_allclose(run(nnx.SGD(0.1, weight_decay=0.01), backend, p, grads), w, rtol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_matches_the_textbook_update(backend, problem, weight_decay):
    p, grads = problem
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    w, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        w = w * (1 - lr * weight_decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    got = run(nnx.Adam(lr, b1, b2, eps, weight_decay=weight_decay), backend, p, grads)
    np.testing.assert_allclose(got, w, rtol=1e-10)
    assert nnx.AdamW().weight_decay == 0.01


def test_clip_norm_scales_the_gradient_to_the_bound(backend):
    p, g = np.zeros(4), np.array([3.0, 4.0, 0.0, 0.0])  # norm 5
    np.testing.assert_allclose(run(nnx.SGD(1.0, clip_norm=1.0), backend, p, [g]), -g / 5, rtol=1e-9)
    np.testing.assert_allclose(run(nnx.SGD(1.0, clip_norm=10.0), backend, p, [g]), -g, rtol=1e-12)


def test_schedules_give_their_known_factors():
    cos = nnx.Cosine(warmup=0.1)
    assert [round(cos.factor(s, 100, 10), 6) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert cos.factor(10, 100, 10) == pytest.approx(1.0)
    assert cos.factor(55, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert cos.factor(99, 100, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    step = nnx.StepDecay(every_epochs=2, gamma=0.5)
    assert [step.factor(s, 60, 10) for s in (0, 19, 20, 40)] == [1.0, 1.0, 0.5, 0.25]
    assert nnx.Schedule().factor(5, 10, 1) == 1.0


def test_fit_applies_the_schedule_to_the_optimizer():
    (x, y), _ = nnx.datasets.load_digits()
    model = nnx.Sequential(nnx.Dense(64, 10), backend="numpy")
    opt = nnx.SGD(0.2)
    history = model.fit(
        x,
        y,
        loss=nnx.SparseCategoricalCrossentropy(),
        optimizer=opt,
        epochs=3,
        batch_size=512,
        schedule=nnx.StepDecay(every_epochs=1, gamma=0.5),
    )
    assert history.lr == [0.2, 0.1, 0.05]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnx.SGD(0), "lr must be a finite number > 0; got 0"),
        (lambda: nnx.SGD(-1.0), "lr must be a finite number > 0; got -1.0"),
        (lambda: nnx.SGD(0.1, momentum=1.5), r"momentum must be a number in \[0, 1\); got 1.5"),
        (lambda: nnx.Adam(beta1=-0.5), r"beta1 must be a number in \[0, 1\); got -0.5"),
        (lambda: nnx.Adam(beta2=1.0), r"beta2 must be a number in \[0, 1\); got 1.0"),
        (lambda: nnx.Adam(eps=0.0), "eps must be a finite number > 0; got 0.0"),
        (lambda: nnx.Adam(weight_decay=-0.1), "weight_decay must be a finite number >= 0; got -0.1"),
        (lambda: nnx.SGD(0.1, clip_norm=0.0), "clip_norm must be a finite number > 0; got 0.0"),
        (lambda: nnx.Dense(0, 3), "in_features must be"),
        (lambda: nnx.Dense(3, -1), "out_features must be"),
        (lambda: nnx.Dropout(1.0), r"p must be a number in \[0, 1\); got 1.0"),
        (lambda: nnx.Cosine(warmup=2), r"warmup must be a number in \[0, 1\); got 2"),
    ],
)
def test_bad_settings_raise_config_error_naming_them(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_sgd_defaults_to_plain_descent_at_lr_0_01_and_keeps_no_state():
    expected = {"lr": 0.01, "weight_decay": 0.0, "clip_norm": None, "momentum": 0.0, "nesterov": False}
    assert nnx.SGD().config() == expected
    model = nnx.Sequential(nnx.Dense(3, 2), backend="numpy", seed=0)
    optimizer = nnx.SGD(0.1, weight_decay=0.01)  # the path through the update rule, not the folded gemm
    model.train_step(np.ones((4, 3)), np.array([0, 1, 0, 1]), nnx.SparseCategoricalCrossentropy(), optimizer)
    assert optimizer.state_arrays() == {}  # no velocity without momentum


def test_adam_defaults_are_the_papers():
    assert nnx.Adam().config() == {
        "lr": 1e-3, "weight_decay": 0.0, "clip_norm": None, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
    }  # fmt: skip


@pytest.mark.parametrize("make", [lambda: nnx.Adam(1e-3), lambda: nnx.SGD(0.1, momentum=0.9)])
def test_state_of_parameters_with_zero_gradient_never_becomes_denormal(backend, make):
    p, g = np.ones(8, np.float32), np.zeros(8, np.float32)
    g[0] = 1.0  # one step of signal, then zeros: the state decays geometrically
    optimizer = make()
    model = OneParam(backend, p, g)
    optimizer.step(model)
    model.set_grad(np.zeros(8, np.float32))
    for _ in range(2000):
        optimizer.step(model)
    tiny = np.finfo(np.float32).tiny
    for state in optimizer.state["model.w"].values():
        s = np.abs(backend.to_numpy(state))
        assert not ((s > 0) & (s < tiny)).any()


@pytest.mark.parametrize(
    "make, folds",
    [
        (lambda: nnx.SGD(0.1), True),
        (lambda: nnx.SGD(0.1, momentum=0.9), False),
        (lambda: nnx.SGD(0.1, weight_decay=0.01), False),
        (lambda: nnx.Adam(1e-3), False),
    ],
    ids=["plain", "momentum", "weight decay", "adam"],
)
def test_only_plain_sgd_applies_gradients_left_as_products(make, folds):
    assert make().folds_products is folds


def test_dropout_drops_half_by_default():
    assert nnx.Dropout().config() == {"p": 0.5}


@pytest.mark.parametrize(
    "make, adds_up",
    [
        (lambda: nnx.SGD(0.1), True),
        (lambda: nnx.SGD(0.1, weight_decay=0.01), True),
        (lambda: nnx.SGD(0.1, momentum=0.9), False),
        (lambda: nnx.SGD(0.1, clip_norm=1.0), False),
        (lambda: nnx.SGD(0.1, ema=0.9), False),
        (lambda: nnx.Adam(1e-3), False),
    ],
    ids=["plain", "weight decay", "momentum", "clipping", "ema", "adam"],
)
def test_only_plain_sgd_takes_partial_steps(make, adds_up):
    optimizer = make()
    assert optimizer.steps_add_up is adds_up
    if not adds_up:
        model = OneParam(get_backend("numpy"), np.ones(3), np.ones(3))
        with pytest.raises(ConfigError, match=r"cannot take a partial step \(keep=0.5\)"):
            optimizer.step(model, keep=0.5)
        assert optimizer.t == 0 and np.array_equal(model.p, np.ones(3))


class HalfWeighted(nnx.SparseCategoricalCrossentropy):
    """The loss of half of a batch, its gradient weighted by ½ (a rank's share, as nnx.distributed does)."""

    def compute(self, backend, outputs, targets):
        value, grad = super().compute(backend, outputs, targets)
        grad *= 0.5
        return value, grad


@pytest.mark.parametrize("weight_decay, l2", [(0.0, 0.0), (0.01, 0.0), (0.0, 0.05)])
def test_partial_steps_on_two_halves_of_a_batch_sum_to_the_step_on_the_whole(rng, weight_decay, l2):
    """What data-parallel ranks do with plain SGD: rank 0's step p − lr·½g_a and the other's part
    −lr·½g_b (keep=0) sum to p − lr·g, g the mean gradient of the whole batch: through Dense's gemm
    (no weight decay) and through the gradients themselves (weight decay, an L2 penalty on the
    first weight; LayerNorm's parameters in every case)."""

    def model():
        layers = [nnx.Dense(5, 8), nnx.LayerNorm(8), nnx.ReLU(), nnx.Dense(8, 3)]
        return nnx.Sequential(*layers, backend="numpy", dtype="float64", seed=1)

    x, y = rng.standard_normal((10, 5)), rng.integers(0, 3, 10)
    whole, optimizer = model(), nnx.SGD(0.2, weight_decay=weight_decay)
    optimizer.l2 = {"layers.0.W": l2} if l2 else {}
    nnx.train_step(whole, x, y, nnx.SparseCategoricalCrossentropy(), optimizer)
    halves = []
    for rows, keep in ((slice(0, 5), 1.0), (slice(5, 10), 0.0)):
        part, optimizer = model(), nnx.SGD(0.2, weight_decay=weight_decay)
        optimizer.l2 = {"layers.0.W": l2} if l2 else {}
        step = lambda m, o=optimizer, k=keep: o.step(m, k)  # noqa: E731
        nnx.train_step(part, x[rows], y[rows], HalfWeighted(), optimizer, update=step)
        halves.append(part.get_weights())
    for name, w in whole.get_weights().items():
        np.testing.assert_allclose(halves[0][name] + halves[1][name], w, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize(
    "make",
    [lambda: nnx.SGD(0.1), lambda: nnx.SGD(0.1, momentum=0.9, nesterov=True), lambda: nnx.Adam(0.01)],
    ids=["sgd", "nesterov", "adam"],
)
def test_an_l2_penalty_steps_as_if_its_gradient_were_added(make, dtype, tol):
    """optimizer.l2 = {name: c}: the step of g + c·p (plain SGD through the gradient, the update
    kernels otherwise), with a penalty small enough that 1 − lr·c rounds to 1 in float32."""
    c = 1e-7

    def model():
        layers = [nnx.Dense(5, 8), nnx.ReLU(), nnx.Dense(8, 3)]
        return nnx.Sequential(*layers, backend="numpy", dtype=dtype, seed=2)

    def add_penalty(m):  # the gradient of (c/2)·‖W‖², written into the gradient
        m.layers[0].grads["W"] += c * m.layers[0].params["W"]

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((12, 5)), rng.integers(0, 3, 12)
    loss = nnx.SparseCategoricalCrossentropy()
    penalised, explicit, unpenalised = model(), model(), model()
    with_l2, with_hook, without = make(), make(), make()
    with_l2.l2 = {"layers.0.W": c}
    with_hook.gradient_hooks.append(add_penalty)
    for _ in range(3):
        for m, optimizer in ((penalised, with_l2), (explicit, with_hook), (unpenalised, without)):
            nnx.train_step(m, x, y, loss, optimizer)
    w, w_explicit, w_without = (m.get_weights()["layers.0.W"] for m in (penalised, explicit, unpenalised))
    np.testing.assert_allclose(w, w_explicit, rtol=tol, atol=tol)
    np.testing.assert_allclose(w - w_without, w_explicit - w_without, rtol=0.01, atol=1e-12)
    assert np.abs(w - w_without).max() > 0  # the penalty moved the weights


def test_an_l2_penalty_on_no_such_parameter_is_refused_before_the_step(rng):
    model = nnx.Sequential(nnx.Dense(4, 3), backend="numpy", seed=0)
    optimizer = nnx.SGD(0.1)
    optimizer.l2 = {"layers.0.W": 1e-3, "layers.1.W": 1e-3}  # layer 1 does not exist
    before = model.get_weights()
    with pytest.raises(ConfigError, match=r"l2 names parameters that the model lacks: \['layers.1.W'\]"):
        nnx.train_step(model, rng.standard_normal((6, 4)), rng.integers(0, 3, 6), nnx.SparseCategoricalCrossentropy(),
                       optimizer)  # fmt: skip
    assert optimizer.t == 0 and all(np.array_equal(w, before[k]) for k, w in model.get_weights().items())


def test_state_replaced_between_steps_is_the_state_the_next_step_updates(rng):
    """The optimizer keeps its views of each parameter's state from step to step; a new ``state``
    dict, or a new array in it, is what the next step reads and writes (load_state, or by hand)."""
    model = nnx.Sequential(nnx.Dense(4, 3), backend="numpy", seed=0)
    optimizer, loss = nnx.Adam(1e-2), nnx.SparseCategoricalCrossentropy()
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 3, 6)
    nnx.train_step(model, x, y, loss, optimizer)
    optimizer.state = {}
    nnx.train_step(model, x, y, loss, optimizer)
    assert sorted(optimizer.state_arrays()) == ["layers.0.W.m", "layers.0.W.v", "layers.0.b.m", "layers.0.b.v"]
    assert all(a.any() for a in optimizer.state_arrays().values())
    fresh = np.zeros_like(optimizer.state["layers.0.W"]["m"])
    optimizer.state["layers.0.W"]["m"] = fresh
    nnx.train_step(model, x, y, loss, optimizer)
    assert optimizer.state["layers.0.W"]["m"] is fresh and fresh.any()
