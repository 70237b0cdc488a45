"""Tests that each guard a behaviour a plausible one-line bug would break unnoticed: the epoch's
bookkeeping in fit, the denormal clamp of the loss, and the IDX loader's label and magic checks."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

import nnx
from nnx.datasets import load_idx, load_idx_folder, save_idx
from nnx.errors import DataFormatError


class RecordingLoss(nnx.Loss):
    """Half squared error whose targets are the row ids of the samples; records each batch's ids."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[np.ndarray] = []

    def compute(self, backend, outputs, targets):
        self.batches.append(backend.to_numpy(targets)[:, 0].round().astype(int).copy())
        grad = self.grad_buffer(backend, outputs)
        grad[...] = 0.0
        return backend.xp.zeros((), np.float64), grad

    def check_targets(self, targets, outputs_shape, name="targets"):
        return np.asarray(targets, np.float64)


def epochs_seen(n: int, batch_size: int, epochs: int, seed: int = 0, shuffle: bool = True) -> list[list[np.ndarray]]:
    x = np.zeros((n, 2), np.float32)
    ids = np.arange(n, dtype=np.float64)[:, None]
    model = nnx.Sequential(nnx.Dense(2, 1), backend="numpy", seed=seed)
    loss = RecordingLoss()
    model.fit(x, ids, loss=loss, optimizer=nnx.SGD(0.1), epochs=epochs, batch_size=batch_size, shuffle=shuffle)
    steps = math.ceil(n / batch_size)
    assert len(loss.batches) == steps * epochs
    return [loss.batches[e * steps : (e + 1) * steps] for e in range(epochs)]


@pytest.mark.parametrize("n, batch_size", [(100, 32), (96, 32), (7, 10), (33, 1)])
def test_each_epoch_takes_ceil_n_over_batch_steps_and_sees_every_row_once(n, batch_size):
    for batches in epochs_seen(n, batch_size, epochs=2):
        assert [len(b) for b in batches] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(n))


def test_each_epoch_has_its_own_order_reproducible_from_the_seed():
    first, second, third = (np.concatenate(b) for b in epochs_seen(50, 8, epochs=3))
    assert not np.array_equal(first, second) and not np.array_equal(second, third)
    again = [np.concatenate(b) for b in epochs_seen(50, 8, epochs=3)]
    np.testing.assert_array_equal(again[1], second)
    other_seed = np.concatenate(epochs_seen(50, 8, epochs=1, seed=1)[0])
    assert not np.array_equal(other_seed, first)
    in_order = np.concatenate(epochs_seen(50, 8, epochs=1, shuffle=False)[0])
    np.testing.assert_array_equal(in_order, np.arange(50))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gap", [90, 720, 1000])
def test_confident_logits_give_no_gradient_within_2_to_the_32_of_the_denormals(cpu_backend, dtype, gap):
    """Probabilities of exp(−gap) would be denormal (float32 from gap ~87, float64 from ~708):
    the loss clamps z − max so that every nonzero |dZ| is at least tiny·2³², and the loss stays right."""
    n, c = 64, 10
    z = np.zeros((n, c), dtype)
    z[:, 0] = gap
    d = cpu_backend.empty((n, c), dtype)
    value = float(cpu_backend.softmax_cross_entropy(z, np.zeros(n, np.int64), d))
    tiny = np.finfo(dtype).tiny
    magnitudes = np.abs(d)
    assert not ((magnitudes > 0) & (magnitudes < tiny * 2**32)).any()
    assert np.isfinite(d).all() and 0 <= value < 1e-20
    assert (d[:, 1:] >= 0).all() and (d[:, 0] <= 0).all()  # the clamped probabilities stay probabilities


def write_labels(path, labels, dtype=np.uint8):
    save_idx(path, np.asarray(labels, dtype))


def test_an_idx_folder_with_a_label_above_9_is_refused(tmp_path, rng):
    for split, n in (("train", 6), ("t10k", 4)):
        save_idx(tmp_path / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_labels(tmp_path / f"{split}-labels-idx1-ubyte", [0, 1, 2, 10, 3, 4][:n])
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte: labels must be 0-9; got 10"):
        load_idx_folder(tmp_path)
    write_labels(tmp_path / "train-labels-idx1-ubyte", [0, 1, 2, 9, 3, 4])
    write_labels(tmp_path / "t10k-labels-idx1-ubyte", [0, 1, 2, 9])
    (_, y), (_, yt) = load_idx_folder(tmp_path)  # 9 is fine
    assert y.max() == yt.max() == 9


@pytest.mark.parametrize("byte", [0x01, 0x08, 0xFF])
@pytest.mark.parametrize("position", [0, 1])
def test_an_idx_file_whose_magic_does_not_start_with_two_zero_bytes_is_refused(tmp_path, byte, position):
    good = bytearray(b"\x00\x00\x08\x01\x00\x00\x00\x03" + bytes([1, 2, 3]))
    path = tmp_path / "labels.idx"
    path.write_bytes(bytes(good))
    np.testing.assert_array_equal(load_idx(path), [1, 2, 3])
    good[position] = byte
    for name, data in (("labels.idx", bytes(good)), ("labels.idx.gz", gzip.compress(bytes(good)))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataFormatError, match=rf"{name}: bad IDX magic number"):
            load_idx(tmp_path / name)
