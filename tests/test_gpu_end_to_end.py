"""The CuPy path end to end: the command line trains on the device, a model moves to it and back,
is saved from it, and fit reads nothing back from the device between its checks. Runs on a GPU,
or on the CuPy stand-in (NNX_FAKE_GPU=1); skips with the reason otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from backends import get_backend
from tests.conftest import requires_gpu
from tests.stand_in import STAND_IN

pytestmark = [pytest.mark.gpu, requires_gpu]
ROOT = Path(__file__).resolve().parents[1]


def nnx_command(*args: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))  # keeps the stand-in's path
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "nnx", *args], capture_output=True, text=True, env=env, timeout=300)


def test_the_backend_and_nnx_info_name_the_device():
    device = get_backend("cupy").device
    info = json.loads(nnx_command("info").stdout)
    assert "cupy" in info["backends"] and any(device.endswith(name) for name in info["devices"])
    if STAND_IN:
        assert "stand-in" in device and "stand.in" in info["cupy"]


def test_nnx_train_on_cupy_learns_the_digits_and_saves_a_model_numpy_loads(tmp_path):
    out = tmp_path / "digits.safetensors"
    result = nnx_command("train", "--backend", "cupy", "--epochs", "8", "--out", str(out))
    assert result.returncode == 0, result.stderr
    accuracy = float(result.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy > 0.9, result.stdout
    (_, _), (xt, yt) = nnx.datasets.load_digits()
    assert nnx.load(out, backend="numpy").evaluate(xt, yt)["accuracy"] == pytest.approx(accuracy, abs=1e-4)


def small_model(backend: str) -> nnx.Sequential:
    return nnx.Sequential(nnx.Dense(64, 32), nnx.ReLU(), nnx.Dense(32, 10), backend=backend, seed=3)


def test_a_model_moves_to_the_device_and_back_and_saves_from_it(tmp_path):
    (x, y), (xt, _) = nnx.datasets.load_digits()
    model = small_model("numpy")
    before = model.predict(xt)
    model.to("cupy")
    assert model.backend.name == "cupy"
    # float32 through two layers of at most 64 terms: the device's sums in another order, a few ulp
    np.testing.assert_allclose(model.predict(xt), before, rtol=1e-5, atol=1e-7)
    model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2, batch_size=64)
    trained = model.predict(xt)
    nnx.save(model, tmp_path / "m.safetensors")  # the weights live on the device
    np.testing.assert_array_equal(
        nnx.load(tmp_path / "m.safetensors", backend="numpy").predict(xt), model.to("numpy").predict(xt)
    )
    np.testing.assert_allclose(model.predict(xt), trained, rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(not STAND_IN, reason="counts host synchronisations: the CuPy stand-in (NNX_FAKE_GPU=1)")
@pytest.mark.parametrize("check_every", [5, 7])
def test_fit_reads_the_device_only_every_check_every_steps(monkeypatch, check_every):
    """In epochs of 22 steps, the host waits for the device only at the checked steps (for the
    loss's finiteness) and between epochs (their logs), never inside an epoch's other steps."""
    import cupy

    from nnx import training

    syncs = cupy._stand_in.host_syncs
    spans: list[tuple[int, int]] = []  # the count of host syncs before and after each step
    step = training.train_step

    def counted(*args, **kwargs):
        before = sum(syncs.values())
        result = step(*args, **kwargs)
        spans.append((before, sum(syncs.values())))
        return result

    monkeypatch.setattr(training, "train_step", counted)
    (x, y), _ = nnx.datasets.load_digits()
    model = small_model("cupy")
    steps = 1408 // 64
    model.fit(x[:1408], y[:1408], loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1, momentum=0.9),
              epochs=2, batch_size=64, check_every=check_every, verbose=0)  # fmt: skip
    assert len(spans) == 2 * steps
    within = [after - before for before, after in spans]
    checked = [(s % steps + 1) % check_every == 0 or s % steps == steps - 1 for s in range(2 * steps)]
    assert within == [int(c) for c in checked]  # one float() of the loss at a checked step, else none
    between = [spans[s + 1][0] - spans[s][1] for s in range(2 * steps - 1) if s != steps - 1]
    assert between == [0] * len(between)  # nothing between two steps of an epoch
