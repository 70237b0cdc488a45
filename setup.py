"""Build of the compiled CPU kernels (backends/cpu_kernels.c); everything else is in pyproject.toml.

The extension is optional: where it cannot be built (no C compiler), nnx installs without it
and the NumPy backend uses its NumPy kernels, which compute the same results.
"""

import sys

from setuptools import Extension, setup

FLAGS = (
    []
    if sys.platform == "win32"
    else ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]
)

setup(
    ext_modules=[
        Extension("backends._cpu_kernels", ["backends/cpu_kernels.c"], extra_compile_args=FLAGS, optional=True)
    ]
)
