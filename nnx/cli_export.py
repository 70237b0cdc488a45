"""The ``nnx export`` command: a model file as an ONNX model, for runtimes where nnx is not installed."""

from __future__ import annotations

import argparse
from pathlib import Path

import nnx  # the package's names load on first use: this costs no NumPy import


def cmd_export(args: argparse.Namespace) -> int:
    from nnx.errors import ConfigError
    from nnx.onnx_export import check_opset, export_onnx
    from nnx.recipes import UsageError

    if Path(args.out).suffix != ".onnx":
        raise UsageError(f"OUT must be a file name ending in .onnx; got {args.out!r}")
    try:
        opset = check_opset(args.opset)
    except ConfigError as exc:
        raise UsageError(f"--opset: {exc}") from None
    model = nnx.load(args.model, "numpy")  # exporting reads the weights on the host
    export_onnx(model, args.out, opset)
    outputs = "outputs" if model.task == "regression" else "logits, probabilities"
    print(
        f"wrote {args.out}: ONNX opset {opset}, input x (batch, {model.in_features}) float32, "
        f"outputs {outputs} (batch, {model.out_features}), task {model.task}"
    )
    return 0
