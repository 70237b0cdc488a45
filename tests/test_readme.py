"""The README's API examples run as written, in order, in one namespace."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_api_examples_in_the_readme_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("safetensors", reason="the example saves a model file")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        if "nnx.distributed" in block and importlib.util.find_spec("mpi4py") is None:
            continue  # the data-parallel example needs the mpi extra (tests/test_distributed.py runs it on 2 ranks)
        if "onnxruntime" in block and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
            continue  # the ONNX example needs onnx and onnxruntime (the test extra; tests/test_onnx_export.py)
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["model"].evaluate(namespace["x_test"], namespace["y_test"])["accuracy"] >= 0.95
    assert (tmp_path / "digits.safetensors").exists()
    assert "accuracy" in capsys.readouterr().out
