"""Model files: save → load round trips, atomic writes, and every kind of bad file."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest

import nnx
from nnx import files
from nnx.errors import ModelFileError
from tests.conftest import TOLERANCE

st_save = pytest.importorskip("safetensors.numpy", reason="model files need safetensors").save


@pytest.fixture(scope="module")
def trained():
    (x, y), (xt, _) = nnx.datasets.load_digits()
    model = nnx.Sequential(nnx.Dense(64, 32), nnx.ReLU(), nnx.Dropout(0.1), nnx.Dense(32, 10), backend="numpy")
    model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2, batch_size=32)
    return model, xt


def test_save_then_load_gives_identical_predictions_and_architecture(tmp_path, trained, backend):
    model, xt = trained
    path = tmp_path / "m.safetensors"
    nnx.save(model, path, training={"epochs": 2})
    loaded = nnx.load(path, backend=backend)
    assert repr(loaded.layers) == repr(model.layers)
    assert loaded.training_info == {"epochs": 2}
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(loaded.get_weights()[name], w)  # the weights, bit for bit
    tol = TOLERANCE["float32"]  # the predictions, up to the backends' float32 summation order
    np.testing.assert_allclose(loaded.predict(xt), model.predict(xt), rtol=tol, atol=tol)
    assert loaded.backend is backend


def test_float64_models_round_trip(tmp_path):
    model = nnx.Sequential(nnx.Dense(3, 2), backend="numpy", dtype="float64", seed=4)
    nnx.save(model, tmp_path / "m.safetensors")
    loaded = nnx.load(tmp_path / "m.safetensors", backend="numpy")
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded.get_weights()["layers.0.W"], model.get_weights()["layers.0.W"])


def test_the_file_holds_no_pickle_and_plain_json_metadata(tmp_path, trained):
    model, _ = trained
    path = tmp_path / "m.safetensors"
    nnx.save(model, path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["nnx"])
    assert meta["layers"][2] == {"type": "Dropout", "p": 0.1}
    assert b"\x80\x04" not in data[: 8 + n]  # no pickle protocol marker in the header


def write_with_meta(path, meta, tensors):
    path.write_bytes(st_save(tensors, metadata={"nnx": json.dumps(meta)}))


def good_meta():
    return {
        "format": "nnx",
        "version": 1,
        "dtype": "float32",
        "seed": 0,
        "layers": [{"type": "Dense", "in_features": 2, "out_features": 3}],
        "training": {},
    }


def good_tensors():
    return {"layers.0.W": np.zeros((2, 3), np.float32), "layers.0.b": np.zeros(3, np.float32)}


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "too short"),
    "a pickle": (lambda p: p.write_bytes(pickle.dumps({"W": [1, 2, 3]})), "not an nnx model file"),
    "lying header length": (lambda p: p.write_bytes(struct.pack("<Q", 2**60) + b"{}"), "header claims"),
    "header not json": (lambda p: p.write_bytes(struct.pack("<Q", 4) + b"{{{{"), "no readable nnx metadata"),
    "no nnx metadata": (lambda p: p.write_bytes(st_save(good_tensors())), "no readable nnx metadata"),
    "wrong format": (lambda p: write_with_meta(p, {**good_meta(), "format": "keras"}, good_tensors()), "format"),
    "unknown layer": (
        lambda p: write_with_meta(p, {**good_meta(), "layers": [{"type": "Conv2D"}]}, good_tensors()),
        "layer 0 must be one of",
    ),
    "bad layer arguments": (
        lambda p: write_with_meta(p, {**good_meta(), "layers": [{"type": "Dense", "in_features": -2}]}, {}),
        "bad arguments",
    ),
    "wrong shapes": (
        lambda p: write_with_meta(p, good_meta(), {**good_tensors(), "layers.0.W": np.zeros((3, 2), np.float32)}),
        "weights do not match the architecture",
    ),
    "missing tensor": (
        lambda p: write_with_meta(p, good_meta(), {"layers.0.W": np.zeros((2, 3), np.float32)}),
        "weights do not match",
    ),
    "wrong dtype": (
        lambda p: write_with_meta(p, good_meta(), {k: v.astype(np.float64) for k, v in good_tensors().items()}),
        "must be finite float32",
    ),
    "NaN weights": (
        lambda p: write_with_meta(p, good_meta(), {**good_tensors(), "layers.0.b": np.full(3, np.nan, np.float32)}),
        "NaN or Inf",
    ),
    "bad dtype name": (lambda p: write_with_meta(p, {**good_meta(), "dtype": "int8"}, good_tensors()), "dtype"),
    "huge layers claimed": (
        lambda p: write_with_meta(
            p,
            {**good_meta(), "layers": [{"type": "Dense", "in_features": 10**6, "out_features": 10**6}]},
            good_tensors(),
        ),
        "weights do not match the architecture",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_file_that_is_not_a_valid_model_raises_model_file_error_naming_it(tmp_path, case):
    make, message = BAD_FILES[case]
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(ModelFileError, match=message) as info:
        nnx.load(path, backend="numpy")
    assert str(path) in str(info.value)


def test_truncated_files_raise_model_file_error(tmp_path, trained):
    model, _ = trained
    path = tmp_path / "m.safetensors"
    nnx.save(model, path)
    data = path.read_bytes()
    for cut in (7, 8, 50, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            nnx.load(path, backend="numpy")


def test_a_failed_write_leaves_the_old_file_intact_and_no_temporary(tmp_path, trained, monkeypatch):
    model, _ = trained
    path = tmp_path / "m.safetensors"
    nnx.save(model, path)
    before = path.read_bytes()

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        nnx.save(nnx.Sequential(nnx.Dense(64, 10), backend="numpy", seed=9), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_a_folder_without_write_permission_raises_permission_error_and_keeps_the_old_file(
    tmp_path, trained, monkeypatch
):
    model, _ = trained
    path = tmp_path / "m.safetensors"
    nnx.save(model, path)
    before = path.read_bytes()

    def no_permission(**kwargs):  # what mkstemp raises in a read-only folder (root would bypass a chmod)
        raise PermissionError(13, "Permission denied", kwargs["dir"])

    monkeypatch.setattr(files.tempfile, "mkstemp", no_permission)
    with pytest.raises(PermissionError, match="Permission denied"):
        nnx.save(model, path)
    assert path.read_bytes() == before


def test_saving_into_a_missing_folder_raises_file_not_found(tmp_path, trained):
    with pytest.raises(FileNotFoundError):
        nnx.save(trained[0], tmp_path / "no" / "such" / "m.safetensors")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_mode_open_would_give_them(tmp_path, trained, umask):
    import os

    old = os.umask(umask)
    try:
        nnx.save(trained[0], tmp_path / "m.safetensors")
    finally:
        os.umask(old)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def every_layer_model(backend):
    """A model with every layer type, its LayerNorms' gamma and beta moved off their ones and zeros."""
    model = nnx.Sequential(
        nnx.Dense(6, 8), nnx.LayerNorm(8, eps=1e-3), nnx.GELU(), nnx.Dense(8, 8), nnx.GELU(approximate="tanh"),
        nnx.Dropout(0.1), nnx.Dense(8, 8), nnx.Tanh(), nnx.LayerNorm(8), nnx.Dense(8, 8), nnx.Sigmoid(),
        nnx.Dense(8, 8), nnx.LeakyReLU(negative_slope=0.2), nnx.Dense(8, 5), nnx.ReLU(), nnx.Dense(5, 3), nnx.Softmax(),
        backend=backend, seed=7,
    )  # fmt: skip
    rng = np.random.default_rng(3)
    model.set_weights({k: v + rng.standard_normal(v.shape) * 0.3 for k, v in model.get_weights().items()})
    return model


def test_every_layer_type_round_trips_with_its_settings_and_predictions(tmp_path, backend):
    from nnx.layers import LAYER_TYPES

    model = every_layer_model(backend)
    assert {type(layer).__name__ for layer in model.layers} == set(LAYER_TYPES)
    path = tmp_path / "every.safetensors"
    nnx.save(model, path)
    loaded = nnx.load(path, backend=backend)
    assert repr(loaded.layers) == repr(model.layers)
    assert "GELU(approximate='tanh')" in repr(loaded.layers) and "LayerNorm(features=8, eps=0.001)" in repr(
        loaded.layers
    )
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(loaded.get_weights()[name], w)
    x = np.random.default_rng(4).standard_normal((20, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_file_whose_layer_norm_size_disagrees_with_its_weights_is_refused(tmp_path):
    meta = good_meta()
    meta["layers"].append({"type": "LayerNorm", "features": 4, "eps": 1e-5})
    tensors = {**good_tensors(), "layers.1.gamma": np.ones(3, np.float32), "layers.1.beta": np.zeros(3, np.float32)}
    write_with_meta(tmp_path / "m.safetensors", meta, tensors)
    with pytest.raises(ModelFileError, match="weights do not match the architecture"):
        nnx.load(tmp_path / "m.safetensors", backend="numpy")
