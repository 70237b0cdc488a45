"""The exceptions that nnx raises, one vocabulary for the whole library.

Each subclasses the built-in exception that fits, so ``except ValueError`` keeps working.
Messages name the argument, what was expected and what came.

    NNXError            base class of all of them but TrainingInterrupted
    ShapeError          ValueError: an array has the wrong number of dimensions or features
    DataError           ValueError: values are wrong (NaN or Inf, labels out of range, empty)
    DTypeError          TypeError: an array has a dtype nnx cannot use (e.g. float labels)
    ConfigError         ValueError: a setting is out of range (batch_size < 1, lr <= 0, ...)
    DatasetNotFound     FileNotFoundError: a data set is not where nnx looked (says where)
    DataFormatError     DataError: a data file (IDX) is malformed; names the file
    ModelFileError      ValueError: a model file is not a valid nnx model; names the file
    ExportError         ValueError: a model cannot be exported to ONNX (names the layer), or the onnx extra is missing
    OutOfDeviceMemory   MemoryError: the batch does not fit in the device's memory (try a smaller one)
    TrainingDiverged    FloatingPointError: the loss became NaN or Inf during fit
    TrainingInterrupted KeyboardInterrupt: Ctrl-C during fit; carries the History so far
    BackendUnavailable  RuntimeError (from ``backends``): the asked-for backend cannot run here
"""

from __future__ import annotations

from typing import Any

from backends import BackendUnavailable

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "DTypeError",
    "DataError",
    "DataFormatError",
    "DatasetNotFound",
    "ExportError",
    "ModelFileError",
    "NNXError",
    "OutOfDeviceMemory",
    "ShapeError",
    "TrainingDiverged",
    "TrainingInterrupted",
]


class NNXError(Exception):
    """Base class of nnx's errors."""


class ShapeError(NNXError, ValueError):
    """An array has the wrong shape."""


class DataError(NNXError, ValueError):
    """Array values that nnx cannot use: NaN or Inf, labels out of range, an empty array."""


class DTypeError(NNXError, TypeError):
    """An array has a dtype that nnx cannot use."""


class ConfigError(NNXError, ValueError):
    """A setting is out of its range."""


class DatasetNotFound(NNXError, FileNotFoundError):
    """A data set's files are not in any of the places nnx looked."""


class DataFormatError(DataError):
    """A data file is malformed (bad magic number, truncated, inconsistent sizes)."""


class ModelFileError(NNXError, ValueError):
    """A file is not a valid nnx model (corrupt, truncated, wrong shapes, unknown layer)."""


class ExportError(NNXError, ValueError):
    """A model cannot be exported to ONNX: a layer that no ONNX operator computes, or the onnx extra is missing."""


class OutOfDeviceMemory(NNXError, MemoryError):
    """The device ran out of memory; the model keeps its weights and stays usable."""


class TrainingDiverged(NNXError, FloatingPointError):
    """The training loss became NaN or Inf; the model keeps its last finite weights."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C) after a complete step; ``history`` holds the epochs so far."""

    def __init__(self, message: str, history: Any) -> None:
        super().__init__(message)
        self.history = history
