"""Untrusted files: mutated model files and IDX files load to a valid result or raise the documented
error. Never another exception, never a hang, never a huge allocation, never code execution.

The number of examples is bounded for CI (150 per test); run longer with
    HYPOTHESIS_PROFILE=fuzz pytest tests/test_fuzz.py        (2,000 examples per test)
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("hypothesis")
pytest.importorskip("safetensors", reason="model files need safetensors")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nnx
from nnx.datasets import load_idx, save_idx
from nnx.errors import DataFormatError, ModelFileError

settings.register_profile("ci", max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=2000, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
MAX_ALLOCATION = 16 * 1024 * 1024  # bytes: loading a file of a few KiB must never allocate more


def valid_model_bytes() -> bytes:
    model = nnx.Sequential(nnx.Dense(6, 5), nnx.ReLU(), nnx.Dropout(0.1), nnx.Dense(5, 3), backend="numpy", seed=1)
    path = "/tmp/nnx-fuzz-seed.safetensors"
    nnx.save(model, path, training={"note": "seed"})
    with open(path, "rb") as f:
        return f.read()


VALID_MODEL = valid_model_bytes()


def valid_idx_bytes() -> bytes:
    path = "/tmp/nnx-fuzz-seed.idx"
    save_idx(path, np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))
    with open(path, "rb") as f:
        return f.read()


VALID_IDX = valid_idx_bytes()


class Marker:
    """A pickle payload that would create a file if it were ever unpickled."""

    def __reduce__(self):
        return (open, ("/tmp/nnx-fuzz-pwned", "w"))


def mutations(valid: bytes):
    """Strategies that damage a valid file: truncate, flip bytes, splice, prepend a pickle, lie about sizes."""
    n = len(valid)
    truncate = st.integers(0, n - 1).map(lambda k: valid[:k])
    flip = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 255)), min_size=1, max_size=8).map(
        lambda flips: _flip(valid, flips)
    )
    splice = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
        lambda t: valid[: t[0]] + t[1] + valid[t[0] :]
    )
    header_size = st.integers(0, 2**64 - 1).map(lambda k: struct.pack("<Q", k) + valid[8:])
    pickled = st.sampled_from([pickle.dumps(Marker()), pickle.dumps({"W": np.zeros(3)})]).map(lambda p: p + valid)
    random = st.binary(max_size=256)
    return st.one_of(truncate, flip, splice, header_size, pickled, random)


def _flip(data: bytes, flips) -> bytes:
    out = bytearray(data)
    for i, x in flips:
        out[i] ^= x
    return bytes(out)


def metadata_mutations():
    """Valid safetensors whose nnx metadata is changed: layer types, sizes, shapes, dtypes, garbage."""
    header_len = struct.unpack("<Q", VALID_MODEL[:8])[0]
    header = json.loads(VALID_MODEL[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["nnx"])
    values = st.one_of(
        st.none(),
        st.integers(-(2**40), 2**40),
        st.text(max_size=8),
        st.floats(allow_nan=True),
        st.lists(st.integers(-3, 3), max_size=3),
    )

    def rebuild(change):
        key, value, layer = change
        new = json.loads(json.dumps(meta))
        if layer is None:
            new[key] = value
        else:
            new["layers"][layer % len(new["layers"])][key] = value
        head = dict(header, __metadata__={"nnx": json.dumps(new)})
        raw = json.dumps(head).encode()
        return struct.pack("<Q", len(raw)) + raw + VALID_MODEL[8 + header_len :]

    keys = st.sampled_from(["type", "in_features", "out_features", "p", "dtype", "layers", "format", "version", "seed"])
    return st.tuples(keys, values, st.one_of(st.none(), st.integers(0, 5))).map(rebuild)


def load_bounded(loader, path):
    tracemalloc.start()
    try:
        return loader(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < MAX_ALLOCATION, f"loading a {os.path.getsize(path)}-byte file allocated {peak} bytes"


@given(data=st.one_of(mutations(VALID_MODEL), metadata_mutations()))
def test_a_mutated_model_file_loads_validly_or_raises_model_file_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    path.write_bytes(data)
    try:
        model = load_bounded(lambda p: nnx.load(p, backend="numpy"), path)
    except ModelFileError:
        pass
    else:
        probs = model.predict(np.ones((2, model.in_features), np.float32))
        assert probs.shape == (2, model.n_classes) and np.isfinite(probs).all()
    assert not os.path.exists("/tmp/nnx-fuzz-pwned")


@given(data=mutations(VALID_IDX), compress=st.booleans())
def test_a_mutated_idx_file_loads_validly_or_raises_data_format_error(tmp_path_factory, data, compress):
    path = tmp_path_factory.mktemp("fuzz") / ("x.idx.gz" if compress else "x.idx")
    path.write_bytes(gzip.compress(data) if compress else data)
    try:
        array = load_bounded(load_idx, path)
    except DataFormatError:
        return
    assert array.size * array.itemsize <= len(data)


def test_the_unmutated_seeds_are_valid(tmp_path):
    (tmp_path / "x.idx").write_bytes(VALID_IDX)
    assert load_idx(tmp_path / "x.idx").shape == (3, 4, 5)
    (tmp_path / "m.safetensors").write_bytes(VALID_MODEL)
    assert nnx.load(tmp_path / "m.safetensors", backend="numpy").n_classes == 3


@pytest.mark.parametrize("claimed", [2**31 - 1, 2**32 + 5, 2**62])
def test_a_lying_idx_header_allocates_only_what_the_file_holds(tmp_path, claimed):
    data = bytes([0, 0, 0x08, 1]) + struct.pack(">I", min(claimed, 2**32 - 1)) + b"\x00" * 100
    path = tmp_path / "lie.idx"
    path.write_bytes(data)
    with pytest.raises(DataFormatError):
        load_bounded(load_idx, path)
