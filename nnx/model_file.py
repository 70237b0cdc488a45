"""Model files: safetensors for the weights, JSON in its metadata for the rest. Never pickle.

Layout of a file: the tensors "layers.<i>.<W|b>" (and, in a checkpoint,
"optimizer.<param>.<slot>"), and the metadata key "nnx" holding JSON:

    {"format": "nnx", "version": 1, "dtype": "float32", "seed": 0,
     "layers": [{"type": "Dense", "in_features": 64, "out_features": 64}, {"type": "ReLU"}, ...],
     "class_names": ["T-shirt/top", ...],   # or null: the names of the outputs (model.class_names)
     "task": "classification",               # or "binary", "regression" (model.task; absent: classification)
     "training": {...}}    # free-form settings: optimizer, epochs, data set, history ...

Writes go to a temporary file in the same folder, are flushed to disk, then
renamed over the target, so a crash never leaves a half-written model. Reading
checks everything against the architecture and raises ModelFileError.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from nnx.errors import ConfigError, ModelFileError, NNXError
from nnx.files import atomic_write
from nnx.layers import LAYER_TYPES, Layer
from nnx.model import DTYPES, Sequential

FORMAT, VERSION = "nnx", 1
MAX_HEADER = 1 << 24  # a model header larger than 16 MiB is not ours


def save(
    model: Sequential,
    path: str | os.PathLike[str],
    training: dict[str, Any] | None = None,
    extra_tensors: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``model`` to ``path`` atomically (``nnx.save``); ``training`` (default: the model's
    ``training_info``) is stored as JSON metadata."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": model.dtype.name,
        "seed": model.seed,
        "layers": [{"type": type(layer).__name__, **layer.config()} for layer in model.layers],
        "class_names": check_class_names(model.class_names, model.out_features, "model.class_names"),
        "task": model.task,
        "training": model.training_info if training is None else training,
    }
    tensors = {**model.get_weights(), **(extra_tensors or {})}
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    from safetensors.numpy import save as st_save  # imported here: `import nnx` works without it

    atomic_write(path, st_save(tensors, metadata={FORMAT: json.dumps(meta)}))


def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors) of an nnx file, checked for form; raises ModelFileError."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise ModelFileError(f"{path}: not an nnx model file: {len(data)} bytes, too short for a safetensors header")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(MAX_HEADER, len(data) - 8):
        raise ModelFileError(
            f"{path}: not an nnx model file: the header claims {header_len} bytes, the file holds {len(data) - 8}"
        )
    try:
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header["__metadata__"][FORMAT])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not an nnx model file: no readable nnx metadata ({exc!r})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: not an nnx model file of version {VERSION}: metadata format "
            f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path}: corrupt tensor data: {exc}") from None
    return meta, tensors


def load(path: str | os.PathLike[str], backend: str | None = None) -> Sequential:
    """A Sequential from an nnx model file, on ``backend`` (default: $NNX_BACKEND or "auto").

    ``model.training_info`` holds the file's "training" metadata.
    """
    return model_from(*read(path), path, backend)


def model_from(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: Any, backend: str | None) -> Sequential:
    """The model that ``read`` returned, checked against its architecture; ``path`` names it in errors.

    The tensors' shapes are checked before the model is built, so a metadata that claims
    huge layers cannot make loading allocate more than the file holds.
    """
    layers = read_layers(meta, path)
    dtype, seed = meta.get("dtype"), meta.get("seed", 0)
    if dtype not in DTYPES:
        raise ModelFileError(f"{path}: metadata dtype must be one of {DTYPES}; got {dtype!r}")
    weights = {k: v for k, v in tensors.items() if k.startswith("layers.")}
    expected = {f"layers.{i}.{k}": shape for i, layer in enumerate(layers) for k, shape in layer.param_shapes().items()}
    got = {name: tuple(value.shape) for name, value in weights.items()}
    if got != expected:
        raise ModelFileError(f"{path}: weights do not match the architecture: expected {expected}, got {got}")
    for name, value in weights.items():
        if value.dtype != np.dtype(dtype) or not np.isfinite(value).all():
            raise ModelFileError(
                f"{path}: tensor {name} must be finite {dtype}; got {value.dtype}"
                f"{'' if np.isfinite(value).all() else ' with NaN or Inf'}"
            )
    try:
        model = Sequential(*layers, backend=backend, seed=seed, dtype=dtype)
    except NNXError as exc:
        raise ModelFileError(f"{path}: the layers do not form a valid model: {exc}") from None
    model.set_weights(weights)
    model.training_info = meta.get("training", {})
    try:
        model.class_names = check_class_names(meta.get("class_names"), model.out_features, "metadata class_names")
        model.task = meta.get("task", "classification")
    except NNXError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    return model


def check_class_names(names: Any, n_outputs: int, what: str) -> list[str] | None:
    """names: None, or one string per output; returns them as a list."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or len(names) != n_outputs or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{what} must be None or {n_outputs} strings, one per output; got {names!r}")
    return list(names)


def read_layers(meta: dict[str, Any], path: Any) -> list[Layer]:
    """The layers that the metadata describes, constructed but not built (nothing allocated)."""
    layers: list[Layer] = []
    specs = meta.get("layers")
    if not isinstance(specs, list) or not specs:
        raise ModelFileError(f"{path}: metadata 'layers' must be a non-empty list; got {specs!r}")
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or spec["type"] not in LAYER_TYPES:
            raise ModelFileError(f"{path}: layer {i} must be one of {sorted(LAYER_TYPES)}; got {spec!r}")
        args = {k: v for k, v in spec.items() if k != "type"}
        try:
            layers.append(LAYER_TYPES[spec["type"]](**args))
        except (TypeError, NNXError) as exc:
            raise ModelFileError(f"{path}: layer {i} ({spec['type']}) has bad arguments {args}: {exc}") from None
    return layers
