"""NumPy ↔ CuPy parity of the fused loss over random shapes (hypothesis): N from 1, C from 2 to 131,072,
contiguous and transposed (non-contiguous) logits. Needs a GPU; skips with the reason otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import CUPY_MISSING
from tests.test_parity import check_loss

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(CUPY_MISSING is not None, reason=f"no GPU backend: {CUPY_MISSING}"),
]


@pytest.fixture(scope="module")
def gpu():
    from backends import get_backend

    return get_backend("cupy")


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    n=st.integers(1, 64),
    c=st.sampled_from([2, 3, 10, 33, 1000, 4097, 131072]),
    transposed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fused_loss_parity_over_random_shapes(gpu, n, c, transposed, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((c, n) if transposed else (n, c)) * 4).astype(np.float32)
    z_device = gpu.asarray(z).T if transposed else None  # a non-contiguous view on the device
    z = z.T if transposed else z
    check_loss(gpu, np.ascontiguousarray(z), rng.integers(0, c, n), z_device)
