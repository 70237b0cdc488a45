"""NNX_FAKE_GPU=1 puts the CuPy stand-in (tests/fake_cupy) in cupy's place, in this process and in
the subprocesses the tests start (through PYTHONPATH). The tests that ask for the "cupy" backend
then run on it; the default backend stays NumPy unless NNX_BACKEND says otherwise."""

from __future__ import annotations

import os
import sys
from pathlib import Path

STAND_IN = os.environ.get("NNX_FAKE_GPU") == "1"
if STAND_IN:
    FAKE_CUPY = str(Path(__file__).with_name("fake_cupy"))
    sys.path.insert(0, FAKE_CUPY)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [FAKE_CUPY, os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("NNX_BACKEND", "numpy")
