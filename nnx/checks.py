"""Input checks, run once at the public boundary so that the hot path needs none."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from backends import backend_for
from backends.contract import Array
from nnx.errors import ConfigError, DataError, DTypeError, ShapeError


def _module(a: Any) -> Any:
    """NumPy or CuPy, whichever ``a`` belongs to."""
    return backend_for(a).xp


def as_array(a: Any, name: str) -> Any:
    """``a`` as a NumPy array, or as it is when it is already an array of another module (CuPy)."""
    if hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray):
        return a
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"{name} must be an array of numbers; got {type(a).__name__} ({exc})") from None


def check_features(x: Any, n_features: int, name: str = "x") -> Any:
    """x must be a finite (N >= 1, n_features) array of numbers; returns it as an array."""
    x = as_array(x, name)
    if x.dtype.kind not in "fiu":
        raise DTypeError(f"{name} must hold numbers (float or int); got dtype {x.dtype}")
    if x.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (samples, {n_features}); got shape {tuple(x.shape)}")
    if x.shape[1] != n_features:
        raise ShapeError(f"{name} must have {n_features} features per row; got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"{name} must hold at least one sample; got shape {tuple(x.shape)}")
    if x.dtype.kind == "f" and not _finite_sum(x):
        xp = _module(x)  # NaN, Inf, or finite values whose sum overflowed: find the row
        finite = xp.isfinite(x).all(axis=1)
        if not bool(finite.all()):
            row = int(xp.argmin(finite))
            raise DataError(f"{name} must be finite; got NaN or Inf (first in row {row})")
    return x


def _finite_sum(x: Any) -> bool:
    """Whether the sum of x is finite, which proves x holds no NaN or Inf (one pass, no temporary)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(float(x.sum()))


def check_logits(logits: Any, name: str = "logits") -> Any:
    """logits must be a finite (N >= 1, C >= 1) float array."""
    logits = as_array(logits, name)
    if logits.dtype.kind != "f":
        raise DTypeError(f"{name} must be a float array; got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ShapeError(f"{name} must be 2-D (samples, classes); got shape {tuple(logits.shape)}")
    return check_features(logits, logits.shape[1], name)


def check_labels(y: Any, n_classes: int, n_rows: int, name: str = "y") -> Any:
    """y must be (n_rows,) integers in [0, n_classes); returns it as an array."""
    y = as_array(y, name)
    if y.dtype.kind not in "iu":
        raise DTypeError(f"{name} must hold integer class labels; got dtype {y.dtype}")
    if y.ndim != 1:
        raise ShapeError(f"{name} must be 1-D (samples,); got shape {tuple(y.shape)}")
    if y.shape[0] != n_rows:
        raise ShapeError(f"{name} must have one label per sample of x ({n_rows}); got {y.shape[0]}")
    low, high = (int(y.min()), int(y.max())) if n_rows else (0, 0)
    if low < 0 or high >= n_classes:
        raise DataError(f"{name} must hold labels in [0, {n_classes - 1}]; got values from {low} to {high}")
    return y


def check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str, *, low_open: bool = False) -> float:
    """value must be a number in [0, 1) (or (0, 1) with low_open)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1
    if not ok or (low_open and value == 0):
        lo = "(0" if low_open else "[0"
        raise ConfigError(f"{name} must be a number in {lo}, 1); got {value!r}")
    return float(value)


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}; got {value!r}")
    return float(value)


UNSCALED_RMS = 3.0  # inputs whose root mean square exceeds this look unscaled (pixels 0-255: 100-125)


class UnscaledInputWarning(UserWarning):
    """fit's inputs look unscaled (|x| up to 255, say): training works best on inputs in [0, 1]
    or standardised ones. Silence it with ``warnings.simplefilter("ignore", nnx.UnscaledInputWarning)``."""


def unscaled(x: Array) -> str | None:
    """Why x looks unscaled, or None: its typical magnitude, the root mean square, exceeds
    UNSCALED_RMS. Pixels 0-255 give 100-125, the digits' 0-16 about 8, while inputs in [0, 1] or
    standardised ones give at most 1 (whatever their outliers). Judged on ~1,024 evenly spaced rows."""
    sample = x[:: max(1, x.shape[0] // 1024)].astype("float64")
    rms = float((sample * sample).mean()) ** 0.5
    if rms <= UNSCALED_RMS:
        return None
    return f"its values reach {float(abs(sample).max()):g}, with a root mean square of {rms:.3g}"


def warn_if_unscaled(x: Array) -> None:
    why = unscaled(x)
    if why is not None:
        warnings.warn(
            f"x looks unscaled: {why}; training works best on inputs in [0, 1] (pixels: divide by 255) or "
            "standardised ones (subtract the mean, divide by the standard deviation)",
            UnscaledInputWarning,
            stacklevel=4,  # the caller of Sequential.fit
        )
