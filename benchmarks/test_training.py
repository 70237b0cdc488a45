"""The training step of the reference networks, the GEMM floor beside it, and fit throughput."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from benchmarks.common import REFERENCE_STEPS, GemmFloor, NnxStep, mlp
from benchmarks.conftest import synced

IDS = [f"{name}-b{batch}" for name, _, batch in REFERENCE_STEPS]


@pytest.mark.parametrize("widths, batch", [(w, b) for _, w, b in REFERENCE_STEPS], ids=IDS)
def test_train_step(benchmark, backend, widths, batch):
    step = NnxStep(widths, batch, backend)
    benchmark(synced(backend, step))
    # after the timed steps (lr 1e-3): steps at a real learning rate lower the loss of the batch
    step.opt.lr = 0.05
    before = step.model.get_weights()
    first = float(nnx.train_step(step.model, step.x, step.y, step.loss, step.opt)[0])
    for _ in range(4):
        last = float(nnx.train_step(step.model, step.x, step.y, step.loss, step.opt)[0])
    assert np.isfinite(last) and last < first
    assert all(not np.array_equal(w, before[name]) for name, w in step.model.get_weights().items())


@pytest.mark.parametrize("widths, batch", [(w, b) for _, w, b in REFERENCE_STEPS], ids=IDS)
def test_gemm_floor(benchmark, backend, widths, batch):
    floor = GemmFloor(widths, batch, backend)
    benchmark(synced(backend, floor))
    a, b, out = floor.calls[0]
    np.testing.assert_allclose(
        backend.to_numpy(out[:4]), backend.to_numpy(a[:4]) @ backend.to_numpy(b), rtol=1e-3, atol=1e-2
    )


def test_fit_throughput(benchmark, backend):
    """One epoch on Fashion-MNIST-sized random data (12,000 × 784 here, to stay short), batch 128."""
    rng = np.random.default_rng(0)
    n = 12000
    x, y = rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)
    model = mlp([784, 256, 256, 10], backend)

    def epoch():
        return model.fit(
            x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(1e-3), epochs=1, batch_size=128
        )

    history = benchmark.pedantic(epoch, rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.stats:  # absent under --benchmark-disable
        benchmark.extra_info["samples_per_second"] = n / benchmark.stats.stats.median
    assert np.isfinite(history.loss[0])
