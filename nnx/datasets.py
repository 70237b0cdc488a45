"""Data sets: the embedded UCI digits, and MNIST / Fashion-MNIST from IDX files.

Every loader returns ``(x_train, y_train), (x_test, y_test)``: float32 features in
[0, 1], one row per sample, and int64 labels (an .npz may hold float regression targets
instead). With ``validation=f`` a fraction f of the training set (stratified by label for
labels) is held out as a third pair, (x_val, y_val).
``CLASS_NAMES`` (and ``class_names``) give the names of the classes, by label.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from nnx.checks import check_fraction
from nnx.errors import DataFormatError, DatasetNotFound, DTypeError
from nnx.files import atomic_write

Split = tuple[np.ndarray, np.ndarray]

# IDX type codes → big-endian NumPy dtypes (http://yann.lecun.com/exdb/mnist/, "the IDX file format").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MAX_IDX_BYTES = 1 << 32  # refuse headers that promise more than 4 GiB

SYSTEM_DATA_DIR = Path("/usr/share/datasets")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET = {
    "fashion-mnist": "on Debian or Ubuntu: apt-get install dataset-fashion-mnist; or download the four "
    "*-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist into a folder and give it "
    "(nnx train --data-dir DIR, data_dir=DIR, or $NNX_DATA/fashion-mnist)",
    "mnist": "download the four *-ubyte.gz files of MNIST into a folder and give it "
    "(nnx train --data-dir DIR, data_dir=DIR, or $NNX_DATA/mnist)",
}

DIGIT_NAMES = [str(d) for d in range(10)]
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CLASS_NAMES = {"digits": DIGIT_NAMES, "mnist": DIGIT_NAMES, "fashion-mnist": FASHION_NAMES}


def class_names(dataset: str | os.PathLike[str]) -> list[str] | None:
    """The class names of a data set, by label: the built-in ones by name, or an .npz's optional
    ``class_names`` array of strings; None when the data set has none (an IDX folder)."""
    if str(dataset) in CLASS_NAMES:
        return list(CLASS_NAMES[str(dataset)])
    path = Path(dataset)
    if path.suffix != ".npz" or not path.is_file():
        return None
    try:
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as data:
            if "class_names" not in data.files:
                return None
            names = data["class_names"]
    except (OSError, ValueError, zlib.error, zipfile.BadZipFile) as exc:
        raise DataFormatError(f"{path}: not a readable .npz data set ({exc})") from None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise DataFormatError(f"{path}: class_names must be a 1-D array of strings; got {names.ndim}-D {names.dtype}")
    return [str(name) for name in names]


def load_digits(validation: float = 0.0) -> tuple[Split, ...]:
    """The UCI handwritten digits (1,797 8×8 images, 10 classes), shipped with nnx.

    A fixed, stratified split: 1,438 training and 359 test samples; x: (N, 64) float32 in [0, 1].
    """
    with resources.files("nnx").joinpath("data/digits.npz").open("rb") as f, np.load(f) as data:
        train = (data["x_train"].astype(np.float32) / 16, data["y_train"].astype(np.int64))
        test = (data["x_test"].astype(np.float32) / 16, data["y_test"].astype(np.int64))
    return with_validation(train, test, validation)


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into an array of its shape and native dtype.

    Raises DataFormatError naming the file when the magic number, the type code, the
    dimensions or the size are wrong, and FileNotFoundError when it does not exist.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            return _read_idx(f, path)
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataFormatError(f"{path}: not a readable IDX file ({exc})") from None


def save_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when the name ends in .gz), atomically."""

    array = np.asarray(array)
    code = next((c for c, dt in IDX_DTYPES.items() if np.dtype(dt).newbyteorder("=") == array.dtype), None)
    if code is None or array.ndim == 0:
        raise DTypeError(f"array must be ≥1-D with a dtype in {sorted(IDX_DTYPES.values())}; got {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(IDX_DTYPES[code]).tobytes()
    atomic_write(path, gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


def _read_idx(f: Any, path: Path) -> np.ndarray:
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in IDX_DTYPES:
        raise DataFormatError(
            f"{path}: bad IDX magic number {magic.hex() or '(empty)'}; expected 0000TTDD "
            f"with type TT in {sorted(f'{k:02x}' for k in IDX_DTYPES)}"
        )
    dtype, ndim = np.dtype(IDX_DTYPES[magic[2]]), magic[3]
    if ndim == 0:
        raise DataFormatError(f"{path}: IDX header gives 0 dimensions; expected at least 1")
    header = f.read(4 * ndim)
    if len(header) < 4 * ndim:
        raise DataFormatError(
            f"{path}: truncated IDX header: {ndim} dimensions need {4 * ndim} bytes, got {len(header)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(header, ">u4"))
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise DataFormatError(
            f"{path}: IDX header claims shape {shape} ({expected} bytes), over the {MAX_IDX_BYTES}-byte limit"
        )
    body = _read_at_most(f, expected + 1)
    if len(body) != expected:
        state = "truncated" if len(body) < expected else "longer than its header says"
        raise DataFormatError(
            f"{path}: {state}: shape {shape} needs {expected} data bytes, "
            f"got {len(body) if len(body) < expected else 'more'}"
        )
    return np.frombuffer(body, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(f: Any, n: int, chunk: int = 1 << 20) -> bytes:
    """Up to n bytes, read in chunks so that a header that lies about the size allocates
    only what the file really holds."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def load_fashion_mnist(data_dir: str | os.PathLike[str] | None = None, validation: float = 0.0) -> tuple[Split, ...]:
    """Fashion-MNIST (Zalando): 60,000 training and 10,000 test 28×28 images, x: (N, 784) float32 in [0, 1].

    Looks in ``data_dir`` (and data_dir/fashion-mnist) when it is given, and nowhere else; without
    it, in $NNX_DATA/fashion-mnist, then /usr/share/datasets/fashion-mnist.
    """
    return _load_idx_dataset("fashion-mnist", data_dir, validation)


def load_mnist(data_dir: str | os.PathLike[str] | None = None, validation: float = 0.0) -> tuple[Split, ...]:
    """MNIST: 60,000 training and 10,000 test 28×28 digits, x: (N, 784) float32 in [0, 1].

    Looks in ``data_dir`` (and data_dir/mnist) when it is given, and nowhere else; without it, in
    $NNX_DATA/mnist, then /usr/share/datasets/mnist.
    """
    return _load_idx_dataset("mnist", data_dir, validation)


def find_idx_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the IDX files of ``name``; DatasetNotFound says where it looked.

    A ``data_dir`` that is given is the only place looked in (it or its subfolder ``name``), so a
    mistyped folder is an error, never silently replaced by another copy. Without one: the
    subfolder ``name`` of $NNX_DATA (or $NNX_DATA itself), then /usr/share/datasets/<name>.
    """
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise DatasetNotFound(f"{name}: the data folder {data_dir} does not exist")
        candidates = [Path(data_dir), Path(data_dir) / name]
    else:
        candidates = []
        if os.environ.get("NNX_DATA"):
            candidates += [Path(os.environ["NNX_DATA"]) / name, Path(os.environ["NNX_DATA"])]
        candidates.append(SYSTEM_DATA_DIR / name)
    for folder in candidates:
        if all(_idx_path(folder, stem) for pair in IDX_FILES.values() for stem in pair):
            return folder
    looked = " and ".join(str(c) for c in candidates) if data_dir is not None else ", ".join(map(str, candidates))
    only = "" if data_dir is None else " (the folder given is the only place looked in)"
    raise DatasetNotFound(
        f"{name} not found: looked for {IDX_FILES['train'][0]}[.gz] and its three siblings "
        f"in {looked}{only}. To get it: {HOW_TO_GET[name]}"
    )


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(name: str, data_dir: Any, validation: float) -> tuple[Split, ...]:
    return load_idx_folder(find_idx_dir(name, data_dir), validation)


def load_idx_folder(folder: str | os.PathLike[str], validation: float = 0.0) -> tuple[Split, ...]:
    """An MNIST-style data set from the four IDX files (raw or .gz) in ``folder``."""
    folder = Path(folder)
    if not all(_idx_path(folder, stem) for pair in IDX_FILES.values() for stem in pair):
        raise DatasetNotFound(f"{folder} must hold {', '.join(s for p in IDX_FILES.values() for s in p)} (.gz or raw)")
    splits = []
    for images_stem, labels_stem in IDX_FILES.values():
        images_path, labels_path = _idx_path(folder, images_stem), _idx_path(folder, labels_stem)
        images, labels = load_idx(images_path), load_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataFormatError(f"{images_path}: expected 3-D uint8 images; got {images.ndim}-D {images.dtype}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise DataFormatError(f"{labels_path}: expected 1-D uint8 labels; got {labels.ndim}-D {labels.dtype}")
        if len(images) != len(labels):
            raise DataFormatError(
                f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise DataFormatError(f"{labels_path}: labels must be 0-9; got {int(labels.max())}")
        x = np.multiply(images.reshape(len(images), -1), np.float32(1 / 255), dtype=np.float32)
        splits.append((x, labels.astype(np.int64)))
    return with_validation(splits[0], splits[1], validation)


def load_npz(path: str | os.PathLike[str], validation: float = 0.0) -> tuple[Split, ...]:
    """A data set from an .npz holding x_train, y_train, x_test, y_test (no pickle).

    x arrays of any shape (N, ...) are flattened to (N, features) float32; integer y (class
    labels) become int64, float y (regression targets, (N,) or (N, K)) float32.
    """
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with open(path, "rb") as file:  # our handle, so that it is closed on errors too
            data = np.load(file, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DataFormatError(f"{path}: not a readable .npz data set (a single .npy array)")
            with data:
                missing = [k for k in keys if k not in data.files]
                if missing:
                    raise DataFormatError(f"{path}: an .npz data set must hold {keys}; missing {missing}")
                arrays = [data[k] for k in keys]
    except (OSError, ValueError, zlib.error, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataFormatError):
            raise
        raise DataFormatError(f"{path}: not a readable .npz data set ({exc})") from None
    x_train, y_train, x_test, y_test = arrays
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if y.dtype.kind not in "iuf":
            raise DataFormatError(f"{path}: {name} must hold integer labels or float targets; got dtype {y.dtype}")
    if (y_train.dtype.kind == "f") != (y_test.dtype.kind == "f"):
        raise DataFormatError(
            f"{path}: y_train and y_test must both hold labels or both float targets; "
            f"got {y_train.dtype} and {y_test.dtype}"
        )
    target = np.float32 if y_train.dtype.kind == "f" else np.int64
    train = (x_train.reshape(len(x_train), -1).astype(np.float32), y_train.astype(target))
    test = (x_test.reshape(len(x_test), -1).astype(np.float32), y_test.astype(target))
    return with_validation(train, test, validation)


def with_validation(train: Split, test: Split, validation: float, stratify: bool | None = None) -> tuple[Split, ...]:
    """(train, test), or (train minus a held-out fraction, validation, test), fixed: stratified by
    label, or drawn at random (``stratify`` False; None: stratify integer labels, not float targets)."""
    validation = check_fraction(validation, "validation")
    if not validation:
        return train, test
    x, y = train
    rng = np.random.default_rng(12345)
    held = np.zeros(len(y), bool)
    if not (y.dtype.kind in "iu" if stratify is None else stratify):
        held[rng.permutation(len(y))[: round(validation * len(y))]] = True
        return (x[~held], y[~held]), (x[held], y[held]), test
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        held[idx[: round(validation * len(idx))]] = True
    return (x[~held], y[~held]), (x[held], y[held]), test
