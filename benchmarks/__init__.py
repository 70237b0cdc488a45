"""nnx's benchmark suite (pytest-benchmark) and comparison commands."""
