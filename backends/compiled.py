"""The compiled CPU kernels (``backends/cpu_kernels.c``), loaded only when they are built from
the source beside them.

The C source records the SHA-256 of its own text (with that digest left out) as
``NNX_SOURCE_SHA256``, and the built module exposes it as ``SOURCE_SHA256``. In a checkout where
``cpu_kernels.c`` sits beside the module, a module built from another version of it (a failed
rebuild in an editable install leaves the old one in place) is refused: NumPy's kernels run
instead, and ``UNAVAILABLE`` says why. An installed wheel has no C source beside it: nothing to
compare, and the module it was built with loads.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).with_name("cpu_kernels.c")
_DIGEST = re.compile(rb'(#define NNX_SOURCE_SHA256 ")([0-9a-f]*)(")')


def source_digest(text: bytes) -> str:
    """The SHA-256 of C source text with its recorded digest left out."""
    return hashlib.sha256(_DIGEST.sub(rb"\1\3", text, count=1)).hexdigest()


def recorded_digest(text: bytes) -> str | None:
    """The digest that the C source records for itself, or None."""
    match = _DIGEST.search(text)
    return match.group(2).decode() if match else None


def check(module: ModuleType, source: Path = SOURCE) -> str:
    """Why ``module`` must not be used with ``source`` (built from other source), or "" when it may."""
    if not source.exists():
        return ""
    expected, built = source_digest(source.read_bytes()), getattr(module, "SOURCE_SHA256", "")
    if built == expected:
        return ""
    return (
        f"the compiled kernels {Path(module.__file__).name} are stale: built from source "
        f"{built[:12] or '(unrecorded)'}, but {source.name} is {expected[:12]}; rebuild them (pip install -e .)"
    )


def load() -> tuple[ModuleType | None, str]:
    """(the compiled module or None, why it is not used)."""
    try:
        from backends import _cpu_kernels as module
    except ImportError:  # built without a C compiler: NumPy alone
        return None, "the C extension was not built"
    reason = check(module)
    return (None, reason) if reason else (module, "")


COMPILED, UNAVAILABLE = load()
