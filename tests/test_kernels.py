"""Every backend kernel against its plain reference (backends/reference.py), as one table.

Each case runs the kernel on a backend, in the style of CuPy's ``numpy_cupy_allclose``, and
returns (what, got, expected) triples; one test runs every case on every backend configuration
(NumPy with the compiled kernels and the gemm, without the gemm, NumPy alone, CuPy) in float32
and float64, comparing at the tolerance of the dtype stated once in ``conftest.TOLERANCE``:
relative, and absolute at that fraction of the largest expected value. Results that are exact
by construction (ReLU, gathers, counts) compare exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from backends import reference
from backends.contract import AdamStep, Backend, MomentumStep
from tests.conftest import BACKENDS, TOLERANCE, make_backend

EXACT = "exact"
Case = Callable[..., list[tuple[str, object, np.ndarray]]]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


def f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


@case("matmul, transposed operands")
def _(be, rng, dtype):
    a, b = rng.standard_normal((9, 7)).astype(dtype), rng.standard_normal((9, 5)).astype(dtype)
    out1, out2 = be.empty((7, 5), dtype), be.empty((9, 9), dtype)
    be.matmul(be.asarray(a).T, be.asarray(b), out1)
    be.matmul(be.asarray(a), be.asarray(a).T, out2)
    a64, b64 = f64(a, b)
    return [("aᵀ·b", out1, reference.matmul(a64.T, b64)), ("a·aᵀ", out2, reference.matmul(a64, a64.T))]


@case("bias add, bias + ReLU, ReLU")
def _(be, rng, dtype):
    y, b = rng.standard_normal((33, 70)).astype(dtype), rng.standard_normal(70).astype(dtype)
    added, fused, out = be.asarray(y.copy()), be.asarray(y.copy()), be.empty(y.shape, dtype)
    be.bias_add(added, be.asarray(b))
    be.bias_relu(fused, be.asarray(b))
    be.relu(be.asarray(y), out)
    y64, b64 = f64(y, b)
    return [
        ("bias_add", added, reference.bias_add(y64, b64)),
        ("bias_relu", fused, reference.bias_relu(y64, b64)),
        (EXACT, out, reference.relu(y)),
    ]


@case("ReLU backward, out of place and in place")
def _(be, rng, dtype):
    g, y = rng.standard_normal((33, 70)).astype(dtype), reference.relu(rng.standard_normal((33, 70)).astype(dtype))
    out, mask, in_place = be.empty(g.shape, dtype), be.empty(g.shape, bool), be.asarray(g.copy())
    be.relu_backward(be.asarray(g), be.asarray(y), out, mask)
    be.relu_backward(in_place, be.asarray(y), in_place, mask)
    return [(EXACT, out, reference.relu_backward(g, y)), (EXACT, in_place, reference.relu_backward(g, y))]


@case("row sums")
def _(be, rng, dtype):
    x = rng.standard_normal((257, 33)).astype(dtype)
    out = be.empty((33,), dtype)
    be.sum_rows(be.asarray(x), out)
    return [("sum_rows", out, reference.sum_rows(*f64(x)))]


@case("gather rows and count correct")
def _(be, rng, dtype):
    x, index = rng.standard_normal((9, 4)).astype(dtype), rng.permutation(9)[:5]
    rows, labels = be.empty((5, 4), dtype), be.empty((5,), np.int64)
    be.gather_rows(be.asarray(x), be.asarray(index), rows)
    be.gather_rows(be.asarray(np.arange(9) * 10), be.asarray(index), labels)
    y = rng.integers(0, 4, 9)
    correct = be.count_correct(be.asarray(x), be.asarray(y))
    return [(EXACT, rows, x[index]), (EXACT, labels, index * 10), (EXACT, correct, reference.count_correct(x, y))]


@case("SGD update")
def _(be, rng, dtype):
    p, g = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
    pd, gd, shared = be.asarray(p.copy()), be.asarray(g.copy()), be.asarray(p.copy())
    be.sgd_update(pd, gd, 0.3, be.empty(p.shape, dtype))
    be.sgd_update(shared, be.asarray(g.copy()), 0.3, be.asarray(g.copy()))  # scratch may be the gradient
    expected = reference.sgd_update(*f64(p, g), 0.3)
    return [("p", pd, expected), (EXACT, gd, g), ("p, scratch = g", shared, expected)]


@case("SGD update as a product")
def _(be, rng, dtype):
    """param ← keep·param − lr·a·b, with a as a transposed view (as Dense passes xᵀ) and as a plain
    array; keep = 1 (a step) and 1/3 (a data-parallel rank's part of one)."""
    out = []
    for what, transposed, keep in (("aᵀ view", True, 1.0), ("a", False, 1.0), ("a, keep 1/3", False, 1 / 3)):
        a = rng.standard_normal((7, 5)).astype(dtype)
        a = np.ascontiguousarray(a.T).T if transposed else a  # same values, column-major memory
        b, p = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
        pd = be.asarray(p.copy())
        be.sgd_matmul_update(pd, be.asarray(a), be.asarray(b), 0.3, be.empty(p.shape, dtype), keep)
        out.append((what, pd, reference.sgd_matmul_update(*f64(p, a, b), 0.3, keep)))
    return out


@case("momentum steps")
def _(be, rng, dtype):
    n = 300
    p, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    out = []
    for nesterov, l2 in ((False, 0.0), (True, 0.0), (True, 0.03)):
        pd, vd = be.asarray(p.copy()), be.asarray(v.copy())
        step = MomentumStep(0.1, 0.9, nesterov, 0.999, False, l2)
        be.momentum_update(pd, be.asarray(g.copy()), vd, step, be.empty((n,), dtype))
        ref_p, ref_v = reference.momentum_update(*f64(p, g, v), 0.1, 0.9, nesterov, 0.999, l2)
        out += [(f"p, nesterov={nesterov}, l2={l2}", pd, ref_p), (f"v, nesterov={nesterov}, l2={l2}", vd, ref_v)]
    return out


@case("Adam step")
def _(be, rng, dtype):
    n = 300
    p, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(dtype)
    out = []
    for l2 in (0.0, 0.03):  # with an L2 penalty: g + l2·p in place of g
        pd, md, vd = (be.asarray(a.copy()) for a in (p, m, v))
        step = AdamStep(1e-3, 0.9, 0.999, 1e-8, 0.999, False, l2)
        be.adam_update(pd, be.asarray(g.copy()), md, vd, step, be.empty((n,), dtype))
        ref_p, ref_m, ref_v = reference.adam_update(*f64(p, g, m, v), 1e-3, 0.9, 0.999, 1e-8, 0.999, l2)
        out += [(f"p, l2={l2}", pd, ref_p), (f"m, l2={l2}", md, ref_m), (f"v, l2={l2}", vd, ref_v)]
    return out


def loss_case(n: int, c: int) -> Case:
    def run(be, rng, dtype):
        z, y = (rng.standard_normal((n, c)) * 6).astype(dtype), rng.integers(0, c, n)
        d = be.empty(z.shape, dtype)
        value = be.softmax_cross_entropy(be.asarray(z), be.asarray(y), d)
        ref_value, ref_d = reference.softmax_cross_entropy(z, y)
        return [("loss", value, np.float64(ref_value)), ("dlogits", d, ref_d)]

    return run


# Row widths where the compiled and CUDA kernels change paths (vector widths, a row cached in
# shared memory or not), a batch of one, and two classes.
for _n, _c in [(1, 2), (37, 1), (37, 7), (37, 63), (37, 64), (256, 1000), (3, 4097), (2, 131072)]:
    case(f"fused loss N={_n} C={_c}")(loss_case(_n, _c))


@pytest.fixture(params=[*BACKENDS, pytest.param("contract", id="contract")])
def kernel_backend(request):
    """Every backend configuration, and the contract itself on NumPy (the code CuPy inherits)."""
    return Backend() if request.param == "contract" else make_backend(request.param)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", CASES)
def test_kernel_matches_its_reference(kernel_backend, rng, dtype, name):
    backend = kernel_backend
    for what, got, expected in CASES[name](backend, rng, dtype):
        got = backend.to_numpy(got)
        if what == EXACT:
            np.testing.assert_array_equal(got, expected)
            continue
        if got.ndim:  # arrays stay in their dtype (a loss scalar may be accumulated in float64)
            assert got.dtype == np.dtype(dtype), f"{what}: computed in {got.dtype}, not {dtype}"
        tol = TOLERANCE[dtype]
        scale = float(np.abs(expected).max()) if np.size(expected) else 1.0
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale, err_msg=f"{name}: {what}")


# ---- the kernels of the activations, LayerNorm and the regression and binary losses ----------


@case("erfc, both signs and the upper tail")
def _(be, rng, dtype):
    x = np.concatenate([rng.uniform(-6, 6, 200), rng.uniform(5, 26, 40), [0.0, -0.0, 1e-9]]).astype(dtype)
    out = be.empty(x.shape, dtype)
    be.erfc(be.asarray(x), out)
    expected = reference.erfc(*f64(x))
    if dtype == "float32":
        return [("erfc", out, expected)]
    normal = expected > 1e-290  # in float64, relatively accurate wherever erfc is a normal float (erfc(26) ≈ 6e-296)
    ratio = be.to_numpy(out)[normal] / expected[normal]
    return [("erfc", out, expected), ("erfc / reference", ratio, np.ones_like(ratio))]


@case("GELU and its backward, exact and tanh")
def _(be, rng, dtype):
    x, g = (rng.standard_normal((37, 65)) * 3).astype(dtype), rng.standard_normal((37, 65)).astype(dtype)
    out = []
    for approximate in ("none", "tanh"):
        y, keep, dx = (be.empty(x.shape, dtype) for _ in range(3))
        be.gelu(be.asarray(x), y, keep, approximate)
        be.gelu_backward(be.asarray(g), be.asarray(x), keep, dx, approximate)
        x64, g64 = f64(x, g)
        out += [
            (f"gelu {approximate}", y, reference.gelu(x64, approximate)),
            (f"gelu_backward {approximate}", dx, reference.gelu_backward(g64, x64, approximate)),
        ]
    return out


@case("sigmoid, large |x| included")
def _(be, rng, dtype):
    x = np.concatenate([rng.standard_normal(300) * 8, [0.0, 80.0, -80.0, 1e3, -1e3]]).astype(dtype)
    out = be.empty(x.shape, dtype)
    be.sigmoid(be.asarray(x), out)
    return [("sigmoid", out, reference.sigmoid(*f64(x)))]


@case("LayerNorm forward and backward")
def _(be, rng, dtype):
    n, f = 33, 70
    x = (rng.standard_normal((n, f)) * 3 + 2).astype(dtype)
    gamma, beta, g = (
        rng.standard_normal(f).astype(dtype),
        rng.standard_normal(f).astype(dtype),
        rng.standard_normal(x.shape),
    )
    g = g.astype(dtype)
    y, xhat, dx, work = (be.empty(x.shape, dtype) for _ in range(4))
    rstd, rows, dgamma, dbeta = (
        be.empty((n,), dtype),
        be.empty((2, n), dtype),
        be.empty((f,), dtype),
        be.empty((f,), dtype),
    )
    be.layer_norm(be.asarray(x), be.asarray(gamma), be.asarray(beta), 1e-5, y, xhat, rstd)
    be.layer_norm_backward(be.asarray(g), xhat, rstd, be.asarray(gamma), dx, dgamma, dbeta, work, rows)
    x64, gamma64, beta64, g64 = f64(x, gamma, beta, g)
    ref_dx, ref_dgamma, ref_dbeta = reference.layer_norm_backward(g64, x64, gamma64, 1e-5)
    return [
        ("y", y, reference.layer_norm(x64, gamma64, beta64, 1e-5)),
        ("dx", dx, ref_dx),
        ("dgamma", dgamma, ref_dgamma),
        ("dbeta", dbeta, ref_dbeta),
    ]


@case("mean squared error and binary cross-entropy on logits")
def _(be, rng, dtype):
    z, t = (rng.standard_normal((37, 3)) * 6).astype(dtype), rng.uniform(0, 1, (37, 3)).astype(dtype)
    grad_mse, grad_bce, scratch = (be.empty(z.shape, dtype) for _ in range(3))
    mse = be.mean_squared_error(be.asarray(z), be.asarray(t), grad_mse)
    bce = be.binary_cross_entropy(be.asarray(z), be.asarray(t), grad_bce, scratch)
    ref_mse, ref_grad_mse = reference.mean_squared_error(*f64(z, t))
    ref_bce, ref_grad_bce = reference.binary_cross_entropy(*f64(z, t))
    return [
        ("mse", mse, np.float64(ref_mse)),
        ("mse grad", grad_mse, ref_grad_mse),
        ("bce", bce, np.float64(ref_bce)),
        ("bce grad", grad_bce, ref_grad_bce),
    ]


def smoothed_loss_case(n: int, c: int, smoothing: float) -> Case:
    def run(be, rng, dtype):
        z, y = (rng.standard_normal((n, c)) * 6).astype(dtype), rng.integers(0, c, n)
        d = be.empty(z.shape, dtype)
        value = be.softmax_cross_entropy_smoothed(be.asarray(z), be.asarray(y), d, smoothing)
        ref_value, ref_d = reference.softmax_cross_entropy_smoothed(z, y, smoothing)
        return [("loss", value, np.float64(ref_value)), ("dlogits", d, ref_d)]

    return run


for _n, _c, _eps in [(1, 2, 0.1), (37, 1, 0.2), (37, 64, 0.1), (256, 1000, 0.05), (3, 4097, 1.0)]:
    case(f"fused loss with label smoothing {_eps}, N={_n} C={_c}")(smoothed_loss_case(_n, _c, _eps))
