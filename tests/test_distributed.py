"""Data-parallel training on 2 MPI ranks (mpiexec): the same result as one process, uneven and
empty shares, the global numbers on every rank, faults that end the whole job, divergence seen by
every rank, drift detected, the command line, and resuming with another number of ranks."""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")
MPIEXEC = shutil.which("mpiexec") or str(Path(sys.executable).parent / "mpiexec")
pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(
        not Path(MPIEXEC).exists(), reason="no mpiexec for the 2-rank tests: pip install -e '.[test,mpi]'"
    ),
]
ROOT = Path(__file__).resolve().parents[1]


def mpirun(ranks: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MPIEXEC, "-n", str(ranks), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def single_process(batch_size: int, optimizer: str = "sgd"):
    from tests.mpi_jobs import digits_run

    return digits_run(None, batch_size, optimizer=optimizer)


@pytest.mark.parametrize(
    "batch_size",
    [64, 65, 479],  # shares 32/32; 33/32 (uneven); and an epoch whose last batch of 1 row leaves a rank empty
)
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "decay"])  # weights, gradients, weights all-reduced
def test_two_ranks_reproduce_one_process_and_report_the_global_numbers(tmp_path, batch_size, optimizer):
    job = f"equal-{batch_size}-{optimizer}"
    result = mpirun(2, sys.executable, "-m", "tests.mpi_jobs", job, str(tmp_path))
    assert result.returncode == 0, result.stderr
    model, history = single_process(batch_size, optimizer)
    ranks = [np.load(tmp_path / f"{job}-2-rank{r}.npz") for r in (0, 1)]
    for name, w in model.get_weights().items():
        np.testing.assert_allclose(ranks[0][name], w, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name])  # identical on every rank
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(ranks[0][key], getattr(history, key), rtol=1e-6)
        np.testing.assert_array_equal(ranks[1][key], ranks[0][key])
    assert math.ceil(1438 / batch_size) * batch_size >= 1438


def test_an_exception_on_one_rank_ends_the_whole_job_quickly(tmp_path):
    result = mpirun(2, sys.executable, "-m", "mpi4py", "-m", "tests.mpi_jobs", "fail", str(tmp_path), timeout=60)
    assert result.returncode != 0 and "rank 1 fails on purpose" in result.stderr


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    result = mpirun(2, sys.executable, "-m", "mpi4py", "-m", "tests.mpi_jobs", "interrupt", str(tmp_path), timeout=60)
    assert result.returncode == 0, result.stderr
    ranks = [np.load(tmp_path / f"interrupt-2-rank{r}.npz") for r in (0, 1)]
    for rank in ranks:  # rank 0 never saw a signal, yet stopped in the same step of epoch 2
        assert int(rank["epochs"]) == 1 and "interrupted during epoch 2" in str(rank["message"])
    for name in ranks[0].files:
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name])
    model, _ = single_process(64)  # three full epochs: the interrupted ranks stopped short of them
    assert not np.allclose(ranks[0]["layers.0.W"], model.get_weights()["layers.0.W"])


def test_a_nan_on_one_rank_stops_every_rank_with_training_diverged(tmp_path):
    result = mpirun(2, sys.executable, "-m", "tests.mpi_jobs", "diverge", str(tmp_path))
    assert result.returncode == 0, result.stderr
    messages = [(tmp_path / f"diverge-rank{r}.txt").read_text() for r in (0, 1)]
    assert messages[0] == messages[1] and "NaN or Inf in epoch 1 by step" in messages[0]  # the same step
    ranks = [np.load(tmp_path / f"diverge-2-rank{r}.npz") for r in (0, 1)]  # the epoch's start, restored
    for name in ranks[0].files:
        assert np.isfinite(ranks[0][name]).all()
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name])


def test_weights_that_drift_apart_are_detected_on_every_rank(tmp_path):
    result = mpirun(2, sys.executable, "-m", "tests.mpi_jobs", "drift", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for r in (0, 1):
        assert "the ranks' weights differ" in (tmp_path / f"drift-rank{r}.txt").read_text()


FLAGS = [
    "--dataset",
    "digits",
    "--hidden",
    "64,64",
    "--batch-size",
    "64",
    "--optimizer",
    "sgd",
    "--lr",
    "0.1",
    "--dtype",
    "float64",
    "--seed",
    "0",
]


def nnx_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nnx", "train", *FLAGS, *args]


def test_the_command_line_on_two_ranks_equals_one_process_and_prints_once(tmp_path):
    one = subprocess.run(nnx_command("--epochs", "3", "--out", str(tmp_path / "a.safetensors")), cwd=ROOT,
                         capture_output=True, text=True, check=True)  # fmt: skip
    two = mpirun(2, *nnx_command("--epochs", "3", "--distributed", "--out", str(tmp_path / "b.safetensors")))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("test accuracy") == 1 and two.stdout.count("epoch 3/3") == 1
    result = next(line for line in one.stdout.splitlines() if line.startswith("test loss")).split("(")[0]
    assert result in two.stdout and "× 2 ranks" in two.stdout
    a, b = nnx.load(tmp_path / "a.safetensors").get_weights(), nnx.load(tmp_path / "b.safetensors").get_weights()
    for name, w in a.items():
        np.testing.assert_allclose(b[name], w, rtol=1e-9, atol=1e-12)


def test_a_checkpoint_of_two_ranks_resumes_on_one_and_equals_an_uninterrupted_run(tmp_path):
    ckpt = tmp_path / "ckpt"
    two = mpirun(2, *nnx_command("--epochs", "2", "--distributed", "--checkpoint-dir", str(ckpt)))
    assert two.returncode == 0, two.stderr
    again = nnx_command(
        "--epochs", "3", "--checkpoint-dir", str(ckpt), "--resume", "--out", str(tmp_path / "r.safetensors")
    )
    resumed = subprocess.run(again, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    subprocess.run(nnx_command("--epochs", "3", "--out", str(tmp_path / "u.safetensors")), cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    r, u = nnx.load(tmp_path / "r.safetensors").get_weights(), nnx.load(tmp_path / "u.safetensors").get_weights()
    for name, w in u.items():
        np.testing.assert_allclose(r[name], w, rtol=1e-9, atol=1e-12)


def test_shares_cover_the_batch_contiguously_and_differ_by_at_most_one_row():
    from nnx.distributed import DataParallel

    dp = DataParallel()
    for size in (1, 2, 3, 7):
        for lo, hi in ((0, 10), (5, 6), (3, 3), (100, 229)):
            dp.size = size
            shares = []
            for rank in range(size):
                dp.rank = rank
                shares.append(dp.share(lo, hi))
            assert shares[0][0] == lo and shares[-1][1] == hi
            assert all(a[1] == b[0] for a, b in itertools.pairwise(shares))
            sizes = [b - a for a, b in shares]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
