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
    """param -= lr·a·b, with a as a transposed view (as Dense passes xᵀ) and as a plain array."""
    out = []
    for what, transposed in (("aᵀ view", True), ("a", False)):
        a = rng.standard_normal((7, 5)).astype(dtype)
        a = np.ascontiguousarray(a.T).T if transposed else a  # same values, column-major memory
        b, p = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
        pd = be.asarray(p.copy())
        be.sgd_matmul_update(pd, be.asarray(a), be.asarray(b), 0.3, be.empty(p.shape, dtype))
        out.append((what, pd, reference.sgd_matmul_update(*f64(p, a, b), 0.3)))
    return out


@case("momentum steps")
def _(be, rng, dtype):
    n = 300
    p, g, v = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    out = []
    for nesterov in (False, True):
        pd, vd = be.asarray(p.copy()), be.asarray(v.copy())
        be.momentum_update(pd, be.asarray(g), vd, MomentumStep(0.1, 0.9, nesterov, 0.999, False), be.empty((n,), dtype))
        ref_p, ref_v = reference.momentum_update(*f64(p, g, v), 0.1, 0.9, nesterov, 0.999)
        out += [(f"p, nesterov={nesterov}", pd, ref_p), (f"v, nesterov={nesterov}", vd, ref_v)]
    return out


@case("Adam step")
def _(be, rng, dtype):
    n = 300
    p, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(dtype)
    pd, md, vd = (be.asarray(a.copy()) for a in (p, m, v))
    be.adam_update(pd, be.asarray(g), md, vd, AdamStep(1e-3, 0.9, 0.999, 1e-8, 0.999, False), be.empty((n,), dtype))
    ref_p, ref_m, ref_v = reference.adam_update(*f64(p, g, m, v), 1e-3, 0.9, 0.999, 1e-8, 0.999)
    return [("p", pd, ref_p), ("m", md, ref_m), ("v", vd, ref_v)]


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
