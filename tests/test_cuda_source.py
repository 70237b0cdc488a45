"""The CUDA source of the fused loss compiles, for float and double, wherever nvcc is installed
(so a typo is caught on a machine without a GPU, before a GPU run is spent on it)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from backends.cupy_backend import softmax_xent_source

NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc (the CUDA compiler) is not installed")
@pytest.mark.parametrize("c_type", ["float", "double"])
def test_the_fused_loss_kernel_compiles_with_nvcc(tmp_path, c_type):
    source, name = softmax_xent_source(c_type)
    path = tmp_path / f"{name}.cu"
    path.write_text(source)
    result = subprocess.run(
        [NVCC, "-arch=sm_90", "--ptx", "-o", str(tmp_path / f"{name}.ptx"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f".entry {name}" in (tmp_path / f"{name}.ptx").read_text()
