"""Data sets: the embedded digits, IDX files (round trips and every malformed case), Fashion-MNIST."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.datasets import load_idx, save_idx
from nnx.errors import DataFormatError, DatasetNotFound, DTypeError

FASHION = Path("/usr/share/datasets/fashion-mnist")
requires_fashion = pytest.mark.skipif(
    not (FASHION / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)


def test_digits_are_a_fixed_stratified_split_of_the_1797_images():
    (x, y), (xt, yt) = nnx.datasets.load_digits()
    assert x.shape == (1438, 64) and xt.shape == (359, 64)
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0 and x.max() == 1 and xt.max() == 1
    train_share = np.bincount(y) / np.bincount(np.concatenate([y, yt]))
    np.testing.assert_allclose(train_share, 0.8, atol=0.01)
    (x2, _), _ = nnx.datasets.load_digits()
    np.testing.assert_array_equal(x, x2)


def test_a_validation_split_is_stratified_and_disjoint():
    (x, y), (xv, yv), (xt, _) = nnx.datasets.load_digits(validation=0.2)
    assert len(x) + len(xv) == 1438 and len(xt) == 359
    np.testing.assert_allclose(np.bincount(yv) / (np.bincount(y) + np.bincount(yv)), 0.2, atol=0.02)
    rows = {r.tobytes() for r in x}
    assert sum(r.tobytes() in rows for r in xv) <= 5  # a few digits are exact duplicates in the data


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trips(tmp_path, rng, name, dtype):
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    save_idx(tmp_path / name, array)
    back = load_idx(tmp_path / name)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_save_idx_rejects_dtypes_idx_cannot_hold(tmp_path):
    with pytest.raises(DTypeError, match="dtype in"):
        save_idx(tmp_path / "x.idx", np.zeros(3, np.int64))


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
MALFORMED = {
    "empty": (b"", "bad IDX magic number"),
    "bad magic": (b"\x01\x02" + GOOD[2:], "bad IDX magic number 0102"),
    "unknown type": (GOOD[:2] + b"\x07" + GOOD[3:], "bad IDX magic number 000007"),
    "zero dimensions": (GOOD[:3] + b"\x00", "0 dimensions"),
    "truncated header": (GOOD[:10], "truncated IDX header"),
    "truncated data": (GOOD[:-1], r"truncated: shape \(2, 3, 4\) needs 24 data bytes, got 23"),
    "extra data": (GOOD + b"\x00", "longer than its header says"),
    "dimensions disagree with size": (GOOD[:4] + np.asarray([2, 3, 5], ">u4").tobytes() + GOOD[16:], "truncated"),
    "absurd size": (GOOD[:4] + np.asarray([2**31, 2**31, 4], ">u4").tobytes() + GOOD[16:], "over the"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_idx_files_raise_data_format_error_naming_the_file(tmp_path, case, compress):
    data, message = MALFORMED[case]
    path = tmp_path / f"bad-{case.replace(' ', '-')}.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(DataFormatError, match=message) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_a_corrupt_gzip_stream_raises_data_format_error(tmp_path):
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(gzip.compress(GOOD)[:-12] + b"garbage-bytes")
    with pytest.raises(DataFormatError, match="bad.idx.gz"):
        load_idx(path)


def test_a_missing_idx_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.idx")


def write_idx_dataset(folder: Path, rng, n_train=50, n_test=20, n_test_labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        save_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        m = n if split == "train" or n_test_labels is None else n_test_labels
        save_idx(folder / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, m, dtype=np.uint8))


def test_an_idx_folder_loads_as_scaled_float32_and_int64(tmp_path, rng):
    write_idx_dataset(tmp_path / "fashion-mnist", rng)
    (x, y), (xt, _yt) = nnx.datasets.load_fashion_mnist(tmp_path)
    assert x.shape == (50, 784) and xt.shape == (20, 784)
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.min() >= 0 and x.max() <= 1


def test_nnx_data_environment_variable_is_searched(tmp_path, rng, monkeypatch):
    write_idx_dataset(tmp_path / "mnist", rng)
    monkeypatch.setenv("NNX_DATA", str(tmp_path))
    (x, _), _ = nnx.datasets.load_mnist()
    assert x.shape == (50, 784)


def test_image_and_label_counts_that_differ_raise_naming_both_files(tmp_path, rng):
    write_idx_dataset(tmp_path, rng, n_test_labels=19)
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz holds 20 images but .*holds 19 labels"):
        nnx.datasets.load_idx_folder(tmp_path)


def test_a_missing_data_set_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFound, match="mnist not found: looked for .* in .*data/mnist.*To get it"):
        nnx.datasets.load_mnist()


def test_a_data_dir_that_is_given_is_the_only_place_looked_in(tmp_path, rng, monkeypatch):
    """A mistyped folder is an error naming it, never silently replaced by the copy the search list finds."""
    write_idx_dataset(tmp_path / "found" / "mnist", rng)
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "found"))
    assert nnx.datasets.load_mnist()[0][0].shape == (50, 784)  # without a folder: the search list
    with pytest.raises(DatasetNotFound, match=r"mnist: the data folder .*nowhere does not exist"):
        nnx.datasets.load_mnist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFound, match=r"in .*empty and .*empty/mnist \(the folder given is the only place"):
        nnx.datasets.load_mnist(tmp_path / "empty")
    assert nnx.datasets.load_mnist(tmp_path / "found")[0][0].shape == (50, 784)  # the folder or its <name>


def test_class_names_of_the_built_in_data_sets_and_of_an_npz(tmp_path, rng):
    assert nnx.datasets.class_names("fashion-mnist")[9] == "Ankle boot"
    assert nnx.datasets.class_names("digits") == [str(d) for d in range(10)]
    path = tmp_path / "d.npz"
    arrays = dict(x_train=rng.random((4, 2)), y_train=np.arange(4), x_test=rng.random((2, 2)), y_test=np.arange(2))
    np.savez(path, **arrays)
    assert nnx.datasets.class_names(path) is None
    np.savez(path, **arrays, class_names=np.array(["cat", "dog", "fox", "owl"]))
    assert nnx.datasets.class_names(path) == ["cat", "dog", "fox", "owl"]
    assert nnx.datasets.load_npz(path)[0][0].shape == (4, 2)  # the extra key does not disturb the loader


def test_an_npz_data_set_loads_without_pickle(tmp_path, rng):
    path = tmp_path / "d.npz"
    np.savez(
        path, x_train=rng.random((10, 2, 3)), y_train=np.arange(10), x_test=rng.random((4, 6)), y_test=np.arange(4)
    )
    (x, y), (xt, _) = nnx.datasets.load_npz(path)
    assert x.shape == (10, 6) and x.dtype == np.float32 and y.dtype == np.int64 and xt.shape == (4, 6)
    np.savez(path, x_train=np.zeros(3), y_train=np.zeros(3))
    with pytest.raises(DataFormatError, match="missing"):
        nnx.datasets.load_npz(path)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        nnx.datasets.load_npz(tmp_path / "bad.npz")
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataFormatError, match=r"not a readable .npz data set \(a single .npy array\)"):
        nnx.datasets.load_npz(tmp_path / "one.npy")
    objects = np.array([{"a": 1}] * 3, dtype=object)  # loading these would need pickle
    np.savez(path, x_train=objects, y_train=np.arange(3), x_test=objects, y_test=np.arange(3))
    with pytest.raises(DataFormatError, match="not a readable .npz"):
        nnx.datasets.load_npz(path)


@requires_fashion
def test_fashion_mnist_loads_the_official_split():
    (x, y), (xt, yt) = nnx.datasets.load_fashion_mnist()  # its speed is a benchmark's matter, not a test's
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert x.dtype == np.float32 and x.max() == 1.0 and x.min() == 0.0
    np.testing.assert_array_equal(np.bincount(y), 6000)
    np.testing.assert_array_equal(np.bincount(yt), 1000)


@requires_fashion
@pytest.mark.slow
def test_one_epoch_on_fashion_mnist_reaches_80_percent():
    (x, y), (xt, yt) = nnx.datasets.load_fashion_mnist()
    model = nnx.Sequential(nnx.Dense(784, 256), nnx.ReLU(), nnx.Dense(256, 10), backend="numpy")
    model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.Adam(1e-3), epochs=1, batch_size=128)
    assert model.evaluate(xt, yt)["accuracy"] >= 0.80
